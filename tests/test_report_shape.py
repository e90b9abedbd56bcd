"""An agent's report is checked against the shape the plane reads (brev.api.report_shape)
before it is stored (issue 13, item 2): a field of the wrong type is a 422 naming it, and
nothing is stored; a newer agent's extra fields pass; what brev's own agent reports passes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from brev.agent.collect import collect
from brev.api.report_shape import ReportShape
from brev.client import BrevClient
from tests.conftest import Plane
from tests.seed import add_instances, agent_token

STUB = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "nvidia-smi" / "bin"


def _token(plane: Plane, name: str) -> str:
    add_instances(plane.settings.database_url, "default", "admin@localhost", [name])
    return agent_token(plane.http(plane.admin_token), name)


def _send(plane: Plane, token: str, report: dict[str, object]) -> tuple[int, dict[str, object]]:
    answer = plane.http(token).post(
        "/api/v1/agent/reports", json={"reports": [{"seq": 1, "report": report}]}
    )
    return answer.status_code, answer.json()


@pytest.mark.parametrize(
    ("report", "field"),
    [
        ({"gpus": [{"index": 0, "utilization_gpu_pct": "high"}]}, "gpus.0.utilization_gpu_pct"),
        ({"gpus": [{"index": "0"}]}, "gpus.0.index"),
        ({"gpus": {"0": {}}}, "gpus"),
        ({"host": {"ssh_sessions": "2"}}, "host.ssh_sessions"),
        ({"host": {"ssh_host_keys": "ssh-ed25519 AAAA"}}, "host.ssh_host_keys"),
        ({"host": []}, "host"),
        ({"instances": ["a", 2]}, "instances.1"),
        ({"gpus": [{"index": 0, "xid_errors": {}}]}, "gpus.0.xid_errors"),
    ],
)
def test_a_field_of_the_wrong_type_is_a_422_naming_it_and_nothing_is_stored(
    plane: Plane, admin: BrevClient, report: dict[str, object], field: str
) -> None:
    token = _token(plane, "gpu-a")
    status, answer = _send(plane, token, {"collected_at": "2026-12-04T00:00:00Z", **report})
    assert status == 422, answer
    error = answer["error"]
    assert isinstance(error, dict)
    assert error["fields"][0]["field"] == f"reports.0.report.{field}", error
    assert admin.instance("gpu-a").telemetry in ({}, None)


def test_a_newer_agents_fields_pass_and_are_kept(plane: Plane, admin: BrevClient) -> None:
    token = _token(plane, "gpu-b")
    report: dict[str, object] = {"gpus": [{"index": 0, "nvlink": {"links": 18}}], "rack": "r7"}
    status, answer = _send(plane, token, report)
    assert status == 200, answer
    telemetry = admin.instance("gpu-b").telemetry
    assert telemetry["rack"] == "r7" and telemetry["gpus"][0]["nvlink"] == {"links": 18}


@pytest.mark.skipif(not STUB.is_dir(), reason="no ../shared/fixtures beside the repo")
def test_what_brevs_agent_reports_has_the_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", f"{STUB}{os.pathsep}{os.environ['PATH']}")
    report = collect(prefer_nvml=False).as_json()
    assert len(report["gpus"]) == 2  # the captured 2 x H200
    ReportShape.model_validate(report)


@pytest.mark.parametrize("capture", ["h200-nvml.json", "h200-nvidia-smi.json"])
def test_what_the_agent_reported_on_a_real_h200_has_the_shape(capture: str) -> None:
    """`python -m brev.agent collect --json` on a lent 1 x H200 (driver 580.159.04, CUDA 13.0),
    through NVML and through nvidia-smi (docs/agent.md)."""
    report = json.loads((Path(__file__).parent / "reports" / capture).read_text())
    assert report["gpus"][0]["name"] == "NVIDIA H200"
    ReportShape.model_validate(report)
