"""bench/provision.py's slow-cloud variant: the same creates through a plane whose provider
waits LATENCY_S before every call, as a real cloud's API does, instead of answering at once.

The wait is injected at the provider boundary by a plug-in of the bench's own,
bench/plugins/brev-slow-aws (entry point `slowaws`): brev's AwsProvider against moto, behind a
sleep. Nothing of brev changes: the plug-in is built from a copy of its source (its offers.csv
written from brev's shipped aws.csv rows that the bench creates, re-labelled slowaws), packed
as a wheel here (no build tools, no index: everything stays on this machine), pip-installed
into a folder of the run and put on the plane's PYTHONPATH, as a user installs a plug-in.

The run, on a moto and a plane of its own: slowaws credentials (moto's keys and endpoint,
latency_s), a warm-up create deleted again, SINGLES creates one after another, each alone
(POST until `running`), then the batch at once; checks moto's live machines, deletes them all
and checks none is left. The plug-in logs each call (SLOWAWS_CALL_LOG), from which the report
counts the calls during the batch and how many were in flight at once.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import shutil
import statistics
import subprocess
import sys
import time
import tomllib
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from brev import api
from brev.catalog.offers import shipped_offers
from brev.catalog.refresh import write_offers
from brev.client import BrevClient, BrevError
from brev.providers.aws import AwsProvider

if TYPE_CHECKING:  # mypy roots modules at the repository; see bench/harness.py
    from bench import harness
    from bench import provisioning as p
else:
    import harness
    import provisioning as p

PLUGIN = Path(__file__).parent / "plugins" / "brev-slow-aws"
PROVIDER = "slowaws"
LATENCY_S = 2.0
SINGLES = 3  # single creates alone; the slowest is the one the batch is held against
# Provider calls a create makes until it runs: create, then one describe that finds it running
# (moto's machines run at once). With each call holding a worker for LATENCY_S, the pool
# finishes at most RECONCILER_WORKERS / LATENCY_S calls a second.
CALLS_PER_CREATE = 2
CREATE = api.InstanceCreate(gpu=p.GPU, providers=[PROVIDER], region=p.REGION)
INSTALL_TIMEOUT_S = 120.0


def budget_s(latency_s: float) -> float:
    """What the variant may take: the plug-in's install, then about 35 calls' worth of waits
    one after another (validate, warm-up, singles; the batch and the delete, 16 at a time),
    twice over for a loaded machine."""
    return 60.0 + 70.0 * latency_s


@dataclass
class SlowResults:
    latency_s: float
    install_s: float = 0.0
    add_s: float = 0.0  # POST /providers: the plane validates the credentials (one call)
    cold: p.Create | None = None
    singles: list[p.Create] = field(default_factory=list)
    batch: p.Batch = field(default_factory=p.Batch)
    batch_cpu: dict[str, float] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)  # provider calls begun in the batch
    most_in_flight: int = 0  # the most calls in flight at once during the batch
    phases: dict[str, dict[str, float]] = field(default_factory=dict)
    live_after_batch: int = -1
    delete_s: float = 0.0
    live_after_delete: int = -1

    @property
    def slowest_single(self) -> p.Create:
        return max(self.singles, key=lambda c: c.total)


# -- the plug-in ----------------------------------------------------------------------------


def write_plugin_offers(path: Path) -> int:
    """The shipped AWS offers the bench creates (A100 x8 in REGION), as slowaws's; how many."""
    offers = [
        dataclasses.replace(offer, provider=PROVIDER)
        for offer in shipped_offers("aws")
        if offer.region == p.REGION and offer.gpu_model == "A100" and offer.gpu_count == 8
    ]
    if not offers:
        raise p.Abort(f"brev's aws.csv has no A100 x8 offer in {p.REGION}")
    write_offers(path, offers)
    return len(offers)


def build_wheel(source: Path, out: Path) -> Path:
    """A pure-Python wheel of the project at `source`, from its pyproject.toml: its packages
    (every file in them), its entry points. What setuptools would build for it, without it."""
    pyproject = tomllib.loads((source / "pyproject.toml").read_text())
    project = pyproject["project"]
    dist = f"{project['name'].replace('-', '_')}-{project['version']}"
    info = f"{dist}.dist-info"
    files = {
        path.relative_to(source).as_posix(): path.read_bytes()
        for package in pyproject["tool"]["setuptools"]["packages"]
        for path in sorted((source / package).rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }
    files[f"{info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
    ).encode()
    files[f"{info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: bench/provision_slow.py\n"
        b"Root-Is-Purelib: true\nTag: py3-none-any\n"
    )
    files[f"{info}/entry_points.txt"] = "".join(
        f"[{group}]\n" + "".join(f"{name} = {target}\n" for name, target in points.items())
        for group, points in project.get("entry-points", {}).items()
    ).encode()
    record = [
        f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}"
        for name, data in files.items()
    ]
    files[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,", ""]).encode()
    wheel = out / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return wheel


def _digest(data: bytes) -> str:
    """A RECORD line's hash: urlsafe base64 of the SHA-256, without padding."""
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def install_plugin(workdir: Path) -> Path:
    """The plug-in built from a copy of its source and pip-installed into a folder of its own
    (as into a plane's site-packages); the folder, for the plane's PYTHONPATH."""
    source = workdir / "build" / PLUGIN.name
    shutil.copytree(PLUGIN, source, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    write_plugin_offers(source / "brev_slow_aws" / "offers.csv")
    wheel = build_wheel(source, workdir / "build")
    site = workdir / "plugin-site"
    command = [str(harness.PYTHON), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index"]
    done = subprocess.run(
        [*command, "--target", str(site), str(wheel)],
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        raise p.Abort(f"pip could not install the slowaws plug-in:\n{done.stderr}")
    return site


def calls_during(log: Path, started: float, ended: float) -> tuple[Counter[str], int]:
    """From the plug-in's call log: the calls begun between two unix times, by method, and
    the most in flight at once as one of them began."""
    calls: Counter[str] = Counter()
    most = 0
    if not log.exists():
        return calls, most
    for line in log.read_text().splitlines():
        at, method, in_flight = line.split()
        if started <= float(at) <= ended:
            calls[method] += 1
            most = max(most, int(in_flight))
    return calls, most


# -- the run --------------------------------------------------------------------------------


def run(
    count: int, threads: int, latency_s: float, deadline: p.Deadline, workdir: Path
) -> SlowResults:
    results = SlowResults(latency_s=latency_s)
    begun = time.perf_counter()
    site = install_plugin(workdir)
    results.install_s = time.perf_counter() - begun
    call_log = workdir / "slowaws-calls.log"
    env = {**p.SERVER_ENV, "PYTHONPATH": str(site), "SLOWAWS_CALL_LOG": str(call_log)}
    log = workdir / "server-slow.log"
    with (
        p.moto_server(workdir, "moto-slow.log") as moto,
        harness.control_plane(workdir / "home-slow", log=log, env=env) as plane,
    ):
        pids = {"brev server": plane.pid, "moto_server": moto.pid, "this bench (client)": None}
        config = {**p.moto_config(moto.url), "latency_s": f"{latency_s:g}"}
        ec2 = AwsProvider(p.moto_config(moto.url))._client(p.REGION)  # to count moto's machines
        with BrevClient(plane.url, plane.token, org=p.ORG, timeout=p.REQUEST_TIMEOUT_S) as client:
            begun = time.perf_counter()
            try:
                client.add_provider(PROVIDER, config)
            except BrevError as error:
                raise p.Abort(f"the plane refused {PROVIDER} credentials: {error}") from None
            results.add_s = time.perf_counter() - begun
            try:
                results.cold = p.create_alone(client, CREATE, "warm-up", deadline)
                p.delete_and_wait(client, "warm-up", deadline)
                for number in range(SINGLES):
                    name = f"single-{number}"
                    results.singles.append(p.create_alone(client, CREATE, name, deadline))
                before, started = p.cpu_snapshot(pids), time.time()
                results.batch = p.create_batch(plane, CREATE, count, threads, deadline)
                after, ended = p.cpu_snapshot(pids), time.time()
            except p.Abort:
                print(p.server_log_tail(plane.log), file=sys.stderr)
                raise
            results.batch_cpu = {name: after[name] - before[name] for name in after}
            results.calls, results.most_in_flight = calls_during(call_log, started, ended)
            names = {c.name for c in results.singles} | {c.name for c in results.batch.creates}
            results.phases = p.phases(client, names)
        results.live_after_batch = p.live_machines(ec2)
        live = results.live_after_batch
        if live != count + SINGLES:
            raise p.Abort(f"moto holds {live} machines, not {count} + {SINGLES}")
        results.delete_s = p.delete_all(plane, threads, deadline)
        results.live_after_delete = p.live_machines(ec2)
        if results.live_after_delete != 0:
            raise p.Abort(f"moto still holds {results.live_after_delete} machines after delete")
    return results


# -- the report -----------------------------------------------------------------------------


def report(results: SlowResults, count: int) -> list[str]:
    assert results.cold is not None and results.singles
    batch, latency = results.batch, results.latency_s
    single = results.slowest_single.total
    ratio = batch.total / single
    totals = [c.total for c in batch.creates]
    rows = [
        (f"single create alone, slowest of {len(results.singles)}", p.ms(single), "1.00x"),
        ("single creates alone, each",
         ", ".join(f"{c.total:.2f}" for c in results.singles) + " s", ""),
        (f"batch of {count}: total wall time", p.ms(batch.total), f"{ratio:.2f}x"),
        (f"batch: slowest single create ({batch.slowest.name})", p.ms(batch.slowest.total), ""),
        ("batch: median / fastest single create",
         f"{p.ms(statistics.median(totals))} / {p.ms(min(totals))}", ""),
        ("batch: POST answered, median / max",
         p.median_max([c.answered_at - c.posted_at for c in batch.creates]), ""),
        ("first create of the server (cold, not counted)", p.ms(results.cold.total), ""),
        (f"delete all {count + len(results.singles)}, until none is listed",
         p.ms(results.delete_s), ""),
    ]  # fmt: skip
    workers = p.RECONCILER_WORKERS
    floor = count * CALLS_PER_CREATE * latency / workers
    calls = results.calls
    rechecks = calls["describe"] - count
    return [
        f"slow cloud: every provider call waits {latency:g} s before it is made (plug-in "
        f"{PROVIDER}: AwsProvider against moto)",
        f"  plug-in built and pip-installed in {p.ms(results.install_s)}; credentials added "
        f"(one validate) in {p.ms(results.add_s)}",
        "",
        *p.table(rows),
        "",
        f"batch total / slowest single create alone = {ratio:.2f}x "
        f"(target <= {p.TARGET_RATIO:g}x): " + ("PASS" if ratio <= p.TARGET_RATIO else "MISS"),
        f"moto: {results.live_after_batch} live machines after the batch ({count} + "
        f"{len(results.singles)}), {results.live_after_delete} after deleting them all",
        "",
        "the worker pool:",
        "  provider calls begun during the batch: "
        + ", ".join(f"{n} {method}" for method, n in calls.most_common()),
        f"  of the describes, {max(rechecks, 0)} beyond one per create (re-checks of machines "
        "already running)",
        f"  most calls in flight at once: {results.most_in_flight} "
        f"(the reconciler has {workers} workers)",
        f"  floor: {count} creates x {CALLS_PER_CREATE} calls x {latency:g} s / {workers} "
        f"workers = {floor:.1f} s = {floor / single:.1f}x the single create",
        "",
        *p.cpu_lines(results.batch_cpu, batch.total, count),
        "",
        *p.phase_lines(results.phases, {c.name for c in results.singles}),
    ]
