"""BREV_REPORT_WRITERS: how many threads write agents' reports (brev.server.ingest); 0 or
unset leaves the database's default (one on SQLite, two on PostgreSQL)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from brev.server.settings import ServerSettings
from tests.conftest import make_plane
from tests.seed import add_instances


def _writer_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith("report-ingest-"))


def test_the_setting_sets_how_many_writers_take_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BREV_HOME", str(tmp_path))
    monkeypatch.setenv("BREV_REPORT_WRITERS", "3")
    assert ServerSettings.load().report_writers == 3
    url = f"sqlite:///{tmp_path / 'brev.db'}"
    plane = make_plane(url, tmp_path, report_writers=3)
    try:
        add_instances(url, "default", "admin@localhost", ["gpu-a"])
        admin = plane.http(plane.admin_token)
        token = admin.post("/api/v1/orgs/default/instances/gpu-a/agent-token").json()["token"]
        before = _writer_threads()
        body = {"reports": [{"seq": 1, "report": {"gpus": []}}]}
        assert plane.http(token).post("/api/v1/agent/reports", json=body).status_code == 200
        assert _writer_threads() - before == 3
    finally:
        plane.close()


@pytest.mark.parametrize("value", ["-1", "two", "1.5"])
def test_a_bad_count_is_refused_with_what_it_takes(
    value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BREV_HOME", str(tmp_path))
    monkeypatch.setenv("BREV_REPORT_WRITERS", value)
    with pytest.raises(ValueError, match="BREV_REPORT_WRITERS must be a whole number, 0 or more"):
        ServerSettings.load()


def test_unset_leaves_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BREV_HOME", str(tmp_path))
    monkeypatch.delenv("BREV_REPORT_WRITERS", raising=False)
    assert ServerSettings.load().report_writers == 0
