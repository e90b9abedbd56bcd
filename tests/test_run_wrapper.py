"""The remote wrapper of `brev run`, run by a real /bin/sh here: the status it keeps is the
command's own, and a connection that drops leaves none (the caller then says "lost")."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from brev.cli.run.remote import RemoteLayout, wrapper

LAYOUT = RemoteLayout("r1", synced=False)


def start(home: Path, command: str) -> subprocess.Popen[bytes]:
    # stdin is the connection: a pipe that stays open until the test closes it, as sshd's does.
    return subprocess.Popen(
        ["/bin/sh", "-c", wrapper(LAYOUT, command, {"GREETING": "hi there"})],
        cwd=home,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )


def test_the_commands_own_status_is_kept(tmp_path: Path) -> None:
    process = start(tmp_path, 'echo "$GREETING"; exit 7')
    assert process.stdout is not None
    assert process.wait(timeout=10) == 7 and process.stdout.read() == b"hi there\n"
    assert (tmp_path / LAYOUT.state / "exit").read_text() == "7\n"


def test_a_dropped_connection_keeps_no_status_of_the_kill(tmp_path: Path) -> None:
    process = start(tmp_path, "echo started; sleep 60")
    assert process.stdout is not None and process.stdout.readline() == b"started\n"
    begun = time.monotonic()
    assert process.stdin is not None
    process.stdin.close()  # the connection goes: the lifeline TERMs the command
    process.wait(timeout=10)
    assert time.monotonic() - begun < 10
    state = tmp_path / LAYOUT.state
    assert (state / "lost").exists()
    # The TERM's 143 is not the command's: kept, it would be reported as the run's exit code.
    assert not (state / "exit").exists()
