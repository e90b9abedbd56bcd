"""The words of `brev run`'s command line that both the full CLI and the fast path of
`brev run --on NAME --no-sync` read (brev.cli.run.fast): nothing heavy is imported here."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # what every POSIX shell can export


class UsageError(ValueError):
    pass


@dataclass(frozen=True)
class Out:
    remote: str
    local: Path


def parse_env(pairs: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not _ENV_NAME.fullmatch(key):
            raise UsageError(f"--env {pair!r}: use NAME=VALUE (or NAME to pass this value on)")
        if not equals:
            if key not in os.environ:
                raise UsageError(f"--env {key}: not set here; give its value as {key}=VALUE")
            value = os.environ[key]
        env[key] = value
    return env


def parse_out(text: str) -> Out:
    """PATH[:LOCAL]; LOCAL defaults to PATH relative to here (its last part if absolute)."""
    remote, _, local = text.partition(":")
    if not remote:
        raise UsageError(f"--out {text!r}: use PATH or PATH:LOCAL")
    if not local:
        path = PurePosixPath(remote)
        local = path.name if path.is_absolute() or ".." in path.parts else remote
    return Out(remote=remote, local=Path(local))
