"""brev port-forward end to end: a real HTTP server on the box's 127.0.0.1 (the box is this
machine) reached through the tunnel, over OpenSSH and over the paramiko fallback; a tunnel
that outlives a restart of the box's sshd (its sessions killed too, as a reboot does); bad
-p specs and a local port in use, each one `error:` line."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx
import pytest

from brev.errors import BrevError
from brev.ssh.forwards import Forward, parse_forward
from tests.cli_runner import brev, ok, one_line_error
from tests.conftest import BREV, LiveServer
from tests.node_plane import client, env_of, poll, server
from tests.postgres import free_port
from tests.sshbox import SshBox
from tests.test_access import node_box, ssh_box_factory

__all__ = ["client", "node_box", "server", "ssh_box_factory"]


# -- parsing (in-process) ----------------------------------------------------------------


def test_port_specs() -> None:
    assert parse_forward("8080:80") == Forward(local=8080, remote=80)
    assert parse_forward("8888") == Forward(local=8888, remote=8888)
    assert parse_forward(" 1:65535 ") == Forward(local=1, remote=65535)
    for bad, message in [
        ("", "expected LOCAL:REMOTE or PORT"),
        ("8080:", "expected LOCAL:REMOTE or PORT"),
        ("1:2:3", "expected LOCAL:REMOTE or PORT"),
        ("http", "'http' is not a port number"),
        ("-1:80", "'-1' is not a port number"),
        ("8080:0", "port 0 is out of range"),
        ("65536", "port 65536 is out of range"),
        ("\uff18\uff10", "is not a port number"),  # full-width 80: str.isdigit() says yes
    ]:
        with pytest.raises(BrevError, match=message):
            parse_forward(bad)


# -- helpers -------------------------------------------------------------------------------


@contextmanager
def http_server(directory: Path) -> Iterator[int]:
    """python -m http.server on 127.0.0.1 (the box's loopback: the box is this machine)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
        cwd=directory,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        poll(lambda: _get(f"http://127.0.0.1:{port}/") is not None, "http.server", 10)
        yield port
    finally:
        process.kill()
        process.wait()


def _get(url: str, **headers: str) -> httpx.Response | None:
    try:
        return httpx.get(url, headers=headers, timeout=5, trust_env=False)
    except httpx.HTTPError:
        return None


class Held:
    """A `brev` command left running (port-forward, jupyter), its output in files."""

    def __init__(self, args: list[str], env: dict[str, str], tmp_path: Path) -> None:
        self.stdout_path = tmp_path / f"held-{time.monotonic_ns()}.out"
        self.stderr_path = self.stdout_path.with_suffix(".err")
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.process = subprocess.Popen(
                [BREV, *args], env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err
            )

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text()

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def wait_for_output(self, text: str, timeout: float = 30, *, stderr: bool = False) -> None:
        def seen() -> bool:
            if self.process.poll() is not None:
                pytest.fail(f"brev exited {self.process.returncode}:\n{self.stdout}{self.stderr}")
            return text in (self.stderr if stderr else self.stdout)

        poll(seen, repr(text), timeout)

    def interrupt(self, sig: int = signal.SIGINT) -> int:
        """Ctrl-C (or kill); its exit code."""
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=15)
        finally:
            self.kill()

    def kill(self) -> None:
        """SIGTERM first: brev then stops its ssh (SIGKILL would leave that behind)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextmanager
def held(args: list[str], env: dict[str, str], tmp_path: Path) -> Iterator[Held]:
    command = Held(args, env, tmp_path)
    try:
        yield command
    finally:
        command.kill()


def _descendants(pid: int) -> list[tuple[int, str]]:
    """(pid, command name) of every process below `pid`, from /proc."""
    children: dict[int, list[tuple[int, str]]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError, ValueError, IndexError):
            text = stat.read_text()
            name = text[text.index("(") + 1 : text.rindex(")")]
            parent = int(text[text.rindex(")") + 2 :].split()[1])
            children.setdefault(parent, []).append((int(stat.parent.name), name))
    found: list[tuple[int, str]] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child[0])
    return found


def restart_box(box: SshBox) -> None:
    """sshd stopped, its open sessions killed (what a reboot or `systemctl restart` plus a
    dropped network does to a tunnel), started again on the same port and host key."""
    assert box.process is not None
    sessions = [pid for pid, name in _descendants(box.process.pid) if name == "sshd"]
    assert sessions, "no SSH session open on the box"
    box.stop()
    for pid in sessions:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)  # the tunnel's first reconnect finds nothing listening
    box.start()


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


# -- end to end ----------------------------------------------------------------------------


@pytest.mark.slow
def test_forward_http_and_reconnect_after_sshd_restart(
    server: LiveServer, node_box: SshBox, tmp_path: Path
) -> None:
    env = env_of(server)
    site = tmp_path / "site"
    site.mkdir()
    (site / "hello.txt").write_text("hello through the tunnel\n")
    with http_server(site) as web:
        local, other = _two_free_ports()
        args = ["port-forward", "train", "-p", f"{local}:{web}", "-p", f"{other}:{web}"]
        with held(args, env, tmp_path) as tunnel:
            tunnel.wait_for_output(f"Forwarding 127.0.0.1:{other} -> train:{web}")
            for port in (local, other):
                got = _get(f"http://127.0.0.1:{port}/hello.txt")
                assert got is not None and got.text == "hello through the tunnel\n"

            restart_box(node_box)
            tunnel.wait_for_output("Reconnected to train.", stderr=True)
            got = _get(f"http://127.0.0.1:{local}/hello.txt")
            assert got is not None and got.status_code == 200
            assert "Lost the connection to train" in tunnel.stderr

            assert tunnel.interrupt() == 0
            assert "Traceback" not in tunnel.stderr
        poll(lambda: port_is_free(local), "the local port to be given back", 5)

    # a first connection that fails: ssh's reason and exit code, in one line
    node_box.stop()
    failed = brev("port-forward", "train", "-p", f"{free_port()}:80", env=env)
    assert failed.returncode == 255, failed.stderr
    assert failed.stderr.strip().splitlines()[-1].startswith("error: ssh could not get into train")
    assert "Connection refused" in failed.stderr and "Traceback" not in failed.stderr


@pytest.mark.slow
def test_paramiko_fallback_forwards_and_reconnects(
    server: LiveServer, node_box: SshBox, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "data.bin").write_bytes(os.urandom(3_000_000))
    with http_server(site) as web:
        # Forced with the hidden option ...
        local = free_port()
        args = ["port-forward", "train", "-p", f"{local}:{web}", "--paramiko"]
        with held(args, env_of(server), tmp_path) as tunnel:
            tunnel.wait_for_output(f"Forwarding 127.0.0.1:{local} -> train:{web}")
            got = _get(f"http://127.0.0.1:{local}/data.bin")
            assert got is not None and got.content == (site / "data.bin").read_bytes()
            restart_box(node_box)
            tunnel.wait_for_output("Reconnected to train.", stderr=True)
            got = _get(f"http://127.0.0.1:{local}/data.bin")
            assert got is not None and got.status_code == 200
            assert tunnel.interrupt(signal.SIGTERM) == 0

        # ... and taken on its own where there is no `ssh` at all
        no_ssh = {**env_of(server), "PATH": str(tmp_path / "empty-bin")}
        local = free_port()
        with held(["port-forward", "train", "-p", f"{local}:{web}"], no_ssh, tmp_path) as tunnel:
            tunnel.wait_for_output(f"Forwarding 127.0.0.1:{local} -> train:{web}")
            got = _get(f"http://127.0.0.1:{local}/data.bin")
            assert got is not None and len(got.content) == 3_000_000
            assert tunnel.interrupt() == 0
            assert "Traceback" not in tunnel.stderr


@pytest.mark.slow
def test_bad_specs_and_busy_ports_are_one_line_errors(tmp_path: Path) -> None:
    env = {**os.environ, "BREV_HOME": str(tmp_path / "home"), "HOME": str(tmp_path)}
    cases = {
        ("-p", "abc"): "error: -p 'abc': 'abc' is not a port number (1-65535)",
        ("-p", "0:80"): "error: -p '0:80': port 0 is out of range (1-65535)",
        ("-p", "8080:70000"): "error: -p '8080:70000': port 70000 is out of range (1-65535)",
        ("-p", "1:2:3"): "error: -p '1:2:3': expected LOCAL:REMOTE or PORT",
        ("-p", "9000:80", "-p", "9000:81"): "error: -p: local port 9000 is given twice",
        (): "error: no port to forward: brev port-forward NAME -p LOCAL:REMOTE",
    }
    for args, expected in cases.items():
        assert one_line_error(brev("port-forward", "train", *args, env=env)).startswith(expected)

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        for backend in ("openssh", "paramiko"):
            with_backend = {**env, "BREV_TUNNEL_BACKEND": backend}
            line = one_line_error(
                brev("port-forward", "train", "-p", f"{port}:80", env=with_backend)
            )
            assert line == (
                f"error: local port {port} is already in use on this machine; "
                "pick another (-p OTHER:80)"
            )
        line = one_line_error(brev("jupyter", "train", "--port", str(port), env=env))
        assert line.startswith(f"error: local port {port} is already in use")
    odd = one_line_error(
        brev("port-forward", "train", "-p", "8080", env={**env, "BREV_TUNNEL_BACKEND": "telnet"})
    )
    assert odd == "error: BREV_TUNNEL_BACKEND='telnet': expected openssh or paramiko"
    ok(brev("port-forward", "--help", env=env))


def _two_free_ports() -> tuple[int, int]:
    """Two different free ports: held open together while asked, since the kernel may hand
    out a port it just released again."""
    import socket

    with socket.socket() as first, socket.socket() as second:
        first.bind(("127.0.0.1", 0))
        second.bind(("127.0.0.1", 0))
        return first.getsockname()[1], second.getsockname()[1]
