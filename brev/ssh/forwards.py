"""Port forwards as people type them (`-p 8080:80`, `-p 6006`), and the local side's checks:
a port that is taken is an error before any connection is made."""

from __future__ import annotations

import errno
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

from brev.errors import BrevError

if TYPE_CHECKING:
    import socket

_PORT = re.compile(r"[0-9]{1,5}")


class Forward(NamedTuple):
    """127.0.0.1:local here to 127.0.0.1:remote on the instance. (NamedTuples, not
    dataclasses, here: a dataclass costs every `brev` start a millisecond to build.)"""

    local: int
    remote: int


def parse_forward(spec: str) -> Forward:
    """`8080:80` or `8080` (the same port on both sides); BrevError with one line otherwise."""
    parts = spec.strip().split(":")
    if len(parts) > 2 or not all(parts):
        raise BrevError(f"-p {spec!r}: expected LOCAL:REMOTE or PORT, e.g. -p 8080:80 or -p 8888")
    ports = [_port(spec, part) for part in parts]
    return Forward(local=ports[0], remote=ports[-1])


def _port(spec: str, text: str) -> int:
    return parse_port(f"-p {spec!r}", text)


def parse_port(option: str, text: str) -> int:
    """A TCP port number; a one-line BrevError naming `option` otherwise."""
    if not _PORT.fullmatch(text):
        raise BrevError(f"{option}: {text!r} is not a port number (1-65535)")
    value = int(text)
    if not 1 <= value <= 65535:
        raise BrevError(f"{option}: port {value} is out of range (1-65535)")
    return value


def parse_forwards(specs: Sequence[str]) -> list[Forward]:
    if not specs:
        raise BrevError("no port to forward: brev port-forward NAME -p LOCAL:REMOTE [-p ...]")
    forwards = [parse_forward(spec) for spec in specs]
    seen: set[int] = set()
    for forward in forwards:
        if forward.local in seen:
            raise BrevError(f"-p: local port {forward.local} is given twice")
        seen.add(forward.local)
    return forwards


def bind(port: int, remote: int | None = None) -> socket.socket:
    """A socket bound to 127.0.0.1:port (SO_REUSEADDR, as ssh binds its -L listeners); one-line
    BrevErrors for a port in use or not ours to take."""
    import socket  # here, as all the network modules: `brev --help` need not load them

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    other = f"-p OTHER:{remote}" if remote is not None else "--port OTHER"
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise BrevError(
                f"local port {port} is already in use on this machine; pick another ({other})"
            ) from None
        if error.errno == errno.EACCES:
            raise BrevError(
                f"local port {port} is reserved for root on this machine; pick one above 1023 "
                f"({other})"
            ) from None
        raise BrevError(f"cannot listen on local port {port}: {error.strerror}") from None
    return sock


def check_local_port(port: int, remote: int | None = None) -> None:
    """BrevError unless 127.0.0.1:port can be listened on right now."""
    sock = bind(port, remote)
    try:
        sock.listen(1)
    except OSError as error:
        raise BrevError(f"local port {port} is already in use on this machine ({error})") from None
    finally:
        sock.close()


def free_local_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
