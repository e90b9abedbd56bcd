"""`running` means reachable: when a booting cloud machine counts as one a user can get into.

The provider's "running" says only that the cloud started it. brev calls an instance running
once its agent has reported since this boot began (which also pins its SSH host keys), or, for
an image without the agent, once its sshd answers with an SSH banner. A first boot that is not
reachable within the timeout is given back and the next placement tried: nobody pays for a machine
nobody can enter (a broken image, a driver that never loads).

Probes: "agent+ssh" (the default), "agent" (no connection from the plane to the machine), and
"none" (the provider's word is enough: moto's machines in tests, which have neither).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from datetime import datetime, timedelta

PROBES = ("agent+ssh", "agent", "none")
SSH_PORT = 22
BANNER_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class BootCheck:
    probe: str = "agent+ssh"
    timeout: timedelta = timedelta(minutes=15)

    def reached_by(
        self,
        *,
        boot_started_at: datetime | None,
        last_heartbeat_at: datetime | None,
        host: str | None,
        port: int | None = None,
    ) -> str | None:
        """How the machine was found reachable ("agent", "ssh", "provider"), or None (yet)."""
        if self.probe == "none":
            return "provider"
        if last_heartbeat_at is not None and (
            boot_started_at is None or last_heartbeat_at >= boot_started_at
        ):
            return "agent"
        if self.probe == "agent+ssh" and host and sshd_answers(host, port or SSH_PORT):
            return "ssh"
        return None


def sshd_answers(host: str, port: int, timeout_s: float = BANNER_TIMEOUT_S) -> bool:
    """Whether an SSH server answers at host:port: its banner ("SSH-2.0-...") arrives in time.
    Nothing is sent, so no authentication is tried and nothing is logged as a failed login."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as connection:
            connection.settimeout(timeout_s)
            return connection.recv(8).startswith(b"SSH-")
    except OSError:
        return False
