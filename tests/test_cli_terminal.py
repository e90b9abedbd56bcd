"""On a terminal, lists are rich tables; the same command in a pipe prints plain columns."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx

from brev.cli.output import RICH_TABLE_MAX_ROWS
from tests.conftest import BREV, LiveServer
from tests.seed import add_instances


def _run_on_terminal(args: list[str], env: dict[str, str]) -> str:
    controller, terminal = os.openpty()
    try:
        result = subprocess.run(
            [BREV, *args],
            stdout=terminal,
            stderr=subprocess.PIPE,
            env={**env, "COLUMNS": "120", "TERM": "xterm"},
            timeout=30,
        )
        assert result.returncode == 0, result.stderr
        os.close(terminal)
        chunks = []
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the terminal's other end is closed and drained
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks).decode()
    finally:
        os.close(controller)


def test_org_ls_is_a_table_on_a_terminal_and_plain_in_a_pipe(
    live_server: LiveServer, tmp_path: Path
) -> None:
    env = live_server.env(
        BREV_HOME=str(tmp_path),
        BREV_API_URL=live_server.url,
        BREV_TOKEN=live_server.admin_token,
        BREV_ORG="default",
    )
    on_terminal = _run_on_terminal(["org", "ls"], env)
    assert "─" in on_terminal  # rich's rule under the header
    assert "default" in on_terminal

    piped = subprocess.run(
        [BREV, "org", "ls"], env=env, capture_output=True, text=True, timeout=30, check=True
    ).stdout
    assert piped.splitlines()[0].split() == ["NAME", "ROLE", "AGE"]
    assert "─" not in piped and "\x1b[" not in piped


def test_a_long_list_on_a_terminal_is_aligned_text_with_a_bold_header(
    live_server: LiveServer, tmp_path: Path
) -> None:
    headers = {"Authorization": f"Bearer {live_server.admin_token}"}
    response = httpx.post(f"{live_server.url}/api/v1/orgs", json={"name": "big"}, headers=headers)
    assert response.status_code == 201
    names = [f"gpu-{n:03}" for n in range(RICH_TABLE_MAX_ROWS + 1)]
    add_instances(f"sqlite:///{live_server.home / 'brev.db'}", "big", "admin@localhost", names)
    env = live_server.env(
        BREV_HOME=str(tmp_path),
        BREV_API_URL=live_server.url,
        BREV_TOKEN=live_server.admin_token,
        BREV_ORG="big",
    )
    lines = _run_on_terminal(["ls"], env).splitlines()
    assert lines[0].startswith("\x1b[1mNAME")
    assert "─" not in "".join(lines)
    assert [line.split()[0] for line in lines[1:]] == names
