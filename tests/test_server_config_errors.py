"""`brev server` with a bad or unreachable database: one line, exit 1, no password shown."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import BREV
from tests.postgres import free_port


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            # {port}: a free port, filled in by the test (ids must be the same on every worker)
            "postgresql+psycopg://brev:s3cret-pw@127.0.0.1:{port}/brev",
            "cannot connect to the database postgresql+psycopg://brev:***@127.0.0.1:",
        ),
        ("mysql://brev:s3cret-pw@db/brev", "unsupported database 'mysql'"),
        ("postgresql+asyncpg://brev:s3cret-pw@db/brev", "use the psycopg driver"),
        ("not a url", "invalid database URL; expected sqlite:///PATH or postgresql+psycopg://"),
        ("sqlite:////nonexistent/dir/brev.db", "unable to open database file"),
    ],
)
def test_a_bad_database_url_is_one_clear_line(tmp_path: Path, url: str, expected: str) -> None:
    url = url.replace("{port}", str(free_port()))
    result = subprocess.run(
        [BREV, "server", "--port", str(free_port()), "--database-url", url],
        capture_output=True,
        text=True,
        timeout=60,
        env={"BREV_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 1
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, result.stderr
    assert expected in error_lines[0]
    assert "Traceback" not in result.stderr
    assert "s3cret-pw" not in result.stderr + result.stdout
