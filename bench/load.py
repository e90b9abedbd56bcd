"""The load test, longer: agents reporting to two replicas on one PostgreSQL while users list,
create and delete; the percentiles of each route, and whether anything was lost.

    .venv/bin/python bench/load.py [--seconds 120] [--agents 1000] [--users 20] [--think 2]

Starts a throwaway PostgreSQL cluster (default durability settings), moto's EC2 server (the
users' AWS), and two `brev server` replicas on one database with one secret key (reconciler
on, BREV_RECONCILE_INTERVAL=1, BREV_RECONCILE_POLL=1, moto's "running" taken as reachable).
Seeds the agents' instances and tokens into the database, adds the users as members and moto
as the org's AWS, then drives bench/loadgen.py's load for --seconds from this process (one
asyncio loop, httpx, a connection per request as the agent and the CLI make them): agent i
reports every 10 s to replica i % 2, user u lists, creates and deletes on replica u % 2.

Prints, per route, the count, p50, p99 and max latency (ms, client included) and the statuses,
how many reports were sent again after a timeout, the CPU each process used, and the check of
tests/test_load.py: every report's seq stored exactly once. Exits 0 either way (a benchmark),
except when the check failed (1).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

from brev.client import BrevClient

if TYPE_CHECKING:  # mypy roots modules at the repository; see bench/harness.py
    from bench import harness, heartbeats, loadgen, pgcluster, provisioning
else:
    import harness
    import heartbeats
    import loadgen
    import pgcluster
    import provisioning

REPLICA_ENV = {
    "BREV_RECONCILE": "1",
    "BREV_RECONCILE_INTERVAL": "1",
    "BREV_RECONCILE_POLL": "1",
    "BREV_RECONCILE_LEASE": "15",
    "BREV_BOOT_PROBE": "none",  # moto's machines have neither an agent nor an sshd
}


def parse_arguments() -> argparse.Namespace:
    shape = loadgen.LoadShape()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=120.0, help="how long (120)")
    parser.add_argument("--agents", type=int, default=shape.agents, help=f"({shape.agents})")
    parser.add_argument("--users", type=int, default=shape.users, help=f"({shape.users})")
    parser.add_argument(
        "--think", type=float, default=shape.think_s, help=f"users' pause, s ({shape.think_s:g})"
    )
    return parser.parse_args()


def main() -> None:
    arguments = parse_arguments()
    harness.exit_on_sigterm()
    harness.require_brev()
    bindir = pgcluster.postgres_bindir()
    if bindir is None:
        sys.exit("no PostgreSQL server binaries (apt-get install postgresql)")
    from cryptography.fernet import Fernet

    shape = loadgen.LoadShape(
        agents=arguments.agents,
        users=arguments.users,
        think_s=arguments.think,
        seconds=arguments.seconds,
    )
    home = Path(tempfile.mkdtemp(prefix="brev-load-"))
    try:
        with ExitStack() as stack:
            database_url = stack.enter_context(pgcluster.postgres(bindir))
            moto = stack.enter_context(provisioning.moto_server(home))
            key = Fernet.generate_key().decode()
            first = heartbeats.start_plane(stack, home / "a", database_url, key, env=REPLICA_ENV)
            second = heartbeats.start_plane(
                stack, home / "b", database_url, key, replica_of=first, env=REPLICA_ENV
            )
            replicas = [first, second]
            agents = loadgen.seed_fleet(database_url, shape.agents)
            with BrevClient(first.url, first.token, org=loadgen.ORG) as admin:
                admin.add_provider("aws", provisioning.moto_config(moto.url))
            users = loadgen.add_users(first.url, first.token, shape.users)
            print(
                f"load: {shape.agents} agents every {shape.interval_s:g} s and {shape.users} "
                f"users (pause {shape.think_s:g} s) on 2 replicas for {shape.seconds:g} s..."
            )
            pids = {"replica a": replicas[0].pid, "replica b": replicas[1].pid, "moto": moto.pid}
            before = {name: provisioning.cpu_seconds(pid) or 0.0 for name, pid in pids.items()}
            before["this process (load)"] = provisioning.cpu_seconds() or 0.0
            started = time.perf_counter()
            outcome = loadgen.run_load([r.url for r in replicas], agents, users, shape)
            wall = time.perf_counter() - started
            cpu = {name: (provisioning.cpu_seconds(pid) or 0.0) for name, pid in pids.items()}
            cpu["this process (load)"] = provisioning.cpu_seconds() or 0.0
            lost = loadgen.lost_reports(database_url, agents, outcome)
        print()
        print(harness.python_line())
        print(harness.machine_line())
        print(f"load     {os.getloadavg()[0]:.1f} (1 min average, at the end)")
        print()
        for line in outcome.summary():
            print(line)
        print(
            "CPU      "
            + ", ".join(f"{name} {(cpu[name] - before[name]) / wall:.2f}" for name in cpu)
            + f" cores over {wall:.0f} s (PostgreSQL not counted)"
        )
        print(f"failures {outcome.failure_count}" + "".join(f"\n  {f}" for f in outcome.failures))
        unacknowledged = sum(s - a for s, a in zip(outcome.sent, outcome.acked, strict=True))
        print(
            f"reports  {sum(outcome.sent)} sent, {unacknowledged} never acknowledged; "
            f"stored exactly once: {'yes' if not lost else 'NO'}"
        )
        for problem in lost[:20]:
            print(f"  {problem}")
        if lost:
            sys.exit(1)
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
