"""Human durations on the command line: `30d`, `12h`, `15m`, `90s`, `1w`."""

from __future__ import annotations

import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$", re.IGNORECASE)


class InvalidDuration(ValueError):
    pass


def parse_duration(text: str) -> int:
    """Seconds in `text`; raises InvalidDuration with a message a user can act on."""
    match = _DURATION.match(text)
    if not match:
        raise InvalidDuration(
            f"invalid duration {text!r}: use a number and a unit, e.g. 90s, 15m, 12h, 30d or 2w"
        )
    seconds = int(match.group(1)) * _UNITS[match.group(2).lower()]
    if seconds == 0:
        raise InvalidDuration(f"invalid duration {text!r}: it must be longer than zero")
    return seconds


def format_duration(seconds: float) -> str:
    """Compact age such as `3d`, `5h`, `12m`, `40s`: the largest whole unit."""
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def format_duration_exact(seconds: float) -> str:
    """A duration as the units it is made of: `2h`, `1h30m`, `1d12h`, `45s`; what
    parse_duration reads back when it is one unit."""
    left = max(0, int(seconds))
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if left >= size:
            parts.append(f"{left // size}{unit}")
            left %= size
    return "".join(parts) or "0s"
