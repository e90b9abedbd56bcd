"""The real `brev` console script run as a subprocess, and the checks every CLI test makes of
how it ended: helpers for `test_cli.py`, `test_cli_search.py`, `test_cli_lifecycle.py` and
`test_crash.py`."""

from __future__ import annotations

import subprocess

from tests.conftest import BREV


def brev(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`brev ARGS` as a user runs it in a script: no terminal, stdin closed."""
    return subprocess.run(
        [BREV, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    """Exit 0 and no traceback; the result."""
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr
    return result


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """Exit 1, nothing on stdout, one `error: ...` line on stderr, no traceback; the line."""
    assert result.returncode == 1, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]
