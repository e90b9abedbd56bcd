"""100 concurrent creates against moto: total wall time beside the slowest single create
measured in the same run; the plane must overlap them (target at most 3x).

    .venv/bin/python bench/provision.py [--batch N] [--post-threads N] [--keep]

Starts moto's EC2 server and a real `brev server` (SQLite in a temporary BREV_HOME, reconciler
interval 0.1 s, poll 0.2 s), adds AWS credentials pointing at moto, then:

1. moto alone, on a second, fresh moto: the AWS provider's create called in this process,
   one after another and then from as many threads as the reconciler has workers, with the
   CPU moto spends on each: the floor under any batch, since moto serves one call at a time;
2. one warm-up create, deleted again: the server's first create pays for loading botocore's
   EC2 model and building the provider, which no later create pays;
3. one create alone: POST, then poll until it is running. This is the speed of light of the
   plane on this machine: what one create costs when nothing else runs;
4. N creates at once (each its own POST, from --post-threads threads), one poller for all
   (`GET /instances` every POLL_S), until every one is running: the batch's total wall time,
   the slowest single create within it (its POST to the poll that first saw it running), and
   the CPU the server, moto and this client spent meanwhile;
5. checks that moto holds exactly N + 1 live machines, deletes every instance through the API,
   waits until none is listed, and checks that moto holds none.

Prints the times, the ratio batch total / single alone against the target, PASS or MISS, and
where each create's time went (from the server's own event timestamps). Exits 0 on PASS or
MISS, 1 when a check fails or the three-minute budget runs out: a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
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
from brev.providers.aws import AwsProvider
from brev.providers.base import InstanceSpec, Placement

if TYPE_CHECKING:  # mypy roots modules at the repository; see bench/harness.py
    from bench import harness
else:
    import harness

Abort = harness.Abort  # the run cannot go on; the message says why
MOTO_SERVER = harness.PYTHON.parent / "moto_server"
ORG = "default"
REGION = "us-east-1"
CREATE = api.InstanceCreate(gpu="a100:8", providers=["aws"], region=REGION)
BATCH = 100
TARGET_RATIO = 3.0
RECONCILER_WORKERS = 16  # Reconciler(workers=16), the server's default
# POSTs in flight at once. More than about 55 concurrent requests deadlock `brev server` for
# 30 s (its SQLite pool of 15 connections against the 40 threads anyio lends to sync routes
# and dependencies; see docs/benchmarks.md), so the batch is sent by 32 threads: all 100 reach
# the plane within a second or two, far less than it takes to provision them.
POST_THREADS = 32
POLL_S = 0.1  # the client's poll: both the single and the batch are seen through it
# moto's machines have no agent and no sshd: its "running" is taken as reachable.
SERVER_ENV = {
    "BREV_RECONCILE_INTERVAL": "0.1",
    "BREV_RECONCILE_POLL": "0.2",
    "BREV_BOOT_PROBE": "none",
}
# The whole run must end within three minutes: measuring aborts past BUDGET_S, a request
# waits at most REQUEST_TIMEOUT_S, and stopping the two servers takes at most 20 s more.
BUDGET_S = 125.0
REQUEST_TIMEOUT_S = 30.0
# Creates in each half of the moto-alone measurement (one after another, then threaded).
MOTO_ALONE_CREATES = 20
# Where a create's time goes, between two of its events (the server's timestamps).
PHASES = [
    ("queued: create -> claimed by a worker", "instance.create", "instance.attempt"),
    ("provider create (EC2 calls to moto)", "instance.attempt", "instance.provisioned"),
    ("provisioned -> running (poll + describe)", "instance.provisioned", "instance.running"),
]


@dataclass
class Deadline:
    at: float

    def check(self, doing: str) -> None:
        if time.monotonic() >= self.at:
            raise Abort(f"time budget of {BUDGET_S:.0f} s ran out while {doing}")


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
class MotoAlone:
    """AwsProvider.create against a fresh moto, without the plane."""

    serial_s: list[float]  # each create, one after another
    serial_cpu_s: float  # moto's CPU per create, over those
    threaded_s: float  # as many creates from RECONCILER_WORKERS threads: wall time


@dataclass
class Results:
    cold: Create | None = None
    single: Create | None = None
    batch: list[Create] = field(default_factory=list)
    batch_started: float = 0.0
    batch_ended: float = 0.0
    batch_cpu: dict[str, float] = field(default_factory=dict)  # process -> CPU seconds
    phases: dict[str, dict[str, float]] = field(default_factory=dict)  # name -> PHASES' seconds
    live_after_batch: int = -1
    delete_s: float = 0.0
    live_after_delete: int = -1
    moto: MotoAlone | None = None


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


def moto_config(url: str) -> dict[str, str]:
    return {"access_key_id": "testing", "secret_access_key": "testing", "endpoint_url": url}


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


# -- measuring ------------------------------------------------------------------------------


@contextmanager
def _no_wait(pool: ThreadPoolExecutor) -> Iterator[ThreadPoolExecutor]:
    try:
        yield pool
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def post(client: BrevClient, name: str) -> Create:
    posted = time.perf_counter()
    detail = client.create_instance(CREATE.model_copy(update={"name": name}))
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


def create_alone(client: BrevClient, name: str, deadline: Deadline) -> Create:
    create = post(client, name)

    def on_running(seen: str, at: float) -> None:
        if seen == name and create.running_at is None:
            create.running_at = at

    poll_until(
        client, lambda _: create.running_at is not None, on_running, deadline, f"{name} starts"
    )
    return create


def create_batch(
    url: str, token: str, count: int, threads: int, deadline: Deadline, results: Results
) -> None:
    """`count` POSTs from `threads` threads at once, one poller for all."""
    limits = httpx.Limits(max_connections=threads + 8, max_keepalive_connections=threads + 8)
    http = httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT_S, limits=limits)
    lock = threading.Lock()
    running: dict[str, float] = {}

    def on_running(name: str, at: float) -> None:
        with lock:
            running.setdefault(name, at)

    # Shut down without waiting on the way out: after an abort the server is stopped next,
    # which ends any POST still in flight at once.
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="post")
    with BrevClient(url, token, org=ORG, http=http) as client, _no_wait(pool):
        names = [f"batch-{number:03d}" for number in range(count)]
        results.batch_started = time.perf_counter()
        futures = [pool.submit(post, client, name) for name in names]

        def all_running(listing: dict[str, api.Instance]) -> bool:
            for future in futures:
                if future.done() and future.exception() is not None:
                    raise Abort(f"a create was refused: {future.exception()}")
            return all(name in running for name in names)

        poll_until(client, all_running, on_running, deadline, f"{count} creates run")
        results.batch_ended = max(running[name] for name in names)
        for future in futures:
            create = future.result()
            create.running_at = running[create.name]
            results.batch.append(create)


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


def delete_all(url: str, token: str, deadline: Deadline) -> float:
    """DELETE every instance at once, then poll until the org lists none; the wall time."""
    limits = httpx.Limits(max_connections=POST_THREADS + 8)
    http = httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT_S, limits=limits)
    pool = ThreadPoolExecutor(max_workers=POST_THREADS, thread_name_prefix="delete")
    with BrevClient(url, token, org=ORG, http=http) as client, _no_wait(pool):
        started = time.perf_counter()
        names = [i.name for i in client.instances()]
        for future in [pool.submit(client.delete_instance, name) for name in names]:
            future.result()
        poll_until(client, lambda listing: not listing, lambda *_: None, deadline, "deleting")
        return time.perf_counter() - started


def moto_alone(workdir: Path, creates: int) -> MotoAlone:
    """The provider's create against a moto of its own: `creates` one after another, then as
    many from RECONCILER_WORKERS threads. Its machines are never counted with the plane's."""
    with moto_server(workdir, "moto-alone.log") as moto:
        provider = AwsProvider(moto_config(moto.url))
        placement = Placement("p4d.24xlarge", REGION, None, False, "A100", 8, 32.77)

        def one(number: int) -> float:
            spec = InstanceSpec(
                instance_id=uuid.uuid4().hex,
                org=ORG,
                name=f"moto-alone-{number}",
                disk_gb=200,
                plane_id="bench-moto-alone",
            )
            begun = time.perf_counter()
            provider.create(spec, placement, uuid.uuid4().hex)
            return time.perf_counter() - begun

        one(-1)  # loads the EC2 model; the security group is made once, here
        cpu_before = cpu_seconds(moto.pid)
        serial = [one(number) for number in range(creates)]
        cpu_after = cpu_seconds(moto.pid)
        cpu = (cpu_after - cpu_before) if cpu_before is not None and cpu_after is not None else 0
        with ThreadPoolExecutor(max_workers=RECONCILER_WORKERS) as pool:
            begun = time.perf_counter()
            list(pool.map(one, range(creates, 2 * creates)))
            threaded = time.perf_counter() - begun
    return MotoAlone(serial_s=serial, serial_cpu_s=cpu / creates, threaded_s=threaded)


# -- the run --------------------------------------------------------------------------------


def run(count: int, threads: int, deadline: Deadline, workdir: Path) -> Results:
    results = Results()
    results.moto = moto_alone(workdir, MOTO_ALONE_CREATES)
    home, log = workdir / "home", workdir / "server.log"
    with (
        moto_server(workdir) as moto,
        harness.control_plane(home, log=log, env=SERVER_ENV) as plane,
    ):
        pids = {"brev server": plane.pid, "moto_server": moto.pid, "this bench (client)": None}
        config = moto_config(moto.url)
        ec2 = AwsProvider(config)._client(REGION)  # a boto3 EC2 client for moto, as the plane's
        with BrevClient(plane.url, plane.token, org=ORG, timeout=REQUEST_TIMEOUT_S) as client:
            client.add_provider("aws", config)
            try:
                results.cold = create_alone(client, "warm-up", deadline)
                client.delete_instance("warm-up")
                poll_until(client, lambda ls: not ls, lambda *_: None, deadline, "warm-up goes")
                results.single = create_alone(client, "single", deadline)
                before = cpu_snapshot(pids)
                create_batch(plane.url, plane.token, count, threads, deadline, results)
                after = cpu_snapshot(pids)
                results.batch_cpu = {name: after[name] - before[name] for name in after}
            except Abort:
                tail = plane.log.read_text().splitlines()[-30:]
                print("\n".join(["server log, last lines:", *tail]), file=sys.stderr)
                raise
            results.phases = phases(client, {"single"} | {c.name for c in results.batch})
        results.live_after_batch = live_machines(ec2)
        if results.live_after_batch != count + 1:
            raise Abort(f"moto holds {results.live_after_batch} machines, not {count} + 1")
        results.delete_s = delete_all(plane.url, plane.token, deadline)
        results.live_after_delete = live_machines(ec2)
        if results.live_after_delete != 0:
            raise Abort(f"moto still holds {results.live_after_delete} machines after delete")
    return results


# -- the report -----------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


def median_max(values: list[float]) -> str:
    return f"{ms(statistics.median(values))} / {ms(max(values))}" if values else "?"


def report(results: Results, count: int, threads: int, elapsed: float) -> None:
    assert results.single is not None and results.cold is not None and results.moto is not None
    single, cpu, moto = results.single.total, results.batch_cpu, results.moto
    batch_total = results.batch_ended - results.batch_started
    slowest = max(results.batch, key=lambda c: c.total)
    ratio = batch_total / single
    totals = [c.total for c in results.batch]
    rows = [
        ("single create alone (speed of light)", ms(single), "1.00x"),
        (f"batch of {count}: total wall time", ms(batch_total), f"{ratio:.2f}x"),
        (f"batch: slowest single create ({slowest.name})", ms(slowest.total), ""),
        ("batch: median / fastest single create",
         f"{ms(statistics.median(totals))} / {ms(min(totals))}", ""),
        ("batch: POST answered, median / max",
         median_max([c.answered_at - c.posted_at for c in results.batch]), ""),
        ("first create of the server (cold, not counted)", ms(results.cold.total), ""),
        (f"delete all {count + 1}, until none is listed", ms(results.delete_s), ""),
    ]  # fmt: skip
    width = max(len(r[0]) for r in rows)
    # Each process runs Python code on one CPU at a time (the GIL): the busier one sets a
    # floor under the batch even on an idle machine.
    floor = max(cpu.get("brev server", 0), cpu.get("moto_server", 0))
    alone = results.phases.get("single")
    in_batch = [p for name, p in results.phases.items() if name != "single"]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    interval, poll = SERVER_ENV["BREV_RECONCILE_INTERVAL"], SERVER_ENV["BREV_RECONCILE_POLL"]
    lines = [
        harness.python_line(),
        f"{harness.machine_line()}, load average {load:.1f} at the end",
        f"plane    brev server, SQLite, {RECONCILER_WORKERS} reconciler workers, "
        f"interval {interval} s, poll {poll} s",
        f"client   {count} POSTs from {threads} threads; one poller, GET /instances every "
        f"{POLL_S} s",
        f"create   {CREATE.gpu} on aws {REGION} (p4d.24xlarge) against moto's EC2 server",
        "",
        *(f"{label:<{width}}  {value:>19}  {times}".rstrip() for label, value, times in rows),
        "",
        f"batch total / single alone = {ratio:.2f}x (target <= {TARGET_RATIO:g}x): "
        + ("PASS" if ratio <= TARGET_RATIO else "MISS"),
        f"batch total / slowest single create in the batch = {batch_total / slowest.total:.2f}",
        f"moto: {results.live_after_batch} live machines after the batch ({count} + 1), "
        f"{results.live_after_delete} after deleting them all",
        "",
        f"CPU spent during the batch ({batch_total:.1f} s wall):",
        *(
            f"  {name:<20} {seconds:5.1f} CPU-s = {seconds / batch_total:4.0%} of one CPU, "
            f"{seconds / count * 1000:3.0f} ms per create"
            for name, seconds in cpu.items()
        ),
        f"  CPU floor: the busier process alone needs {floor:.1f} s "
        f"= {floor / single:.1f}x the single create",
        "",
        "where each create's time went (server event timestamps; median / max):",
        *(
            f"  {label:<42} alone {ms(alone[label]) if alone else '?':>8}   "
            f"in batch {median_max([p[label] for p in in_batch]):>19}"
            for label, _, _ in PHASES
        ),
        "",
        "moto alone (AwsProvider.create in this process against a fresh moto, no plane):",
        f"  one create, median of {len(moto.serial_s)} in a row: "
        f"{ms(statistics.median(moto.serial_s))}, of which moto's CPU {ms(moto.serial_cpu_s)}",
        f"  {len(moto.serial_s)} creates from {RECONCILER_WORKERS} threads: "
        f"{ms(moto.threaded_s)} = {sum(moto.serial_s) / moto.threaded_s:.2f}x the throughput "
        "of one at a time",
        "",
        f"whole run {elapsed:.0f} s",
    ]
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--batch", type=int, default=BATCH, help=f"creates at once ({BATCH})")
    parser.add_argument(
        "--post-threads",
        type=int,
        default=POST_THREADS,
        help=f"POSTs in flight at once ({POST_THREADS}; --post-threads 100 shows the deadlock)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary dir (server and moto logs)"
    )
    args = parser.parse_args()
    if not 1 <= args.batch <= 500:
        parser.error("--batch must be between 1 and 500")
    if not 1 <= args.post_threads <= args.batch:
        parser.error("--post-threads must be between 1 and --batch")
    harness.exit_on_sigterm("bench/provision.py: terminated; stopping moto and the server")
    harness.require_brev()
    began = time.monotonic()
    deadline = Deadline(began + BUDGET_S)
    workdir = Path(tempfile.mkdtemp(prefix="brev-bench-provision-"))
    try:
        results = run(args.batch, args.post_threads, deadline, workdir)
    except Abort as abort:
        sys.exit(f"bench/provision.py aborted: {abort}")
    finally:
        if args.keep:
            print(f"kept {workdir} (server.log, moto.log)", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    report(results, args.batch, args.post_threads, time.monotonic() - began)


if __name__ == "__main__":
    main()
