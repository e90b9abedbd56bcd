"""First start: the admin exists only if its token was saved, and secrets are written 0600."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from brev.errors import BrevError
from brev.home import write_private_file
from brev.server.main import prepare_database
from brev.server.settings import ServerSettings


def test_no_admin_is_created_when_its_token_cannot_be_saved(tmp_path: Path) -> None:
    home = tmp_path / "home"
    settings = ServerSettings(home=home, database_url=f"sqlite:///{tmp_path / 'brev.db'}")
    home.mkdir()
    settings.admin_token_path.mkdir()  # a directory where the file should go
    with pytest.raises(BrevError, match=r"cannot write the admin token to .*admin-token"):
        prepare_database(settings)
    settings.admin_token_path.rmdir()
    # The next start bootstraps for real: the failed one left no admin behind.
    created = prepare_database(settings)
    assert created is not None
    assert settings.admin_token_path.read_text().strip() == created.admin_token
    assert prepare_database(settings) is None


def test_private_files_are_0600_even_over_a_stale_temporary(tmp_path: Path) -> None:
    target = tmp_path / "credentials.json"
    target.write_text("old")
    target.chmod(0o644)
    for leftover in (tmp_path / ".credentials.json.123.tmp", tmp_path / ".credentials.json.x"):
        leftover.write_text("stale")
        leftover.chmod(0o644)
    write_private_file(target, "new")
    assert target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".credentials.json.123.tmp",
        ".credentials.json.x",
        "credentials.json",
    ]
