"""Tunnels from this machine's 127.0.0.1 to an instance's 127.0.0.1, held until Ctrl-C,
reconnecting when the connection drops: what `brev port-forward` and `brev jupyter` hold, and
`capture`, the `brev exec` path that `jupyter` and `open` run their probes through.

The tunnel is the user's own OpenSSH (`ssh -N -L` on `$BREV_HOME/ssh_config`) where `ssh` is
installed, so it goes as fast as `ssh -L` does; else paramiko, logging in the way the plane
does (brev.ssh.remote: the pinned host key only). paramiko is imported only on that path, so
`brev --help` does not pay for it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import IO, Protocol

from brev.cli import ssh_access
from brev.cli.exit_codes import SSH_FAILED
from brev.cli.output import note
from brev.errors import BrevError
from brev.ssh import config as ssh_config
from brev.ssh.forwards import Forward, check_local_port
from brev.ssh.paramiko_tunnel import (
    ALIVE_COUNT_MAX,
    ALIVE_INTERVAL_S,
    CONNECT_TIMEOUT_S,
    ParamikoSession,
    ParamikoTunnel,
    daemon,
)

# `openssh` or `paramiko`; unset: OpenSSH where `ssh` is on PATH, else paramiko.
BACKEND_ENV = "BREV_TUNNEL_BACKEND"
# What ssh's LocalCommand prints once the connection is up and every -L listens (OpenSSH runs
# it after setting up the forwards): how we know the tunnel works without probing its ports.
READY_MARK = "brev-tunnel-ready"
# As ServerAliveInterval/CountMax: a connection silent for 3 x 10 s is dead and is replaced.
# Longest wait for one connection to come up (login included) before it counts as failed.
UP_TIMEOUT_S = 60.0
# Seconds before each reconnect attempt; the last repeats. Reset once a connection is up.
BACKOFF_S = (1, 2, 4, 8, 15, 30)


def choose_backend(force_paramiko: bool = False) -> str:
    wanted = os.environ.get(BACKEND_ENV, "").strip().lower()
    if wanted not in ("", "auto", "openssh", "paramiko"):
        raise BrevError(f"{BACKEND_ENV}={wanted!r}: expected openssh or paramiko")
    if force_paramiko or wanted == "paramiko":
        return "paramiko"
    if wanted == "openssh" or shutil.which("ssh") is not None:
        return "openssh"  # ssh_access.prepare says so plainly when ssh is missing
    return "paramiko"


def resolve(name: str, *, backend: str, start: bool, wait: str, cached: bool = True) -> str:
    """`ssh_access.prepare`; the paramiko backend needs no `ssh` binary."""
    return ssh_access.prepare(
        name, start=start, wait=wait, cached=cached, needs_ssh=backend == "openssh"
    )


# -- running a command through `brev exec`'s path ------------------------------------------


def capture(
    name: str,
    command: str,
    *,
    stdin: bytes = b"",
    start: bool = False,
    wait: str = "5m",
    stderr_line: Callable[[str], None] | None = None,
) -> tuple[str, int, str, list[str]]:
    """Run `command` on `name` as `brev exec` does (ssh on its alias; a failed login on the
    fast path asks the plane why, as `access.run_ssh` does), feeding it `stdin`. Its alias,
    exit code, stdout and stderr lines. `stderr_line` sees each stderr line as it comes."""
    p = ssh_config.paths()
    fast = ssh_config.cached_alias(p, name)
    alias = ssh_access.prepare(name, start=start, wait=wait)
    code, out, err = _capture_once(p, alias, command, stdin, stderr_line)
    if code == SSH_FAILED and fast:
        ssh_config.forget_cache(p)
        alias = ssh_access.prepare(name, start=start, wait=wait, cached=False)
        code, out, err = _capture_once(p, alias, command, stdin, stderr_line)
    return alias, code, out, err


def _capture_once(
    p: ssh_config.Paths,
    alias: str,
    command: str,
    stdin: bytes,
    stderr_line: Callable[[str], None] | None,
) -> tuple[int, str, list[str]]:
    process = subprocess.Popen(
        ssh_config.ssh_argv(p, alias, "--", command),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdin is not None and process.stdout is not None
    assert process.stderr is not None
    lines: list[str] = []

    def read_stderr(stream: IO[bytes]) -> None:
        for raw in stream:
            line = raw.decode(errors="replace").rstrip("\n")
            lines.append(line)
            if stderr_line is not None:
                stderr_line(line)

    reader = threading.Thread(target=read_stderr, args=(process.stderr,), daemon=True)
    reader.start()
    try:
        try:
            process.stdin.write(stdin)
            process.stdin.close()
        except BrokenPipeError:
            pass  # it ended without reading it all; its exit code says why
        out = process.stdout.read()
        code = process.wait()
        reader.join()
    except BaseException:
        _stop(process)
        raise
    return code, out.decode(errors="replace"), lines


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def ssh_failure_line(name: str, code: int, reason: str) -> str:
    return (
        f"ssh could not get into {name} (exit {code}: {reason}); check `brev show {name}`, "
        f"run `brev refresh` for a new certificate; a changed host key is refused on purpose"
    )


def last_line(lines: Sequence[str], default: str) -> str:
    for line in reversed(lines):
        if line.strip():
            return line.strip()
    return default


# -- one connection --------------------------------------------------------------------------


class _Session(Protocol):
    def wait_up(self, timeout: float) -> bool:
        """True once every forward listens; False when the connection failed first."""

    def wait_end(self) -> None:
        """Until the connection is gone."""

    def reason(self) -> str:
        """Why it failed or ended, in a few words."""

    def exit_code(self) -> int: ...

    def close(self) -> None: ...


class _OpenSshSession:
    """`ssh -N -L ...` on the alias, from our ssh_config."""

    def __init__(self, alias: str, forwards: Sequence[Forward]) -> None:
        self._ready = threading.Event()
        self._errors: deque[str] = deque(maxlen=20)
        self._echo = False
        self.process = subprocess.Popen(
            openssh_argv(ssh_config.paths(), alias, forwards),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self.process.stdout is not None and self.process.stderr is not None
        self._readers = [
            daemon(self._read_stdout, self.process.stdout),
            daemon(self._read_stderr, self.process.stderr),
        ]

    def _read_stdout(self, stream: IO[bytes]) -> None:
        for raw in stream:
            if raw.strip() == READY_MARK.encode():
                self._ready.set()

    def _read_stderr(self, stream: IO[bytes]) -> None:
        for raw in stream:
            line = raw.decode(errors="replace").rstrip()
            if not line:
                continue
            self._errors.append(line)
            if self._echo and line.startswith("channel "):
                # Once up, ssh's `channel N: open failed: connect failed: Connection refused`
                # is about a connection through the tunnel (nothing listens on that port
                # there): the user should see it. What it says as it exits is the reason
                # given with the reconnect line.
                note(f"ssh: {line}")

    def wait_up(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._ready.wait(0.05):
                self._echo = True
                return True
            if self.process.poll() is not None:
                for reader in self._readers:
                    reader.join(1.0)
                return self._ready.is_set()
        self._errors.append(f"not connected within {timeout:.0f} s")
        _stop(self.process)
        return False

    def wait_end(self) -> None:
        self.process.wait()
        for reader in self._readers:
            reader.join(1.0)

    def reason(self) -> str:
        code = self.process.poll()
        return last_line(list(self._errors), f"ssh exited {code}")

    def exit_code(self) -> int:
        code = self.process.poll()
        return SSH_FAILED if code is None or code < 0 else code

    def close(self) -> None:
        _stop(self.process)


def openssh_argv(p: ssh_config.Paths, alias: str, forwards: Sequence[Forward]) -> list[str]:
    options = [
        "-N",
        "-o", "ExitOnForwardFailure=yes",
        "-o", f"ServerAliveInterval={ALIVE_INTERVAL_S}",
        "-o", f"ServerAliveCountMax={ALIVE_COUNT_MAX}",
        "-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}",
        "-o", "BatchMode=yes",
        "-o", "PermitLocalCommand=yes",
        "-o", f"LocalCommand=echo {READY_MARK}",
    ]  # fmt: skip
    for forward in forwards:
        options += ["-L", f"127.0.0.1:{forward.local}:127.0.0.1:{forward.remote}"]
    return ["ssh", "-F", str(p.config), *options, alias]


# -- holding the tunnels ---------------------------------------------------------------------


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """`kill PID` ends a held tunnel as Ctrl-C does: ssh is stopped, not left behind."""

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def announce(name: str, forwards: Sequence[Forward]) -> None:
    for forward in forwards:
        print(
            f"Forwarding 127.0.0.1:{forward.local} -> {name}:{forward.remote}",
            flush=True,
        )
    note("Ctrl-C to stop.")


def hold(
    name: str,
    forwards: Sequence[Forward],
    *,
    start: bool = False,
    wait: str = "5m",
    force_paramiko: bool = False,
    on_up: Callable[[], None] | None = None,
    on_stop: Callable[[], None] | None = None,
) -> int:
    """Hold the tunnels until Ctrl-C (0) or a failure of the first connection (ssh's exit
    code, after one `error:` line). `on_up` runs once, when they first work."""
    backend = choose_backend(force_paramiko)
    tunnel: ParamikoTunnel | None = None
    with _sigterm_as_interrupt():
        try:
            if backend == "paramiko":
                tunnel = ParamikoTunnel(forwards)
            else:
                for forward in forwards:
                    check_local_port(forward.local, forward.remote)
            return _hold(name, forwards, backend, tunnel, start, wait, on_up)
        except KeyboardInterrupt:
            if on_stop is not None:
                on_stop()
            else:
                note("Stopped.")
            return 0
        finally:
            if tunnel is not None:
                tunnel.close()


def _hold(
    name: str,
    forwards: Sequence[Forward],
    backend: str,
    tunnel: ParamikoTunnel | None,
    start: bool,
    wait: str,
    on_up: Callable[[], None] | None,
) -> int:
    from brev.client import ServerUnreachable

    p = ssh_config.paths()
    ever_up = False
    asked_plane = False
    failures = 0
    while True:
        fast = ssh_config.cached_alias(p, name)
        try:
            alias = resolve(name, backend=backend, start=start, wait=wait)
        except ServerUnreachable as error:
            if not ever_up:
                raise
            delay = BACKOFF_S[min(failures, len(BACKOFF_S) - 1)]
            failures += 1
            note(f"could not reconnect to {name} ({error.message}); next try in {delay} s")
            time.sleep(delay)
            continue
        session: _Session = (
            _OpenSshSession(alias, forwards) if tunnel is None else ParamikoSession(alias, tunnel)
        )
        try:
            if session.wait_up(UP_TIMEOUT_S):
                if not ever_up:
                    (on_up or (lambda: announce(name, forwards)))()
                else:
                    note(f"Reconnected to {name}.")
                ever_up, failures = True, 0
                session.wait_end()
                delay = BACKOFF_S[0]
                note(f"Lost the connection to {name} ({session.reason()}); reconnecting ...")
            elif not ever_up:
                if fast and not asked_plane:
                    # As `brev exec` does: the cached state said all is well; the plane says
                    # what changed (stopped, deleted) or renews what must be renewed.
                    asked_plane = True
                    ssh_config.forget_cache(p)
                    resolve(name, backend=backend, start=start, wait=wait, cached=False)
                    continue
                code = session.exit_code()
                sys.stderr.write(f"error: {ssh_failure_line(name, code, session.reason())}\n")
                return code
            else:
                delay = BACKOFF_S[min(failures, len(BACKOFF_S) - 1)]
                failures += 1
                note(f"Could not reconnect to {name} ({session.reason()}); next try in {delay} s")
                # The next try asks the plane: a machine stopped or deleted meanwhile ends the
                # command with what happened instead of knocking for ever.
                ssh_config.forget_cache(p)
        finally:
            session.close()
        time.sleep(delay)
