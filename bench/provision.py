"""100 concurrent creates: total wall time beside the slowest single create measured in the
same run; the plane must overlap them (target at most 3x). Two variants, both by default:

    .venv/bin/python bench/provision.py [--variant moto|slow|both] [--latency S]
                                        [--batch N] [--post-threads N] [--keep]

moto: moto's EC2 server answering at once. slow: every provider call waits --latency seconds
(2) first, a real cloud's network wait, injected by a plug-in of the bench's own
(bench/provision_slow.py, bench/plugins/brev-slow-aws); everything else is the same.

Each variant starts its own moto and a real `brev server` (SQLite in a temporary BREV_HOME,
reconciler interval 0.1 s, poll 0.2 s), adds credentials pointing at moto, then creates
a100:8 in us-east-1 (p4d.24xlarge). The moto variant:

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

The slow variant does 2 to 5 with three single creates in 3 (the slowest is the one the batch
is held against) and counts the provider calls of the batch (see bench/provision_slow.py).

Prints the times, the ratio batch total / single alone against the target, PASS or MISS, and
where each create's time went (from the server's own event timestamps). Exits 0 on PASS or
MISS, 1 when a check fails or a variant's time budget runs out (moto: 125 s; slow: 200 s at
2 s): a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from brev import api
from brev.client import BrevClient
from brev.providers.aws import AwsProvider
from brev.providers.base import InstanceSpec, Placement

if TYPE_CHECKING:  # mypy roots modules at the repository; see bench/harness.py
    from bench import harness, provision_slow
    from bench import provisioning as p
else:
    import harness
    import provision_slow
    import provisioning as p

CREATE = api.InstanceCreate(gpu=p.GPU, providers=["aws"], region=p.REGION)
# The moto variant must end within three minutes: measuring aborts past BUDGET_S, a request
# waits at most REQUEST_TIMEOUT_S, and stopping the two servers takes at most 20 s more.
BUDGET_S = 125.0
# Creates in each half of the moto-alone measurement (one after another, then threaded).
MOTO_ALONE_CREATES = 20
MAX_LATENCY_S = 5.0


@dataclass
class MotoAlone:
    """AwsProvider.create against a fresh moto, without the plane."""

    serial_s: list[float]  # each create, one after another
    serial_cpu_s: float  # moto's CPU per create, over those
    threaded_s: float  # as many creates from RECONCILER_WORKERS threads: wall time


@dataclass
class Results:
    cold: p.Create | None = None
    single: p.Create | None = None
    batch: p.Batch = field(default_factory=p.Batch)
    batch_cpu: dict[str, float] = field(default_factory=dict)  # process -> CPU seconds
    phases: dict[str, dict[str, float]] = field(default_factory=dict)  # name -> PHASES' seconds
    live_after_batch: int = -1
    delete_s: float = 0.0
    live_after_delete: int = -1
    moto: MotoAlone | None = None


def moto_alone(workdir: Path, creates: int) -> MotoAlone:
    """The provider's create against a moto of its own: `creates` one after another, then as
    many from RECONCILER_WORKERS threads. Its machines are never counted with the plane's."""
    with p.moto_server(workdir, "moto-alone.log") as moto:
        provider = AwsProvider(p.moto_config(moto.url))
        placement = Placement("p4d.24xlarge", p.REGION, None, False, "A100", 8, 32.77)

        def one(number: int) -> float:
            spec = InstanceSpec(
                instance_id=uuid.uuid4().hex,
                org=p.ORG,
                name=f"moto-alone-{number}",
                disk_gb=200,
                plane_id="bench-moto-alone",
            )
            begun = time.perf_counter()
            provider.create(spec, placement, uuid.uuid4().hex)
            return time.perf_counter() - begun

        one(-1)  # loads the EC2 model; the security group is made once, here
        cpu_before = p.cpu_seconds(moto.pid)
        serial = [one(number) for number in range(creates)]
        cpu_after = p.cpu_seconds(moto.pid)
        cpu = (cpu_after - cpu_before) if cpu_before is not None and cpu_after is not None else 0
        with ThreadPoolExecutor(max_workers=p.RECONCILER_WORKERS) as pool:
            begun = time.perf_counter()
            list(pool.map(one, range(creates, 2 * creates)))
            threaded = time.perf_counter() - begun
    return MotoAlone(serial_s=serial, serial_cpu_s=cpu / creates, threaded_s=threaded)


# -- the moto variant -----------------------------------------------------------------------


def run(count: int, threads: int, deadline: p.Deadline, workdir: Path) -> Results:
    results = Results()
    results.moto = moto_alone(workdir, MOTO_ALONE_CREATES)
    home, log = workdir / "home", workdir / "server.log"
    with (
        p.moto_server(workdir) as moto,
        harness.control_plane(home, log=log, env=p.SERVER_ENV) as plane,
    ):
        pids = {"brev server": plane.pid, "moto_server": moto.pid, "this bench (client)": None}
        config = p.moto_config(moto.url)
        ec2 = AwsProvider(config)._client(p.REGION)  # a boto3 EC2 client for moto, as the plane's
        with BrevClient(plane.url, plane.token, org=p.ORG, timeout=p.REQUEST_TIMEOUT_S) as client:
            client.add_provider("aws", config)
            try:
                results.cold = p.create_alone(client, CREATE, "warm-up", deadline)
                p.delete_and_wait(client, "warm-up", deadline)
                results.single = p.create_alone(client, CREATE, "single", deadline)
                before = p.cpu_snapshot(pids)
                results.batch = p.create_batch(plane, CREATE, count, threads, deadline)
                after = p.cpu_snapshot(pids)
                results.batch_cpu = {name: after[name] - before[name] for name in after}
            except p.Abort:
                print(p.server_log_tail(plane.log), file=sys.stderr)
                raise
            names = {"single"} | {c.name for c in results.batch.creates}
            results.phases = p.phases(client, names)
        results.live_after_batch = p.live_machines(ec2)
        if results.live_after_batch != count + 1:
            raise p.Abort(f"moto holds {results.live_after_batch} machines, not {count} + 1")
        results.delete_s = p.delete_all(plane, p.POST_THREADS, deadline)
        results.live_after_delete = p.live_machines(ec2)
        if results.live_after_delete != 0:
            raise p.Abort(f"moto still holds {results.live_after_delete} machines after delete")
    return results


def report(results: Results, count: int) -> list[str]:
    assert results.single is not None and results.cold is not None and results.moto is not None
    single, cpu, moto, batch = results.single.total, results.batch_cpu, results.moto, results.batch
    ratio = batch.total / single
    totals = [c.total for c in batch.creates]
    rows = [
        ("single create alone (speed of light)", p.ms(single), "1.00x"),
        (f"batch of {count}: total wall time", p.ms(batch.total), f"{ratio:.2f}x"),
        (f"batch: slowest single create ({batch.slowest.name})", p.ms(batch.slowest.total), ""),
        ("batch: median / fastest single create",
         f"{p.ms(statistics.median(totals))} / {p.ms(min(totals))}", ""),
        ("batch: POST answered, median / max",
         p.median_max([c.answered_at - c.posted_at for c in batch.creates]), ""),
        ("first create of the server (cold, not counted)", p.ms(results.cold.total), ""),
        (f"delete all {count + 1}, until none is listed", p.ms(results.delete_s), ""),
    ]  # fmt: skip
    # Each process runs Python code on one CPU at a time (the GIL): the busier one sets a
    # floor under the batch even on an idle machine.
    floor = max(cpu.get("brev server", 0), cpu.get("moto_server", 0))
    return [
        "moto: the provider's calls answered at once (moto's EC2 server)",
        "",
        *p.table(rows),
        "",
        f"batch total / single alone = {ratio:.2f}x (target <= {p.TARGET_RATIO:g}x): "
        + ("PASS" if ratio <= p.TARGET_RATIO else "MISS"),
        "batch total / slowest single create in the batch = "
        f"{batch.total / batch.slowest.total:.2f}",
        f"moto: {results.live_after_batch} live machines after the batch ({count} + 1), "
        f"{results.live_after_delete} after deleting them all",
        "",
        *p.cpu_lines(cpu, batch.total, count),
        f"  CPU floor: the busier process alone needs {floor:.1f} s "
        f"= {floor / single:.1f}x the single create",
        "",
        *p.phase_lines(results.phases, {"single"}),
        "",
        "moto alone (AwsProvider.create in this process against a fresh moto, no plane):",
        f"  one create, median of {len(moto.serial_s)} in a row: "
        f"{p.ms(statistics.median(moto.serial_s))}, of which moto's CPU {p.ms(moto.serial_cpu_s)}",
        f"  {len(moto.serial_s)} creates from {p.RECONCILER_WORKERS} threads: "
        f"{p.ms(moto.threaded_s)} = {sum(moto.serial_s) / moto.threaded_s:.2f}x the throughput "
        "of one at a time",
    ]


# -- both -----------------------------------------------------------------------------------


def header(count: int, threads: int) -> list[str]:
    interval, poll = p.SERVER_ENV["BREV_RECONCILE_INTERVAL"], p.SERVER_ENV["BREV_RECONCILE_POLL"]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return [
        harness.python_line(),
        f"{harness.machine_line()}, load average {load:.1f} at the end",
        f"plane    brev server, SQLite, {p.RECONCILER_WORKERS} reconciler workers, "
        f"interval {interval} s, poll {poll} s",
        f"client   {count} POSTs from {threads} threads; one poller, GET /instances every "
        f"{p.POLL_S} s",
        f"create   {p.GPU} in {p.REGION} (p4d.24xlarge) against moto's EC2 server",
    ]


def summary(moto: Results | None, slow: provision_slow.SlowResults | None) -> list[str]:
    """One line per variant: the single create, the batch, the ratio."""
    lines = ["summary (batch total / single create alone, target <= 3x):"]
    if moto is not None and moto.single is not None:
        single, total = moto.single.total, moto.batch.total
        lines.append(
            f"  {'moto':<18} single {single:6.2f} s   batch {total:6.2f} s   {total / single:5.2f}x"
        )
    if slow is not None and slow.singles:
        single, total = slow.slowest_single.total, slow.batch.total
        label = f"slow ({slow.latency_s:g} s/call)"
        lines.append(
            f"  {label:<18} single {single:6.2f} s   batch {total:6.2f} s   {total / single:5.2f}x"
            f"   (single: the slowest of {len(slow.singles)})"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--variant", choices=["moto", "slow", "both"], default="both", help="which (both)"
    )
    parser.add_argument(
        "--latency",
        type=float,
        default=provision_slow.LATENCY_S,
        help=f"the slow variant's wait before every provider call, s "
        f"({provision_slow.LATENCY_S:g})",
    )
    parser.add_argument("--batch", type=int, default=p.BATCH, help=f"creates at once ({p.BATCH})")
    parser.add_argument(
        "--post-threads",
        type=int,
        default=p.POST_THREADS,
        help=f"POSTs in flight at once ({p.POST_THREADS}; --post-threads 100 shows the deadlock)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary dir (server and moto logs)"
    )
    args = parser.parse_args()
    if not 1 <= args.batch <= 500:
        parser.error("--batch must be between 1 and 500")
    if not 1 <= args.post_threads <= args.batch:
        parser.error("--post-threads must be between 1 and --batch")
    if not 0 <= args.latency <= MAX_LATENCY_S:
        parser.error(f"--latency must be between 0 and {MAX_LATENCY_S:g} s")
    harness.exit_on_sigterm("bench/provision.py: terminated; stopping moto and the servers")
    harness.require_brev()
    began = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="brev-bench-provision-"))
    moto: Results | None = None
    slow: provision_slow.SlowResults | None = None
    try:
        if args.variant in ("moto", "both"):
            moto = run(args.batch, args.post_threads, p.Deadline.after(BUDGET_S), workdir)
        if args.variant in ("slow", "both"):
            deadline = p.Deadline.after(provision_slow.budget_s(args.latency))
            slow = provision_slow.run(
                args.batch, args.post_threads, args.latency, deadline, workdir
            )
    except p.Abort as abort:
        sys.exit(f"bench/provision.py aborted: {abort}")
    finally:
        if args.keep:
            print(f"kept {workdir} (server and moto logs)", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    lines = header(args.batch, args.post_threads)
    if moto is not None:
        lines += ["", *report(moto, args.batch)]
    if slow is not None:
        lines += ["", *provision_slow.report(slow, args.batch)]
    lines += ["", *summary(moto, slow), "", f"whole run {time.monotonic() - began:.0f} s"]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
