"""`make demo` keeps working: it is the first thing a new user runs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

DEMO = Path(__file__).resolve().parents[1] / "scripts" / "demo.py"


@pytest.mark.slow
def test_the_demo_runs_end_to_end_and_never_prints_a_whole_token() -> None:
    before = _files_under(Path("/etc/ssh"))
    result = subprocess.run(
        [sys.executable, str(DEMO)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # It registers this machine through a private sshd: the machine's own sshd setup is not
    # the demo's to change (a reload there would also cut every other sshd's connections).
    assert _files_under(Path("/etc/ssh")) == before
    output = result.stdout
    for expected in (
        "Logged in to http://127.0.0.1:",
        "Now using org 'research'.",
        "Created token 'ci' for org 'research'",
        "No instances in org 'research'.",
        "[]",
        "Added aws credentials to org 'research'",
        "demo-a100 is running on aws p4d.24xlarge",
        "Deleting demo-a100.",
        "Node this-machine is online",
        "on-my-box is running on node this-machine.",
        "local/this-machine",
        "$ brev exec on-my-box --",
        "CUDA_VISIBLE_DEVICES=[] in ",
        "brev shell on-my-box",
        "the agent uninstalled itself",
        "first use: signed in as admin@localhost; cookie flags: HttpOnly; Max-Age=43200; "
        "Path=/; SameSite=strict",
        "second use: 401 this login link was used already or expired",
        "after a graceful shutdown",
        "demo complete",
    ):
        assert expected in output
    assert re.search(r"http://127\.0\.0\.1:\d+/ ", output), "no dashboard URL"
    # Tokens appear shortened to their 12-character prefix, never whole; AWS keys never.
    assert not re.search(r"brev_[A-Za-z0-9_-]{20,}", output)
    assert "demo-secret" not in output
    # The instance was given back: the last listing is empty again.
    assert output.rindex("No instances in org 'research'.") > output.index("Deleting demo-a100.")


def _files_under(directory: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime for p in directory.rglob("*")} if directory.exists() else {}
