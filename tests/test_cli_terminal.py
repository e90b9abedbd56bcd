"""On a terminal, lists are rich tables; the same command in a pipe prints plain columns."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.conftest import BREV, LiveServer


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
