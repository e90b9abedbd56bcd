"""A plane with one registered 2-GPU test box (`gpu-box`, real sshd trusting the plane's CA,
the real agent), shared by the `brev run` tests of one module: a node costs seconds to add."""

from __future__ import annotations

import queue
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from brev.client import BrevClient
from tests.cli_runner import brev, ok
from tests.conftest import BREV, LiveServer, start_server, stop_server
from tests.node_plane import NODE_PLANE_ENV, env_of
from tests.sshbox import SshBox, kill_agents, make_box, make_user_key


@dataclass
class RunPlane:
    server: LiveServer
    box: SshBox
    client: BrevClient

    def env(self, **extra: str) -> dict[str, str]:
        return {**env_of(self.server), **extra}

    def live_instances(self) -> list[str]:
        return [i.name for i in self.client.instances()]

    def workdirs(self) -> list[str]:
        instances = self.box.node_home / "instances"
        return sorted(p.name for p in instances.iterdir()) if instances.exists() else []

    def assert_nothing_left(self, timeout: float = 15) -> None:
        """No live instance on the plane and no instance directory on the node."""
        deadline = time.monotonic() + timeout
        while self.live_instances() or self.workdirs():
            if time.monotonic() > deadline:
                pytest.fail(f"left behind: {self.live_instances()} / {self.workdirs()}")
            time.sleep(0.2)

    def run(self, *args: str, timeout: float = 90, **env: str) -> subprocess.CompletedProcess[str]:
        return brev("run", *args, env=self.env(**env), timeout=timeout)

    def start_run(self, *args: str, cwd: Path | None = None, **env: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [BREV, "run", *args],
            env=self.env(**env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


@pytest.fixture(scope="module")
def run_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunPlane]:
    root = tmp_path_factory.mktemp("run-plane")
    server = start_server(root / "home", env_extra=NODE_PLANE_ENV)
    client = BrevClient(server.url, server.admin_token, org="default")
    key, public = make_user_key(root / "admin-key")
    box = make_box(
        root / "box",
        gpus=2,
        authorized_keys=[public],
        trusted_ca=client.ssh_ca().public_key,
        principals_file=True,
    )
    try:
        add = ["nodes", "add", "gpu-box", f"root@127.0.0.1:{box.port}", "--host-key", box.host_key]
        ok(brev(*add, "--identity", str(key), env=env_of(server), timeout=120))
        yield RunPlane(server, box, client)
    finally:
        kill_agents(box.node_home)
        box.stop()
        client.close()
        stop_server(server)


def wait_for_line(process: subprocess.Popen[str], needle: str, timeout: float = 60) -> str:
    """Read the process's stderr until a line holds `needle` (failing the test after
    `timeout`, even when the process prints nothing more); what was read."""
    lines = _stderr_lines(process)
    seen = ""
    deadline = time.monotonic() + timeout
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            break
        seen += line
        if needle in line:
            return seen
    pytest.fail(f"no line with {needle!r} in:\n{seen}")


_READERS: dict[int, queue.Queue[str | None]] = {}


def _stderr_lines(process: subprocess.Popen[str]) -> queue.Queue[str | None]:
    """A thread reads the process's stderr into a queue (None at its end), so a wait can time
    out instead of blocking in readline."""
    if process.pid not in _READERS:
        lines: queue.Queue[str | None] = queue.Queue()
        stream = process.stderr
        assert stream is not None

        def read() -> None:
            for line in stream:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=read, daemon=True).start()
        _READERS[process.pid] = lines
    return _READERS[process.pid]


def rest_of_stderr(process: subprocess.Popen[str]) -> str:
    """What the process wrote to stderr after what wait_for_line read, once it ended."""
    lines = _stderr_lines(process)
    rest = ""
    while (line := lines.get(timeout=30)) is not None:
        rest += line
    return rest


def send(process: subprocess.Popen[str], signum: int) -> None:
    process.send_signal(signum)


__all__ = ["RunPlane", "rest_of_stderr", "run_plane", "send", "signal", "wait_for_line"]
