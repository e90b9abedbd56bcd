"""One OpenSSH connection to a machine, shared by every step of a `brev run`.

The first `ssh` becomes a ControlMaster on a socket of its own; the sync, the command, the
signal forwarding and the copy back are channels of that one connection, so each costs a
round trip instead of a TCP and key exchange. Host keys are checked as everywhere else in
brev: our ssh_config pins them (StrictHostKeyChecking yes)."""

from __future__ import annotations

import contextlib
import shlex
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

# Seconds without an answer from the machine before ssh gives up: a dropped connection is
# noticed within ALIVE_INTERVAL_S * ALIVE_COUNT.
ALIVE_INTERVAL_S = 5
ALIVE_COUNT = 3


@dataclass
class SshSession:
    config: Path  # our ssh_config (brev.ssh.config.paths().config)
    alias: str
    # False: each command its own connection (one command in all: `run --on` fast path).
    shared: bool = True
    control_dir: Path | None = None

    def __post_init__(self) -> None:
        if self.shared and self.control_dir is None:
            self.control_dir = Path(tempfile.mkdtemp(prefix="brev-ssh-"))

    @property
    def control_path(self) -> Path | None:
        return self.control_dir / "master" if self.control_dir is not None else None

    def options(self) -> list[str]:
        """ssh's arguments before the host: our config, the shared connection."""
        shared = []
        if self.control_path is not None:
            shared = [
                "-o",
                "ControlMaster=auto",
                "-o",
                f"ControlPath={self.control_path}",
                "-o",
                "ControlPersist=120",
            ]
        return [
            "-F",
            str(self.config),
            *shared,
            "-o",
            f"ServerAliveInterval={ALIVE_INTERVAL_S}",
            "-o",
            f"ServerAliveCountMax={ALIVE_COUNT}",
            "-o",
            "BatchMode=yes",
        ]

    def argv(self, remote_command: str) -> list[str]:
        return ["ssh", *self.options(), self.alias, "--", remote_command]

    def rsh(self) -> str:
        """The remote shell for rsync's -e: ssh with the same options (rsync adds the host)."""
        return shlex.join(["ssh", *self.options()])

    def run(
        self, remote_command: str, *, timeout: float | None = None, input_bytes: bytes = b""
    ) -> subprocess.CompletedProcess[bytes]:
        """A short command whose output is wanted (not the user's: that streams)."""
        return subprocess.run(
            self.argv(remote_command),
            input=input_bytes,
            capture_output=True,
            timeout=timeout,
            check=False,
        )

    def close(self) -> None:
        """End the shared connection (and its ControlPersist master) and its socket folder."""
        if self.control_path is None or self.control_dir is None:
            return
        if self.control_path.exists():
            subprocess.run(
                ["ssh", *self.options(), "-O", "exit", self.alias],
                capture_output=True,
                timeout=10,
                check=False,
            )
        self.control_path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # not empty: leave it
            self.control_dir.rmdir()
