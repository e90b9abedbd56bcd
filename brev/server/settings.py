"""How a control plane process is configured: flags, then environment, then defaults."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

from brev.home import brev_home


@dataclass(frozen=True)
class ServerSettings:
    home: Path
    database_url: str
    host: str = "127.0.0.1"
    port: int = 8080
    admin_email: str = "admin@localhost"
    # The reconciler: off for a read-only replica (BREV_RECONCILE=0); tests shorten the times.
    reconcile: bool = True
    reconcile_interval: float = 1.0
    reconcile_poll: float = 5.0
    reconcile_lease: float = 120.0
    # Steps wait on the provider's network (seconds each on a real cloud), not on the CPU: the
    # pool is as wide as the creates that should run at once (bench/provision.py --variant slow).
    reconcile_workers: int = 64
    # Replicas (brev.server.reconciler.replicas): this server's name as a lease owner, the same
    # across its restarts (by default host:port), and how long a silent one is taken for dead.
    replica_id: str = ""
    replica_timeout: float = 10.0
    # Request bodies (brev.server.body_limit): most requests, and agents' report batches.
    max_body_bytes: int = 1024 * 1024
    max_report_body_bytes: int = 16 * 1024 * 1024
    # Threads writing agents' reports (brev.server.ingest); 0: the database's default there.
    report_writers: int = 0
    sweep_interval: float = 300.0
    # Registered nodes: where their agents reach this plane (default: the URL `brev nodes add`
    # called), how often they report, and how long an install waits for the first report.
    public_url: str | None = None
    node_report_interval: float = 10.0
    node_install_wait: float = 60.0
    # Users' SSH certificates: short, so that losing the org loses access within this time.
    ssh_certificate_hours: float = 12.0
    # `brev run`: the lease a run-scoped token's instance gets when the create names none.
    run_lease_seconds: int = 300
    # `running` means reachable (brev.server.reconciler.boot): how a booting cloud machine is
    # judged reachable, and how long its first boot may take before the next placement.
    boot_probe: str = "agent+ssh"
    boot_timeout: float = 900.0

    @classmethod
    def load(
        cls, *, host: str | None = None, port: int | None = None, database_url: str | None = None
    ) -> ServerSettings:
        home = brev_home()
        url = database_url or os.environ.get("BREV_DATABASE_URL") or f"sqlite:///{home / 'brev.db'}"
        return cls(
            home=home,
            database_url=url,
            host=host or "127.0.0.1",
            port=port or 8080,
            admin_email=os.environ.get("BREV_ADMIN_EMAIL", "admin@localhost"),
            reconcile=os.environ.get("BREV_RECONCILE", "1") != "0",
            reconcile_interval=float(os.environ.get("BREV_RECONCILE_INTERVAL", "1")),
            reconcile_poll=float(os.environ.get("BREV_RECONCILE_POLL", "5")),
            reconcile_lease=float(os.environ.get("BREV_RECONCILE_LEASE", "120")),
            reconcile_workers=int(os.environ.get("BREV_RECONCILE_WORKERS", "64")),
            replica_id=(
                os.environ.get("BREV_REPLICA_ID") or f"{socket.gethostname()}:{port or 8080}"
            )[:64],
            replica_timeout=float(os.environ.get("BREV_REPLICA_TIMEOUT", "10")),
            max_body_bytes=int(os.environ.get("BREV_MAX_BODY_BYTES", str(1024 * 1024))),
            max_report_body_bytes=int(
                os.environ.get("BREV_MAX_REPORT_BODY_BYTES", str(16 * 1024 * 1024))
            ),
            report_writers=_report_writers(os.environ.get("BREV_REPORT_WRITERS", "0")),
            sweep_interval=float(os.environ.get("BREV_SWEEP_INTERVAL", "300")),
            public_url=os.environ.get("BREV_PUBLIC_URL") or None,
            node_report_interval=float(os.environ.get("BREV_NODE_REPORT_INTERVAL", "10")),
            node_install_wait=float(os.environ.get("BREV_NODE_INSTALL_WAIT", "60")),
            ssh_certificate_hours=float(os.environ.get("BREV_SSH_CERTIFICATE_HOURS", "12")),
            run_lease_seconds=int(os.environ.get("BREV_RUN_LEASE_SECONDS", "300")),
            boot_probe=_boot_probe(os.environ.get("BREV_BOOT_PROBE", "agent+ssh")),
            boot_timeout=float(os.environ.get("BREV_BOOT_TIMEOUT", "900")),
        )

    @property
    def admin_token_path(self) -> Path:
        return self.home / "admin-token"


def _boot_probe(value: str) -> str:
    from brev.server.reconciler.boot import PROBES

    if value not in PROBES:
        raise ValueError(f"BREV_BOOT_PROBE must be one of {', '.join(PROBES)}, not {value!r}")
    return value


def _report_writers(value: str) -> int:
    if not value.strip().isdigit():
        raise ValueError(
            f"BREV_REPORT_WRITERS must be a whole number, 0 or more (0: the database's default, "
            f"1 on SQLite, 2 on PostgreSQL), not {value!r}"
        )
    return int(value)
