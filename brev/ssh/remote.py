"""Commands on a box over SSH, with the box's host key pinned.

The plane reaches registered machines with this: it logs in with a key (or a key and a
certificate from `brev.ssh.ca`), refuses any host key other than the pinned one, and runs
shell commands with stdin, stdout, stderr and exit status, like `ssh box cmd` would.
paramiko is imported inside the functions, so importing this module costs nothing."""

from __future__ import annotations

import functools
import io
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

from brev.errors import BrevError
from brev.ssh import ca

if TYPE_CHECKING:
    from paramiko import Channel, PKey, Transport

# Host-key algorithms paramiko negotiates for each public key type, so that the server shows
# the key of the pinned type when it has several.
_HOST_KEY_ALGORITHMS = {
    "ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256"),
}
# Where a Debian or Ubuntu box keeps each host key, for the hint in HostKeyChanged.
_HOST_KEY_FILES = {
    "ssh-ed25519": "/etc/ssh/ssh_host_ed25519_key.pub",
    "ssh-rsa": "/etc/ssh/ssh_host_rsa_key.pub",
}
_CHUNK = 65536


@dataclass(frozen=True)
class SshTarget:
    host: str
    port: int
    user: str

    @property
    def address(self) -> str:
        """`host:port`, IPv6 addresses bracketed."""
        return _address(self.host, self.port)

    def __str__(self) -> str:
        return f"{self.user}@{self.address}"


@dataclass(frozen=True)
class RemoteResult:
    """What a command did. `exit_code` is -1 when it died of a signal: SSH then reports a
    signal, not a status."""

    exit_code: int
    stdout: str
    stderr: str


class SshError(BrevError):
    """Anything that kept a command from running on a box."""


class SshUnreachable(SshError):
    """Nothing answered as an SSH server, or the connection dropped."""


class SshAuthRefused(SshError):
    """The box did not accept the key or certificate."""


class HostKeyChanged(SshError):
    """The box showed another host key than the pinned one: a reinstall, or someone in the
    middle. Never connect anyway; a person checks the key on the box and re-pins it."""

    def __init__(self, address: str, pinned_key: str, offered_key: str) -> None:
        self.address = address
        self.pinned_key = pinned_key
        self.pinned_fingerprint = ca.fingerprint(pinned_key)
        self.offered_fingerprint = ca.fingerprint(offered_key)
        self.offered_key = offered_key
        key_file = _HOST_KEY_FILES.get(pinned_key.split()[0], "/etc/ssh/ssh_host_ed25519_key.pub")
        super().__init__(
            f"the host key of {address} changed: pinned {self.pinned_fingerprint}, "
            f"offered {self.offered_fingerprint}. If the box was reinstalled, check the new "
            f"key on the box (ssh-keygen -lf {key_file}) and re-pin it with "
            f"--host-key '<the line of that .pub file>'"
        )

    def __reduce__(self) -> tuple[type[HostKeyChanged], tuple[str, str, str]]:
        # Exceptions are rebuilt from their args when they cross processes; ours are not
        # the message alone.
        return type(self), (self.address, self.pinned_key, self.offered_key)


class CommandTimedOut(SshError):
    """A command ran past its timeout; it was abandoned (its channel closed)."""


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@functools.cache
def _quiet_paramiko() -> None:
    """paramiko logs every failed handshake with a traceback; without a handler of its own,
    Python would print those to stderr under our one-line messages. Applications that
    configure logging still receive them."""
    logging.getLogger("paramiko").addHandler(logging.NullHandler())


def _unreachable(address: str, reason: str) -> SshUnreachable:
    return SshUnreachable(
        f"cannot reach {address}: {reason}; check the host and port (is sshd running?)"
    )


def _reason(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def _connect(host: str, port: int, timeout: float, key_type: str) -> Transport:
    """A transport past key exchange (server authenticated by its key, not yet checked
    against anything), preferring host keys of `key_type`."""
    import paramiko

    _quiet_paramiko()
    address = _address(host, port)
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except socket.gaierror:
        raise _unreachable(address, "the name does not resolve") from None
    except ConnectionRefusedError:
        raise _unreachable(address, "connection refused") from None
    except TimeoutError:
        raise _unreachable(address, f"no answer within {timeout:g} s") from None
    except OSError as error:
        raise _unreachable(address, (error.strerror or _reason(error)).lower()) from None
    transport = paramiko.Transport(sock)
    transport.banner_timeout = timeout
    transport.handshake_timeout = timeout
    transport.auth_timeout = timeout
    options = transport.get_security_options()
    preferred = _HOST_KEY_ALGORITHMS.get(key_type, (key_type,))
    others = [name for name in options.key_types if name not in preferred]
    options.key_types = [name for name in preferred if name in options.key_types] + others
    try:
        transport.start_client(timeout=timeout)
    except (paramiko.SSHException, EOFError, OSError):
        transport.close()
        # Not the error's text: paramiko quotes what the other side sent, and the plane must
        # not read out other services of its network to whoever asks it to connect.
        raise _unreachable(address, "no SSH server answered there") from None
    return transport


def fetch_host_key(host: str, port: int, *, timeout: float = 10.0) -> str:
    """The host key `host:port` shows (`ssh-ed25519 AAAA...`, ed25519 when it has one),
    read without logging in. Pin it only after checking it out of band."""
    transport = _connect(host, port, timeout, "ssh-ed25519")
    try:
        key = transport.get_remote_server_key()
        return f"{key.get_name()} {key.get_base64()}"
    finally:
        transport.close()


def _load_key(private_key_pem: str, certificate: str | None) -> PKey:
    """A paramiko key from OpenSSH or PEM text, with its certificate attached."""
    import paramiko
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    try:
        key = ca.load_private_key(private_key_pem)
    except ca.InvalidKey as error:
        raise SshError(error.message) from None
    # paramiko reads PEM only in its older layouts; OpenSSH's own format it reads for all
    # three key types, so hand it that.
    openssh = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    key_class: type[PKey]
    if isinstance(key, ed25519.Ed25519PrivateKey):
        key_class = paramiko.Ed25519Key
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        key_class = paramiko.ECDSAKey
    else:
        key_class = paramiko.RSAKey
    pkey = key_class.from_private_key(io.StringIO(openssh))
    if certificate is not None:
        _attach_certificate(pkey, key, certificate)
    return pkey


def _attach_certificate(pkey: PKey, key: ca.SshPrivateKey, certificate: str) -> None:
    from cryptography.hazmat.primitives import serialization

    try:
        loaded = serialization.load_ssh_public_identity(certificate.strip().encode())
    except (ValueError, TypeError):
        raise SshError("the certificate is not an OpenSSH certificate line") from None
    if not isinstance(loaded, serialization.SSHCertificate):
        raise SshError("the certificate is a plain public key, not an OpenSSH certificate")
    raw = serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    certified = loaded.public_key().public_bytes(*raw).decode()
    own = key.public_key().public_bytes(*raw).decode()
    # paramiko checks only the key type; a certificate for another key would be sent and
    # refused by the box with no reason given.
    if certified != own:
        raise SshError(
            f"the certificate is for key {ca.fingerprint(certified)}, not for this key "
            f"({ca.fingerprint(own)}); ask for a certificate for this key"
        )
    pkey.load_certificate(certificate.strip())


class SshConnection:
    """An SSH connection to one machine, its host key checked against the pinned one.

    Use it as a context manager; `run` may be called many times (and from several threads:
    each command gets its own channel)."""

    def __init__(
        self,
        target: SshTarget,
        *,
        host_key: str,
        private_key_pem: str,
        certificate: str | None = None,
        timeout: float = 15.0,
    ) -> None:
        import paramiko

        self.target = target
        self._timeout = timeout
        try:
            pinned_type, pinned_blob = ca.parse_public_key_line(host_key)
        except ca.InvalidKey as error:
            raise SshError(f"the pinned host key of {target.address}: {error.message}") from None
        pkey = _load_key(private_key_pem, certificate)
        transport = _connect(target.host, target.port, timeout, pinned_type)
        try:
            offered = transport.get_remote_server_key()
            if offered.asbytes() != pinned_blob:
                offered_line = f"{offered.get_name()} {offered.get_base64()}"
                raise HostKeyChanged(target.address, host_key, offered_line)
            try:
                transport.auth_publickey(target.user, pkey)
            except paramiko.AuthenticationException:
                raise self._refused(pkey, certificate) from None
            except (paramiko.SSHException, EOFError, OSError) as error:
                raise SshUnreachable(
                    f"lost the connection to {target.address} while logging in "
                    f"({_reason(error)}); try again"
                ) from None
            if not transport.is_authenticated():  # the server asked for a second factor
                raise SshAuthRefused(
                    f"{target} wants more than a key to log in; brev logs in with a key or "
                    f"certificate alone: allow that for {target.user} on the box"
                )
        except BaseException:
            transport.close()
            raise
        self._transport = transport

    def _refused(self, pkey: PKey, certificate: str | None) -> SshAuthRefused:
        key_line = f"{pkey.get_name()} {pkey.get_base64()}"
        key_fingerprint = ca.fingerprint(key_line)
        user = self.target.user
        if certificate is not None:
            return SshAuthRefused(
                f"{self.target} refused the certificate of key {key_fingerprint}; the box must "
                f"trust the plane's CA (TrustedUserCAKeys) and the certificate must name "
                f"{user} and be current"
            )
        return SshAuthRefused(
            f"{self.target} refused the key ({key_fingerprint}); add its public key to "
            f"~{user}/.ssh/authorized_keys on the box, or pass --identity FILE"
        )

    @property
    def transport(self) -> Transport:
        """The SSH connection itself, for channels other than commands (a tunnel's)."""
        return self._transport

    def run(
        self, command: str, *, stdin: bytes | None = None, timeout: float = 300.0
    ) -> RemoteResult:
        """Run `command` through the login shell of the box's user, feed it `stdin` (then
        end of file), and wait for it, at most `timeout` seconds."""
        import paramiko

        deadline = time.monotonic() + timeout
        try:
            channel = self._transport.open_session(timeout=self._timeout)
            channel.exec_command(command)
        except (paramiko.SSHException, EOFError, OSError) as error:
            raise self._lost(error) from None
        try:
            # stdin, stdout and stderr move at once: a command that writes more than the
            # channel window before it has read all its input would otherwise wait for us
            # while we wait for it.
            stdout, stderr = bytearray(), bytearray()
            workers = [
                _start(_feed, channel, stdin or b""),
                _start(_drain, channel.recv, stdout),
                _start(_drain, channel.recv_stderr, stderr),
            ]
            for worker in workers:
                worker.join(max(0.0, deadline - time.monotonic()))
            finished = not any(w.is_alive() for w in workers) and channel.status_event.wait(
                max(0.0, deadline - time.monotonic())
            )
            if not finished:
                raise CommandTimedOut(
                    f"`{short_command(command)}` did not finish within {timeout:g} s on "
                    f"{self.target}; it was abandoned (it may still run there)"
                )
            exit_code = channel.recv_exit_status()
            if exit_code == -1 and not self._transport.is_active():
                raise self._lost(EOFError("the connection closed"))
            return RemoteResult(
                exit_code=exit_code,
                stdout=stdout.decode(errors="replace"),
                stderr=stderr.decode(errors="replace"),
            )
        finally:
            # Also wakes any worker still blocked on the channel after a timeout.
            channel.close()

    def _lost(self, error: BaseException) -> SshUnreachable:
        return SshUnreachable(
            f"lost the connection to {self.target.address} ({_reason(error)}); "
            f"check the box is up and try again"
        )

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> SshConnection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def short_command(command: str) -> str:
    """The first line of a command, cut to fit an error message."""
    line = command.strip().splitlines()[0] if command.strip() else ""
    return line if len(line) <= 60 else line[:57] + "..."


def _start(target: Callable[..., None], *args: object) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


def _feed(channel: Channel, data: bytes) -> None:
    import paramiko

    try:
        if data:
            channel.sendall(data)
        channel.shutdown_write()
    except (paramiko.SSHException, OSError, EOFError):
        pass  # the command exited without reading all of it, as with a closed pipe


def _drain(recv: Callable[[int], bytes], into: bytearray) -> None:
    try:
        while chunk := recv(_CHUNK):
            into += chunk
    except (OSError, EOFError):
        pass  # the connection dropped: run() sees no exit status and says so
