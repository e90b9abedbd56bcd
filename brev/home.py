"""Where brev keeps its state on this machine: `$BREV_HOME`, else `~/.brev`."""

from __future__ import annotations

import os
from pathlib import Path


def brev_home() -> Path:
    configured = os.environ.get("BREV_HOME")
    return Path(configured).expanduser() if configured else Path.home() / ".brev"


def write_private_file(path: Path, content: str) -> None:
    """Write `content` readable by the owner only, replacing `path` atomically.

    The file is created 0600 before any byte is written, so a secret is never readable by
    others, not even for a moment.
    """
    import tempfile  # here: it costs brev's start-up 1.5 ms

    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # mkstemp creates a new file (O_EXCL) with mode 0600: never a stale file's permissions.
    descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    temporary = Path(name)
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(content)
        temporary.replace(path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
