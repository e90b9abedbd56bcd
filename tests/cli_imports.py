"""Whether a `brev` command line took a fast path (brev.cli.fast, brev.cli.listing): one that
did never imports typer, which the full CLI cannot do without."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import BREV


def imports_typer(argv: list[str], env: dict[str, str] | None = None) -> bool:
    """Whether `brev ARGV` imported typer on its way (python -X importtime says)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", BREV, *argv],
        env=os.environ if env is None else env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )
    return any(line.rsplit("|", 1)[-1].strip() == "typer" for line in done.stderr.splitlines())
