"""The tunnel without OpenSSH: paramiko, logging in as `ssh ALIAS` would from the files
`brev refresh` writes (key, the alias's certificate, its pinned host key), never trusting
another key (brev.ssh.remote). `brev port-forward` uses it where `ssh` is not installed.
paramiko is imported inside the functions."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from brev.cli.exit_codes import SSH_FAILED  # this path ends as ssh would
from brev.errors import BrevError
from brev.ssh import config as ssh_config
from brev.ssh.forwards import Forward, bind

if TYPE_CHECKING:
    import socket

    from paramiko import Channel, Transport

    from brev.ssh.remote import SshTarget

# As ssh's ServerAliveInterval/CountMax and ConnectTimeout, on this path too.
ALIVE_INTERVAL_S = 10
ALIVE_COUNT_MAX = 3
CONNECT_TIMEOUT_S = 15
_CHUNK = 256 * 1024


def note(message: str) -> None:
    sys.stderr.write(message + "\n")


def daemon(target: Callable[..., None], *args: object) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


class _Login(NamedTuple):
    """What paramiko needs to log in as `ssh ALIAS` would, read from our own files."""

    target: SshTarget
    host_key: str
    private_key: str
    certificate: str


def login_of(p: ssh_config.Paths, alias: str) -> _Login:
    from brev.ssh.remote import SshTarget

    block = _host_block(p.config, alias)
    try:
        target = SshTarget(host=block["hostname"], port=int(block["port"]), user=block["user"])
        certificate = Path(block["certificatefile"]).read_text()
        private_key = Path(block["identityfile"]).read_text()
    except (KeyError, ValueError, OSError) as error:
        raise BrevError(
            f"the entry for {alias} in {p.config} is incomplete ({error}); run `brev refresh`"
        ) from None
    keys = [
        line.split(None, 1)[1].strip()
        for line in _lines(p.known_hosts)
        if line.split(None, 1)[0] == ssh_config.host_key_alias(alias) and " " in line
    ]
    if not keys:
        raise BrevError(f"no pinned host key for {alias} in {p.known_hosts}; run `brev refresh`")
    # The server shows the key of the type asked for; ed25519 when there is one.
    keys.sort(key=lambda key: not key.startswith("ssh-ed25519 "))
    return _Login(target, keys[0], private_key, certificate)


def _lines(path: Path) -> list[str]:
    try:
        return [line for line in path.read_text().splitlines() if line.strip()]
    except OSError:
        return []


def _host_block(config: Path, alias: str) -> dict[str, str]:
    """The settings of `Host alias` in a config that `ssh_config.render_config` wrote."""
    block: dict[str, str] | None = None
    for line in _lines(config):
        words = line.split(None, 1)
        if words[0].startswith("#"):
            continue
        if words[0].lower() == "host":
            if block is not None:
                break
            if len(words) == 2 and alias in words[1].split():
                block = {}
        elif block is not None and len(words) == 2:
            block.setdefault(words[0].lower(), words[1].strip())
    if block is None:
        raise BrevError(f"no entry for {alias} in {config}; run `brev refresh`")
    return block


class ParamikoTunnel:
    """The paramiko path's listeners: bound once (so a port in use fails at once) and kept
    across reconnects; each connection they accept rides a `direct-tcpip` channel of the
    current SSH connection."""

    def __init__(self, forwards: Sequence[Forward]) -> None:
        self.transport: Transport | None = None
        self._listeners: list[socket.socket] = []
        try:
            for forward in forwards:
                listener = bind(forward.local, forward.remote)
                self._listeners.append(listener)
                listener.listen(64)
        except BaseException:
            self.close()
            raise
        for listener, forward in zip(self._listeners, forwards, strict=True):
            daemon(self._accept, listener, forward)

    def _accept(self, listener: socket.socket, forward: Forward) -> None:
        while True:
            try:
                conn, peer = listener.accept()
            except OSError:
                return  # closed
            daemon(self._carry, conn, peer, forward)

    def _carry(self, conn: socket.socket, peer: tuple[str, int], forward: Forward) -> None:
        import paramiko

        transport = self.transport
        try:
            if transport is None or not transport.is_active():
                raise EOFError("not connected right now")
            channel = transport.open_channel(
                "direct-tcpip", ("127.0.0.1", forward.remote), peer, timeout=CONNECT_TIMEOUT_S
            )
        except (paramiko.SSHException, EOFError, OSError) as error:
            note(f"port {forward.local}: no connection to port {forward.remote} there ({error})")
            conn.close()
            return
        _pump(conn, channel)

    def close(self) -> None:
        for listener in self._listeners:
            listener.close()
        if self.transport is not None:
            self.transport.close()


def _pump(sock: socket.socket, channel: Channel) -> None:
    """Bytes both ways until both sides have ended (a half-close is passed on)."""
    import select
    import socket

    import paramiko

    sock_open = channel_open = True
    try:
        while sock_open or channel_open:
            watched: list[socket.socket | Channel] = []
            if sock_open:
                watched.append(sock)
            if channel_open:
                watched.append(channel)
            readable, _, _ = select.select(watched, [], [], 1.0)
            if not readable and channel.closed:
                break
            if sock in readable:
                data = sock.recv(_CHUNK)
                if data:
                    channel.sendall(data)
                else:
                    sock_open = False
                    channel.shutdown_write()
            if channel in readable:
                data = channel.recv(_CHUNK)
                if data:
                    sock.sendall(data)
                else:
                    channel_open = False
                    sock.shutdown(socket.SHUT_WR)
    except (OSError, EOFError, paramiko.SSHException):
        pass
    finally:
        channel.close()
        sock.close()


class ParamikoSession:
    def __init__(self, alias: str, tunnel: ParamikoTunnel) -> None:
        self._alias = alias
        self._tunnel = tunnel
        self._reason = ""
        self._transport: Transport | None = None

    def wait_up(self, timeout: float) -> bool:
        from brev.ssh.remote import HostKeyChanged, SshConnection, SshError

        login = login_of(ssh_config.paths(), self._alias)
        try:
            connection = SshConnection(
                login.target,
                host_key=login.host_key,
                private_key_pem=login.private_key,
                certificate=login.certificate,
                timeout=min(timeout, CONNECT_TIMEOUT_S),
            )
        except HostKeyChanged:
            raise  # never retried: a person must look at it
        except SshError as error:
            self._reason = error.message
            return False
        # SshConnection runs commands; a tunnel needs its transport for direct-tcpip channels.
        transport: Transport = connection.transport
        transport.set_keepalive(ALIVE_INTERVAL_S)
        self._transport = transport
        self._tunnel.transport = transport
        return True

    def wait_end(self) -> None:
        transport = self._transport
        assert transport is not None
        next_probe = time.monotonic() + ALIVE_INTERVAL_S
        while transport.is_active():
            time.sleep(0.2)
            if time.monotonic() >= next_probe:
                if not _answers(transport, ALIVE_INTERVAL_S * ALIVE_COUNT_MAX):
                    self._reason = "no answer to keepalives"
                    transport.close()
                    return
                next_probe = time.monotonic() + ALIVE_INTERVAL_S
        self._reason = "the connection closed"

    def reason(self) -> str:
        return self._reason or "the connection closed"

    def exit_code(self) -> int:
        return SSH_FAILED

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


def _answers(transport: Transport, timeout: float) -> bool:
    """Whether the server answers a keepalive request (OpenSSH's ServerAlive) in time."""
    answered = threading.Event()

    def ask() -> None:
        transport.global_request("keepalive@openssh.com", wait=True)
        answered.set()

    daemon(ask)
    return answered.wait(timeout)
