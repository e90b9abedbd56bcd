"""The agent's footprint, for bench/heartbeats.py: a real `brev agent run` against a plane, its
RSS and its CPU a minute (its own and its nvidia-smi children's), read from /proc.

Imported as bench/harness.py says (`from bench import agent_footprint` for mypy).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # mypy roots modules at the repository; see bench/harness.py
    from bench import harness
else:
    import harness


def proc_sample(pid: int) -> tuple[float, float, float]:
    """RSS (MiB), own CPU s and waited-for children's CPU s of `pid`."""
    rss_kib = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss_kib = int(line.split()[1])
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    own = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    children = (int(fields[13]) + int(fields[14])) / tick  # cutime, cstime
    return rss_kib / 1024, own, children


def measure(
    plane: harness.Plane, token: str, home: Path, stub_bin: Path, seconds: float, org: str
) -> None:
    """Runs `brev agent run --interval 1s` against `plane` as the agent of `token` (gpu-0000's
    in `org`), with the nvidia-smi stand-in of `stub_bin` first on PATH, for `seconds`; prints
    what it took."""
    env = harness.clean_environment(home / "agent")
    env["PATH"] = f"{stub_bin}:{env.get('PATH', '')}"
    argv = [str(harness.BREV), "agent", "run", "--url", plane.url, "--token", token]
    log = home / "agent.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [*argv, "--interval", "1s"], env=env, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        time.sleep(2.0)  # past start-up: imports, the first report
        if process.poll() is not None:
            raise harness.Abort(f"brev agent run exited: {log.read_text()}")
        rss0, own0, kids0 = proc_sample(process.pid)
        started = time.perf_counter()
        rss_max = rss0
        while time.perf_counter() - started < seconds:
            time.sleep(1.0)
            rss_max = max(rss_max, proc_sample(process.pid)[0])
        rss1, own1, kids1 = proc_sample(process.pid)
        minutes = (time.perf_counter() - started) / 60
    finally:
        harness.stop_process(process)
    with plane.http() as client:
        shown = client.get(f"/api/v1/orgs/{org}/instances/gpu-0000").json()
    print(
        f"  agent: RSS {rss0:.1f} -> {rss1:.1f} MiB (max {rss_max:.1f}); CPU per minute "
        f"{(own1 - own0) / minutes:.2f} s own + {(kids1 - kids0) / minutes:.2f} s nvidia-smi; "
        f"instance health {shown.get('health')!r}"
    )
