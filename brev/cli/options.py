"""The options many commands take, defined once: `--json`, `--start` and `--wait` of the commands
that reach a machine, and durations (`--timeout 15m`, `--ttl 4h`, `--expires 30d`...), whose
mistakes are one `error: --FLAG: ...` line and exit 1, as every other BrevError."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from brev.duration import InvalidDuration, parse_duration
from brev.errors import BrevError


def json_flag(text: str = "print JSON") -> Any:
    return typer.Option("--json", help=text)


# Every command that prints data takes it: the same data as one JSON document on stdout.
JsonOutput = Annotated[bool, json_flag()]
Start = Annotated[bool, typer.Option(help="start it first if it is stopped")]
Wait = Annotated[str, typer.Option(help="how long to wait for it to be reachable")]
# Forces the paramiko path (also BREV_TUNNEL_BACKEND=paramiko); for tests and odd machines.
UseParamiko = Annotated[bool, typer.Option("--paramiko", hidden=True)]


class InvalidOption(BrevError):
    """A value the parser took that the command cannot use; the message names the flag."""


def duration(flag: str, text: str) -> int:
    """`text` (90s, 15m, 12h, 30d, 2w) in seconds."""
    try:
        return parse_duration(text)
    except InvalidDuration as exc:
        raise InvalidOption(f"{flag}: {exc}") from None


def optional_duration(flag: str, text: str | None) -> int | None:
    """As `duration`; None when the option was not given."""
    return None if not text else duration(flag, text)


def duration_or_off(what: str, text: str) -> int | None:
    """A duration, or `off` (None): the argument of `brev autostop` and `brev ttl`."""
    if text.strip().lower() == "off":
        return None
    try:
        return parse_duration(text)
    except InvalidDuration as exc:
        raise InvalidOption(f"{what}: {exc}, or off") from None
