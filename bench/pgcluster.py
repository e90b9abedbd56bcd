"""A throwaway PostgreSQL cluster for the benchmarks (bench/heartbeats.py, bench/load.py):
Debian's server binaries, a temporary data directory, TCP on 127.0.0.1 only, default
durability settings (the tests' cluster turns fsync off; a benchmark should not).

Imported as bench/harness.py says (`from bench import pgcluster` for mypy).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # mypy roots modules at the repository; see bench/harness.py
    from bench import harness
else:
    import harness


def postgres_bindir() -> Path | None:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)
    if candidates:
        return candidates[0].parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


@contextmanager
def postgres(bindir: Path) -> Iterator[str]:
    """A throwaway cluster (as the postgres user when root), default durability settings;
    its URL. Stopped and removed on the way out."""
    run_as = "postgres" if os.geteuid() == 0 else None
    datadir = Path(tempfile.mkdtemp(prefix="brev-bench-pg-"))
    port = harness.free_port()

    def pg(*args: str) -> None:
        command = [str(bindir / args[0]), *args[1:]]
        if run_as:
            command = ["runuser", "-u", run_as, "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    if run_as:
        user = pwd.getpwnam(run_as)
        os.chown(datadir, user.pw_uid, user.pw_gid)
    try:
        pg("initdb", "-D", str(datadir), "-U", "postgres", "-A", "trust", "--no-sync")
        options = f"-p {port} -k {datadir} -c listen_addresses=127.0.0.1 -c max_connections=200"
        log = str(datadir / "server.log")
        pg("pg_ctl", "-D", str(datadir), "-o", options, "-l", log, "-w", "start")
        try:
            yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
        finally:
            pg("pg_ctl", "-D", str(datadir), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(datadir, ignore_errors=True)
