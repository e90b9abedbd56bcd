"""A throwaway PostgreSQL cluster for the tests: Debian's server binaries, a temporary data
directory, TCP on 127.0.0.1 only, stopped when the tests end."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


def postgres_bindir() -> Path | None:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)
    if candidates:
        return candidates[0].parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class PostgresCluster:
    bindir: Path
    datadir: Path
    port: int
    run_as: str | None  # PostgreSQL refuses to run as root: then it runs as this user

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str) -> None:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self.run_as:
            command = ["runuser", "-u", self.run_as, "--", *command]
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=120)

    @classmethod
    def start(cls, bindir: Path) -> PostgresCluster:
        run_as = "postgres" if os.geteuid() == 0 else None
        datadir = Path(tempfile.mkdtemp(prefix="brev-pg-"))
        if run_as:
            user = pwd.getpwnam(run_as)
            os.chown(datadir, user.pw_uid, user.pw_gid)
        cluster = cls(bindir=bindir, datadir=datadir, port=free_port(), run_as=run_as)
        cluster._run("initdb", "-D", str(datadir), "-U", "postgres", "-A", "trust", "--no-sync")
        cluster.resume()
        return cluster

    def pause(self) -> None:
        """Stop the server, keeping its data: an outage, as the plane sees one (its open
        connections are ended, new ones refused)."""
        self._run("pg_ctl", "-D", str(self.datadir), "-m", "fast", "-w", "stop")

    def resume(self) -> None:
        """Start the server (again), on the same port."""
        options = (
            f"-p {self.port} -k {self.datadir} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=200"
        )
        log = str(self.datadir / "server.log")
        self._run("pg_ctl", "-D", str(self.datadir), "-o", options, "-l", log, "-w", "start")

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.datadir), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.datadir, ignore_errors=True)


def started_cluster() -> Iterator[PostgresCluster]:
    """A fixture's body: a running cluster, stopped after; a skip where the server binaries are
    missing, or a failure where this machine could have installed them (make test as root)."""
    bindir = postgres_bindir()
    if bindir is None:
        message = "PostgreSQL server binaries not found (make test installs them as root)"
        if os.environ.get("BREV_REQUIRE_SYSTEM_PACKAGES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    cluster = PostgresCluster.start(bindir)
    yield cluster
    cluster.stop()
