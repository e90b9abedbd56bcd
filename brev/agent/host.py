"""The host around the GPUs: CPU, memory, disk, uptime, SSH host keys and sessions (Linux)."""

from __future__ import annotations

import os
import platform
import shutil
import socket
from pathlib import Path

from brev.agent.report import HostSample

PROC = Path("/proc")
SSH_DIR = Path("/etc/ssh")


def meminfo(proc: Path = PROC) -> dict[str, int]:
    """/proc/meminfo in bytes, e.g. {'MemTotal': ..., 'MemAvailable': ...}; {} if unreadable."""
    try:
        lines = (proc / "meminfo").read_text().splitlines()
    except OSError:
        return {}
    values: dict[str, int] = {}
    for line in lines:
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            values[key] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    return values


def ssh_host_keys(ssh_dir: Path = SSH_DIR) -> list[str]:
    """The host's public keys, for the plane to pin; private keys are never read."""
    keys = []
    for path in sorted(ssh_dir.glob("ssh_host_*_key.pub")):
        try:
            keys.append(path.read_text().strip())
        except OSError:
            continue
    return keys


def ssh_sessions(proc: Path = PROC) -> int:
    """Open SSH sessions: sshd's per-session processes are titled `sshd: user@pts/0` (or
    `sshd: user@notty`, or `sshd-session: user@...` on newer OpenSSH)."""
    count = 0
    for cmdline in proc.glob("[0-9]*/cmdline"):
        try:
            title = cmdline.read_bytes().split(b"\0", 1)[0].decode(errors="replace")
        except OSError:
            continue
        if title.startswith(("sshd: ", "sshd-session: ")) and "@" in title:
            count += 1
    return count


def process_name(pid: int, proc: Path = PROC) -> str:
    """A process's program as nvidia-smi names it (argv[0]); "" when it is gone."""
    try:
        return (
            (proc / str(pid) / "cmdline").read_bytes().split(b"\0", 1)[0].decode(errors="replace")
        )
    except OSError:
        return ""


def _uptime(proc: Path = PROC) -> float | None:
    try:
        return float((proc / "uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def read_host(disk_path: str = "/") -> HostSample:
    memory = meminfo()
    disk = shutil.disk_usage(disk_path)
    try:
        load: float | None = os.getloadavg()[0]
    except OSError:
        load = None
    return HostSample(
        hostname=socket.gethostname(),
        os=_os_name(),
        arch=platform.machine(),
        kernel=platform.release(),
        python=platform.python_version(),
        cpu_count=os.cpu_count() or 1,
        load_1m=load,
        memory_total_bytes=memory.get("MemTotal"),
        memory_available_bytes=memory.get("MemAvailable"),
        disk_total_bytes=disk.total,
        disk_free_bytes=disk.free,
        uptime_seconds=_uptime(),
        ssh_host_keys=ssh_host_keys(),
        ssh_sessions=ssh_sessions(),
    )


def _os_name() -> str:
    try:
        release = platform.freedesktop_os_release()
    except OSError:
        return platform.system()
    return release.get("PRETTY_NAME") or release.get("NAME") or platform.system()
