"""brev jupyter end to end, with a real jupyter_server started on the box (this machine) through
`brev exec`'s path: the token opens it through the tunnel and nothing else does, the token is
neither on a command line nor in Jupyter's log, the server outlives the command and is reused
by the next one, the browser opens only where there is a display, `--stop` ends it.

BREV_JUPYTER_COMMAND points at this venv's jupyter-server (pip install jupyter_server, part of
the dev extra), so no test installs JupyterLab from the network."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from contextlib import suppress
from pathlib import Path

import pytest

from tests.cli_runner import brev, ok
from tests.conftest import LiveServer
from tests.node_plane import client, env_of, poll, server
from tests.postgres import free_port
from tests.sshbox import SshBox
from tests.test_access import node_box, ssh_box_factory
from tests.test_tunnels import _get, held

__all__ = ["client", "node_box", "server", "ssh_box_factory"]
pytestmark = pytest.mark.slow

JUPYTER_SERVER = Path(sys.executable).parent / "jupyter-server"


def _url(stdout: str) -> str:
    urls = [line for line in stdout.splitlines() if line.startswith("http://127.0.0.1:")]
    assert len(urls) == 1, stdout
    return urls[0]


def _browser(tmp_path: Path) -> tuple[Path, Path]:
    """A stand-in browser for the webbrowser module ($BROWSER): records the URL it gets."""
    script, seen = tmp_path / "browser", tmp_path / "browser-saw"
    script.write_text(f'#!/bin/sh\necho "$1" >> {seen}\n')
    script.chmod(0o755)
    return script, seen


def test_jupyter_starts_reuses_and_stops(
    server: LiveServer, node_box: SshBox, tmp_path: Path
) -> None:
    if not JUPYTER_SERVER.exists():
        pytest.fail("jupyter_server is not installed in this venv: pip install -e '.[dev]'")
    browser, browser_saw = _browser(tmp_path)
    base = {k: v for k, v in env_of(server).items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env = {**base, "BREV_JUPYTER_COMMAND": str(JUPYTER_SERVER), "BROWSER": str(browser)}
    workdir = node_box.node_home / "instances" / "train"
    state_file = workdir / ".brev" / "jupyter.json"
    try:
        # No display: the URL is printed, no browser is started.
        with held(["jupyter", "train"], env, tmp_path) as first:
            first.wait_for_output("http://127.0.0.1:", timeout=60)
            url = _url(first.stdout)
            local = int(url.split(":")[2].split("/")[0])
            token = url.split("token=")[1]
            assert url == f"http://127.0.0.1:{local}/?token={token}"  # jupyter_server: no /lab
            status = f"http://127.0.0.1:{local}/api/status"
            answer = _get(status, Authorization=f"token {token}")
            assert answer is not None and answer.status_code == 200, answer
            assert "started" in answer.json()
            refused = _get(status)
            assert refused is not None and refused.status_code == 403

            state = json.loads(state_file.read_text())
            assert state["token"] == token and state["port"] != local
            assert state_file.stat().st_mode & 0o777 == 0o600
            # bound to the instance's loopback only, in the instance's directory
            assert Path(f"/proc/{state['pid']}/cwd").resolve() == workdir.resolve()
            listening = subprocess.run(
                ["ss", "-Hltn", f"( sport = :{state['port']} )"], capture_output=True, text=True
            ).stdout.splitlines()
            assert [line.split()[3] for line in listening] == [f"127.0.0.1:{state['port']}"]
            # the token is on no command line, and not in Jupyter's log
            processes = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True)
            assert token not in processes.stdout
            assert token not in (workdir / ".brev" / "jupyter.log").read_text()
            assert token not in first.stderr
            assert not browser_saw.exists()

            assert first.interrupt() == 0
            assert "Jupyter keeps running on train" in first.stderr
            assert "Traceback" not in first.stderr
        os.kill(state["pid"], 0)  # survived the command and its SSH session

        # A display: the same server (same token) through another port, in the browser.
        port = free_port()
        with held(
            ["jupyter", "train", "--port", str(port)], {**env, "DISPLAY": ":99"}, tmp_path
        ) as second:
            second.wait_for_output("http://127.0.0.1:", timeout=60)
            assert _url(second.stdout) == f"http://127.0.0.1:{port}/?token={token}"
            assert "Jupyter running on train" in second.stderr
            poll(browser_saw.exists, "the browser to be started", 10)
            assert browser_saw.read_text().split() == [_url(second.stdout)]
            answer = _get(f"http://127.0.0.1:{port}/api/status", Authorization=f"token {token}")
            assert answer is not None and answer.status_code == 200
            assert second.interrupt(signal.SIGTERM) == 0

        stopped = ok(brev("jupyter", "train", "--stop", env=env, timeout=60))
        assert "Stopped the Jupyter server on train" in stopped.stderr
        poll(lambda: not Path(f"/proc/{state['pid']}").exists(), "jupyter to exit", 10)
        assert not state_file.exists()
        again = ok(brev("jupyter", "train", "--stop", env=env, timeout=60))
        assert "No Jupyter server was running on train" in again.stderr
    finally:
        with suppress(OSError, ValueError, KeyError):
            os.killpg(json.loads(state_file.read_text())["pid"], signal.SIGKILL)


def test_jupyter_failures_are_one_line(server: LiveServer, node_box: SshBox) -> None:
    env = {**env_of(server), "BREV_JUPYTER_COMMAND": "/nonexistent/jupyter lab"}
    failed = brev("jupyter", "train", "--no-browser", env=env, timeout=60)
    assert failed.returncode == 127, failed.stderr
    assert failed.stderr.strip().splitlines() == [
        "error: on train: could not run /nonexistent/jupyter: No such file or directory"
    ]
    gone = brev("jupyter", "nope", "--no-browser", env=env, timeout=60)
    assert gone.returncode == 1
    assert gone.stderr.strip().splitlines()[-1].startswith("error: no instance or node 'nope'")
