"""What bench/provision.py's variants share: moto's EC2 server, creates POSTed to a real plane
and polled until they run (alone or a batch at once), where their time went, deleting them
all, and the CPU of the processes meanwhile.

Imported as bench/harness.py says (`from bench import provisioning` for mypy).
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from brev import api
from brev.client import BrevClient

if TYPE_CHECKING:  # mypy roots modules at the repository; see bench/harness.py
    from bench import harness
else:
    import harness

Abort = harness.Abort  # the run cannot go on; the message says why
MOTO_SERVER = harness.PYTHON.parent / "moto_server"
ORG = "default"
REGION = "us-east-1"
GPU = "a100:8"  # p4d.24xlarge in REGION, the cheapest offer of it
BATCH = 100
TARGET_RATIO = 3.0
RECONCILER_WORKERS = 16  # Reconciler(workers=16), the server's default
# POSTs in flight at once. More than about 55 concurrent requests deadlock `brev server` for
# 30 s (its SQLite pool of 15 connections against the 40 threads anyio lends to sync routes
# and dependencies; see docs/benchmarks.md), so the batch is sent by 32 threads: all 100 reach
# the plane within a second or two, far less than it takes to provision them.
POST_THREADS = 32
POLL_S = 0.1  # the client's poll: both the single and the batch are seen through it
REQUEST_TIMEOUT_S = 30.0
# moto's machines have no agent and no sshd: its "running" is taken as reachable.
SERVER_ENV = {
    "BREV_RECONCILE_INTERVAL": "0.1",
    "BREV_RECONCILE_POLL": "0.2",
    "BREV_BOOT_PROBE": "none",
}
# Where a create's time goes, between two of its events (the server's timestamps).
PHASES = [
    ("queued: create -> claimed by a worker", "instance.create", "instance.attempt"),
    ("provider create", "instance.attempt", "instance.provisioned"),
    ("provisioned -> running (poll + describe)", "instance.provisioned", "instance.running"),
]


@dataclass
class Deadline:
    at: float
    budget_s: float

    @classmethod
    def after(cls, budget_s: float) -> Deadline:
        return cls(time.monotonic() + budget_s, budget_s)

    def check(self, doing: str) -> None:
        if time.monotonic() >= self.at:
            raise Abort(f"time budget of {self.budget_s:.0f} s ran out while {doing}")


@dataclass
class Create:
    """One create as the client saw it (perf_counter seconds)."""

    posted_at: float
    answered_at: float
    name: str
    running_at: float | None = None

    @property
    def total(self) -> float:
        assert self.running_at is not None
        return self.running_at - self.posted_at


@dataclass
class Batch:
    """`creates` POSTed at once, from `started` until the poll that saw the last one running."""

    creates: list[Create] = field(default_factory=list)
    started: float = 0.0
    ended: float = 0.0

    @property
    def total(self) -> float:
        return self.ended - self.started

    @property
    def slowest(self) -> Create:
        return max(self.creates, key=lambda c: c.total)


# -- processes ------------------------------------------------------------------------------


def moto_server(
    workdir: Path, log_name: str = "moto.log"
) -> AbstractContextManager[harness.Server]:
    """moto's EC2 server on a free port (as tests/moto.py starts it)."""
    if not MOTO_SERVER.exists():
        raise Abort(f"no moto_server at {MOTO_SERVER}: install the dev extras into this venv")
    port = harness.free_port()
    return harness.serving(
        "moto_server",
        [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)],
        port=port,
        ready_path="/moto-api/",
        env={**harness.clean_environment(), "MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION": "true"},
        log=workdir / log_name,
    )


def moto_config(url: str) -> dict[str, str]:
    return {"access_key_id": "testing", "secret_access_key": "testing", "endpoint_url": url}


def cpu_seconds(pid: int | None = None) -> float | None:
    """User + system CPU time of a process so far (Linux /proc; None elsewhere)."""
    if pid is None:
        times = os.times()
        return times.user + times.system
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    # utime and stime are fields 14 and 15 of stat(5), 12 and 13 after the ")" of the name
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_snapshot(pids: dict[str, int | None]) -> dict[str, float]:
    found = {name: cpu_seconds(pid) for name, pid in pids.items()}
    return {name: value for name, value in found.items() if value is not None}


def live_machines(ec2: Any) -> int:
    """Machines moto holds that are not terminated (or on their way there). Paged: moto, like
    EC2, answers at most 100 reservations at a time."""
    return sum(
        1
        for page in ec2.get_paginator("describe_instances").paginate()
        for r in page["Reservations"]
        for i in r["Instances"]
        if i["State"]["Name"] not in ("terminated", "shutting-down")
    )


def server_log_tail(log: Path, lines: int = 30) -> str:
    return "\n".join(["server log, last lines:", *log.read_text().splitlines()[-lines:]])


# -- creating -------------------------------------------------------------------------------


@contextmanager
def _no_wait(pool: ThreadPoolExecutor) -> Iterator[ThreadPoolExecutor]:
    try:
        yield pool
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def post(client: BrevClient, body: api.InstanceCreate, name: str) -> Create:
    posted = time.perf_counter()
    detail = client.create_instance(body.model_copy(update={"name": name}))
    return Create(posted_at=posted, answered_at=time.perf_counter(), name=detail.name)


def poll_until(
    client: BrevClient,
    done: Callable[[dict[str, api.Instance]], bool],
    on_running: Callable[[str, float], None],
    deadline: Deadline,
    doing: str,
) -> None:
    """GET the org's instances every POLL_S until `done` says so; report each first seen
    running; abort on a failed instance or when the budget runs out."""
    while True:
        seen_at = time.perf_counter()
        listing = {i.name: i for i in client.instances()}
        for name, instance in listing.items():
            if instance.status == api.InstanceStatus.FAILED:
                raise Abort(f"instance {name} failed: {instance.status_reason}")
            if instance.status == api.InstanceStatus.RUNNING:
                on_running(name, seen_at)
        if done(listing):
            return
        deadline.check(doing)
        time.sleep(max(0.0, POLL_S - (time.perf_counter() - seen_at)))


def create_alone(
    client: BrevClient, body: api.InstanceCreate, name: str, deadline: Deadline
) -> Create:
    """POST one create, then poll until it runs."""
    create = post(client, body, name)

    def on_running(seen: str, at: float) -> None:
        if seen == name and create.running_at is None:
            create.running_at = at

    poll_until(
        client, lambda _: create.running_at is not None, on_running, deadline, f"{name} starts"
    )
    return create


def delete_and_wait(client: BrevClient, name: str, deadline: Deadline) -> None:
    client.delete_instance(name)
    poll_until(client, lambda ls: name not in ls, lambda *_: None, deadline, f"{name} goes")


def create_batch(
    plane: harness.Plane,
    body: api.InstanceCreate,
    count: int,
    threads: int,
    deadline: Deadline,
) -> Batch:
    """`count` POSTs from `threads` threads at once, one poller for all, until all run."""
    limits = httpx.Limits(max_connections=threads + 8, max_keepalive_connections=threads + 8)
    http = httpx.Client(base_url=plane.url, timeout=REQUEST_TIMEOUT_S, limits=limits)
    lock = threading.Lock()
    running: dict[str, float] = {}
    batch = Batch()

    def on_running(name: str, at: float) -> None:
        with lock:
            running.setdefault(name, at)

    # Shut down without waiting on the way out: after an abort the server is stopped next,
    # which ends any POST still in flight at once.
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="post")
    with BrevClient(plane.url, plane.token, org=ORG, http=http) as client, _no_wait(pool):
        names = [f"batch-{number:03d}" for number in range(count)]
        batch.started = time.perf_counter()
        futures = [pool.submit(post, client, body, name) for name in names]

        def all_running(listing: dict[str, api.Instance]) -> bool:
            for future in futures:
                if future.done() and future.exception() is not None:
                    raise Abort(f"a create was refused: {future.exception()}")
            return all(name in running for name in names)

        poll_until(client, all_running, on_running, deadline, f"{count} creates run")
        batch.ended = max(running[name] for name in names)
        for future in futures:
            create = future.result()
            create.running_at = running[create.name]
            batch.creates.append(create)
    return batch


def phases(client: BrevClient, names: set[str]) -> dict[str, dict[str, float]]:
    """Each instance's seconds in each of PHASES, from its events."""
    stamps: dict[str, dict[str, datetime]] = {}
    for event in client.events(limit=1000):
        if event.object_type == "instance" and event.object_name in names:
            # Newest first: the earliest of each action wins (the warm-up has its own name).
            stamps.setdefault(event.object_name, {})[event.action] = event.created_at
    found: dict[str, dict[str, float]] = {}
    for name, at in stamps.items():
        try:
            found[name] = {
                label: (at[end] - at[start]).total_seconds() for label, start, end in PHASES
            }
        except KeyError:
            continue  # the events were cut at 1000: leave this one out of the breakdown
    return found


def delete_all(plane: harness.Plane, threads: int, deadline: Deadline) -> float:
    """DELETE every instance at once, then poll until the org lists none; the wall time."""
    limits = httpx.Limits(max_connections=threads + 8)
    http = httpx.Client(base_url=plane.url, timeout=REQUEST_TIMEOUT_S, limits=limits)
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="delete")
    with BrevClient(plane.url, plane.token, org=ORG, http=http) as client, _no_wait(pool):
        started = time.perf_counter()
        names = [i.name for i in client.instances()]
        for future in [pool.submit(client.delete_instance, name) for name in names]:
            future.result()
        poll_until(client, lambda listing: not listing, lambda *_: None, deadline, "deleting")
        return time.perf_counter() - started


# -- reporting ------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


def median_max(values: list[float]) -> str:
    return f"{ms(statistics.median(values))} / {ms(max(values))}" if values else "?"


def table(rows: list[tuple[str, str, str]]) -> list[str]:
    """Rows of (label, value, multiple) as aligned lines."""
    width = max(len(r[0]) for r in rows)
    return [f"{label:<{width}}  {value:>19}  {times}".rstrip() for label, value, times in rows]


def phase_lines(found: dict[str, dict[str, float]], alone: set[str]) -> list[str]:
    """Where each create's time went: the creates named in `alone` beside those of the batch."""
    singles = [p for name, p in found.items() if name in alone]
    in_batch = [p for name, p in found.items() if name not in alone]
    return [
        "where each create's time went (server event timestamps; median / max):",
        *(
            f"  {label:<42} alone {median_max([p[label] for p in singles]):>19}   "
            f"in batch {median_max([p[label] for p in in_batch]):>19}"
            for label, _, _ in PHASES
        ),
    ]


def cpu_lines(cpu: dict[str, float], wall_s: float, count: int) -> list[str]:
    return [
        f"CPU spent during the batch ({wall_s:.1f} s wall):",
        *(
            f"  {name:<20} {seconds:5.1f} CPU-s = {seconds / wall_s:4.0%} of one CPU, "
            f"{seconds / count * 1000:3.0f} ms per create"
            for name, seconds in cpu.items()
        ),
    ]
