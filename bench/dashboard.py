"""How fast the dashboard is where people wait, and what an open page costs the plane.

    python bench/dashboard.py [--runs N]

Starts `brev server` (SQLite, BREV_RECONCILE=0) in a temporary BREV_HOME and seeds its default
org with 1,000 running instances (8 GPUs each, each with a reading) and 50 registered nodes
(8 H200s each, half of them held by instances), written straight into the database. Drives
Debian's Chromium through Playwright, signed in by a pasted token:

1. draw: navigation to #/instances until its 1,000 rows are laid out and painted (the first
   animation frame after they are in the document; a fresh tab each round: index.html, the
   modules, the session, the list, the rows), beside one
   `GET .../instances` of the same list on a kept-alive connection (the data alone);
2. change: a status written to the database, as a reconciler on any replica writes it, until
   an open page shows it (a MutationObserver notes the time): p50 and p99 over the changes,
   made at random moments; beside the same `GET .../instances`;
3. CPU: the plane's CPU (utime + stime of its process, from /proc) per open page per minute,
   above its own without pages, for PAGES instances pages (each its own browser context)
   live by SSE while nothing changes, then while agents report (REPORTS_PER_S reports a
   second written to the database from this process: readings, which the list does not
   show); then for PAGES clients polling both lists every second with If-None-Match (what a
   page without the stream costs at the same delay); beside the CPU of one GET of the list.

Targets: draw under 1 s; change p50 and p99 under 2 s; quiet SSE a few ms (under 10 ms) per
page per minute: each page's own cost (PAGES pages against one), with the poll the plane
runs once for all its open pages shown beside it. Each part runs alone, one after another.
Exit 0 on PASS or MISS, 1 when it could not measure.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy import select, update

from brev.server.db.engine import make_engine, make_sessionmaker, transaction
from brev.server.db.models import GpuAllocation, Instance, Node, Org, utcnow

if TYPE_CHECKING:  # mypy roots modules at the repository; see bench/harness.py
    from bench import harness
else:
    import harness

from playwright.sync_api import Browser, Page, sync_playwright

ORG = "default"
INSTANCES = 1_000
NODES = 50
GPUS = 8
PAGES = 5
QUIET_S = 20.0
SETTLE_S = 3.0
POLL_S = 1.0
REPORTS_PER_S = 50.0
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
TARGET_DRAW_MS = 1000.0
TARGET_CHANGE_MS = 2000.0
TARGET_QUIET_MS = 10.0
INSTANCES_PATH = f"/api/v1/orgs/{ORG}/instances"
FLEET_PATH = f"/api/v1/orgs/{ORG}/fleet"


# -- the fleet --------------------------------------------------------------------------------


def _reading(index: int) -> dict[str, Any]:
    return {
        "index": index,
        "name": "NVIDIA H200",
        "uuid": f"GPU-{index}",
        "memory_total_mib": 143771.0,
        "memory_used_mib": 20000.0 + index,
        "utilization_gpu_pct": float(10 * index),
    }


def seed(database_url: str) -> list[str]:
    """The instances and nodes of the docstring; the names of the cloud instances."""
    engine = make_engine(database_url)
    names = [f"train-{n:04d}" for n in range(INSTANCES - NODES * GPUS // 2)]
    try:
        with transaction(make_sessionmaker(engine)) as session:
            org_id, admin_id = harness.org_and_admin(session, ORG)
            readings = {"gpus": [_reading(i) for i in range(GPUS)]}

            def instance(name: str, **values: Any) -> Instance:
                row: dict[str, Any] = {
                    "status": "running",
                    "health": "healthy",
                    "gpu_model": "H200",
                    "gpu_count": GPUS,
                    "provider": "aws",
                    "region": "us-east-1",
                    "instance_type": "p5en.48xlarge",
                    "price_per_hour": 63.30,
                    "telemetry": readings,
                }
                return Instance(org_id=org_id, name=name, created_by_id=admin_id, **row | values)

            session.add_all(instance(name) for name in names)
            for n in range(NODES):
                node = Node(
                    org_id=org_id,
                    name=f"box-{n:02d}",
                    created_by_id=admin_id,
                    status="online",
                    hardware={**readings, "driver_version": "580.159.04", "cuda_version": "13.0"},
                    last_heartbeat_at=utcnow(),
                    report_interval_seconds=3600.0,  # online through the whole run
                    price_per_hour=8.0,
                )
                session.add(node)
                session.flush()
                for gpu in range(GPUS // 2):  # one instance per held GPU
                    held = instance(
                        f"box-{n:02d}-{gpu}", provider="local", node_id=node.id, gpu_count=1
                    )
                    session.add(held)
                    session.flush()
                    session.add(GpuAllocation(node_id=node.id, gpu_index=gpu, instance_id=held.id))
    finally:
        engine.dispose()
    return names


class Writer:
    """Status changes written as a reconciler writes them (updated_at moves with them)."""

    def __init__(self, database_url: str) -> None:
        self.engine = make_engine(database_url)
        self.sessions = make_sessionmaker(self.engine)
        with self.sessions() as session:
            self.org_id = session.scalars(select(Org.id).where(Org.name == ORG)).one()

    def set_status(self, name: str, status: str) -> None:
        with transaction(self.sessions) as session:
            session.execute(
                update(Instance)
                .where(Instance.org_id == self.org_id, Instance.name == name)
                .values(status=status, updated_at=utcnow())
            )

    def report(self, name: str) -> None:
        """What an agent's report writes: readings, time, nothing the lists show."""
        with transaction(self.sessions) as session:
            instance = session.scalars(
                select(Instance).where(Instance.org_id == self.org_id, Instance.name == name)
            ).one()
            instance.telemetry = {"gpus": [_reading(i) for i in range(GPUS)], "seq": time.time()}
            instance.last_heartbeat_at = utcnow()

    def close(self) -> None:
        self.engine.dispose()


@contextmanager
def agents_reporting(database_url: str, names: list[str]) -> Iterator[None]:
    """REPORTS_PER_S agent reports a second into the database, from this process (their own
    cost is not the plane's), while the block runs."""
    stop = threading.Event()
    writer = Writer(database_url)

    def write() -> None:
        n = 0
        while not stop.wait(1 / REPORTS_PER_S):
            writer.report(names[n % len(names)])
            n += 1

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)
        writer.close()


# -- the browser ------------------------------------------------------------------------------


@contextmanager
def chromium() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        raise harness.Abort(f"no {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def signed_in(browser: Browser, plane: harness.Plane) -> Page:
    """A tab of a context of its own, signed in by pasting the admin's token."""
    page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    page.goto(plane.url + "/")
    page.get_by_label("token").fill(plane.token)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name="Sign out").wait_for()
    return page


# Run in the page before its own scripts: notes when the 1,000 rows are first in the
# document (at an animation frame) and when the frame after that starts, which is after the
# rows' layout and paint. In the page, so no round trip of the driver is counted.
NOTE_DRAWN = f"""(() => {{
  const tick = () => {{
    const rows = document.querySelectorAll('#instance-rows > [role=row]').length;
    if (rows !== {INSTANCES}) return requestAnimationFrame(tick);
    window.rowsAt = performance.now();
    requestAnimationFrame(() => {{ window.drawnAt = performance.now(); }});
  }};
  requestAnimationFrame(tick);
}})()"""


def open_instances(page: Page, url: str) -> float:
    """Go to the instances page from nowhere; ms from navigation start to its rows drawn."""
    page.add_init_script(NOTE_DRAWN)
    page.goto(url + "/#/instances")
    # A function, not an expression: an expression would be eval'd, which the CSP forbids.
    page.wait_for_function("() => window.drawnAt !== undefined", timeout=30_000)
    drawn: float = page.evaluate("() => window.drawnAt")
    return drawn


def show_instances(page: Page, url: str) -> None:
    """A signed-in tab goes to the instances page (a change of hash: no new document)."""
    page.goto(url + "/#/instances")
    rows = f"() => document.querySelectorAll('#instance-rows > [role=row]').length === {INSTANCES}"
    page.wait_for_function(rows, timeout=30_000)


WATCH_STATUS = """() => {
  window.seen = {};
  const rows = document.querySelector('#instance-rows');
  new MutationObserver((changes) => {
    const now = Date.now();
    for (const change of changes) {
      const cell = change.target.nodeType === 1 ? change.target : change.target.parentElement;
      if (!cell || !cell.className.startsWith('status-')) continue;
      const key = cell.parentElement.dataset.name + ' ' + cell.textContent;
      if (!(key in window.seen)) window.seen[key] = now;
    }
  }).observe(rows, {subtree: true, childList: true, characterData: true});
}"""


def draw_times(browser: Browser, plane: harness.Plane, runs: int) -> list[float]:
    page = signed_in(browser, plane)
    context = page.context
    page.close()
    times = []
    for round_number in range(-2, runs):  # two warm-up rounds
        tab = context.new_page()
        drawn = open_instances(tab, plane.url)
        tab.close()
        if round_number >= 0:
            times.append(drawn)
    context.close()
    return times


def change_times(
    browser: Browser, plane: harness.Plane, names: list[str], count: int
) -> list[float]:
    """ms from a status written to the database to the open page showing it."""
    page = signed_in(browser, plane)
    show_instances(page, plane.url)
    page.evaluate(WATCH_STATUS)
    writer = Writer(f"sqlite:///{plane.home / 'brev.db'}")
    chosen = random.Random(7)
    times = []
    stopping: set[str] = set()
    try:
        for _ in range(count):
            time.sleep(chosen.uniform(0.2, 1.2))  # at random phases of the plane's poll
            name = chosen.choice(names)
            status = "running" if name in stopping else "stopping"
            stopping ^= {name}
            written = time.time() * 1000
            writer.set_status(name, status)
            key = f"{name} {status}"
            deadline = time.monotonic() + 10
            seen = None
            while seen is None and time.monotonic() < deadline:
                seen = page.evaluate("(key) => window.seen[key] ?? null", key)
                if seen is None:
                    time.sleep(0.01)
            if seen is None:
                raise harness.Abort(f"the page did not show {key} within 10 s")
            page.evaluate("(key) => { delete window.seen[key]; }", key)
            times.append(seen - written)
    finally:
        writer.close()
        page.context.close()
    return times


# -- CPU ------------------------------------------------------------------------------------


def thread_cpu_ns(pid: int) -> dict[str, int]:
    """Each thread's CPU time so far, to the nanosecond (/proc/PID/task/TID/schedstat; the
    utime + stime of /proc/PID/stat count 10 ms ticks, too coarse for a page's cost)."""
    times = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # it just ended
            times[task.name] = int((task / "schedstat").read_text().split()[0])
    return times


def quiet_cpu(pid: int) -> float:
    """The plane's CPU seconds over QUIET_S. A thread that ends within the window (an idle
    worker let go) takes its time with it: idle, it had next to none."""
    before = thread_cpu_ns(pid)
    time.sleep(QUIET_S)
    after = thread_cpu_ns(pid)
    return sum(ns - before.get(tid, 0) for tid, ns in after.items()) / 1e9


def per_page_minute(total_s: float, idle_s: float) -> float:
    """ms of plane CPU per page per minute, above the plane's own idle."""
    return max(0.0, total_s - idle_s) * 1000 / PAGES / (QUIET_S / 60)


def sse_pages_cpu(
    browser: Browser, plane: harness.Plane, names: list[str]
) -> tuple[float, float, float]:
    """The plane's CPU s over QUIET_S with instances pages open: one page, then PAGES, then
    PAGES with agents reporting."""
    pages = [signed_in(browser, plane) for _ in range(PAGES)]
    try:
        show_instances(pages[0], plane.url)
        time.sleep(SETTLE_S)
        one = quiet_cpu(plane.pid)
        for page in pages[1:]:
            show_instances(page, plane.url)
        time.sleep(SETTLE_S)
        every = quiet_cpu(plane.pid)
        with agents_reporting(f"sqlite:///{plane.home / 'brev.db'}", names):
            time.sleep(SETTLE_S)
            reporting = quiet_cpu(plane.pid)
        return one, every, reporting
    finally:
        for page in pages:
            page.context.close()


def polling_clients_cpu(plane: harness.Plane) -> float:
    """PAGES clients asking for both lists every POLL_S with If-None-Match (all 304s)."""
    stop = threading.Event()

    def poll() -> None:
        with plane.http() as client:
            etags: dict[str, str] = {}
            while not stop.is_set():
                for path in (INSTANCES_PATH, FLEET_PATH):
                    known = {"If-None-Match": etags[path]} if path in etags else {}
                    response = client.get(path, headers=known)
                    if response.status_code == 200:
                        etags[path] = response.headers["ETag"]
                stop.wait(POLL_S)

    threads = [threading.Thread(target=poll, daemon=True) for _ in range(PAGES)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(SETTLE_S)
        return quiet_cpu(plane.pid)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)


def one_get_cpu_ms(plane: harness.Plane, client: httpx.Client, count: int = 40) -> float:
    before = thread_cpu_ns(plane.pid)
    for _ in range(count):
        client.get(INSTANCES_PATH).raise_for_status()
    after = thread_cpu_ns(plane.pid)
    return sum(ns - before.get(tid, 0) for tid, ns in after.items()) / 1e6 / count


# -- the run --------------------------------------------------------------------------------


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[-1]


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=harness.positive_runs, default=15)
    runs = parser.parse_args().runs
    harness.exit_on_sigterm()
    harness.require_brev()
    home = Path(tempfile.mkdtemp(prefix="brev-bench-"))
    try:
        with harness.control_plane(home / "plane", env={"BREV_RECONCILE": "0"}) as plane:
            names = seed(f"sqlite:///{plane.home / 'brev.db'}")
            print("measuring (about 2 minutes)...", file=sys.stderr)
            with plane.http() as client:
                timings, _ = harness.measure(
                    {"GET instances": harness.http_runner(client, INSTANCES_PATH)}, runs, 10.0
                )
                body_kib = len(client.get(INSTANCES_PATH).content) / 1024
                get_ms = timings.median("GET instances")
                idle_s = quiet_cpu(plane.pid)
                with agents_reporting(f"sqlite:///{plane.home / 'brev.db'}", names):
                    time.sleep(SETTLE_S)
                    idle_reporting_s = quiet_cpu(plane.pid)
                with chromium() as browser:
                    draws = draw_times(browser, plane, runs)
                    changes = change_times(browser, plane, names, max(30, 2 * runs))
                    sse_one_s, sse_s, sse_reporting_s = sse_pages_cpu(browser, plane, names)
                polling_s = polling_clients_cpu(plane)
                get_cpu = one_get_cpu_ms(plane, client)
        cpu = Cpu(idle_s, idle_reporting_s, sse_one_s, sse_s, sse_reporting_s, polling_s, get_cpu)
        report(runs, body_kib, get_ms, draws, changes, cpu)
    except harness.Abort as error:
        sys.exit(f"could not measure: {error}")
    finally:
        shutil.rmtree(home, ignore_errors=True)


@dataclass
class Cpu:
    """The plane's CPU seconds over QUIET_S in each state, and ms of one GET of the list."""

    idle: float
    idle_reporting: float
    sse_one: float
    sse: float
    sse_reporting: float
    polling: float
    get_ms: float


def report(
    runs: int,
    body_kib: float,
    get_ms: float,
    draws: list[float],
    changes: list[float],
    cpu: Cpu,
) -> None:
    print()
    print(harness.python_line())
    print(harness.machine_line())
    print(
        f"fleet    {INSTANCES} instances ({NODES * GPUS // 2} on {NODES} nodes of {GPUS} GPUs), "
        f"list {body_kib:.0f} KiB; {runs} draws, {len(changes)} changes, {PAGES} pages "
        f"for {QUIET_S:g} s each way"
    )
    print()
    print(f"{'measure':<36}  {'p50 ms':>8}  {'p99 ms':>8}  {'x base':>7}  target")
    draw_p50 = statistics.median(draws)
    print(
        f"{'navigation -> 1,000 rows drawn':<36}  {draw_p50:>8.0f}  {p99(draws):>8.0f}  "
        f"{draw_p50 / get_ms:>6.1f}x  {verdict(draw_p50 < TARGET_DRAW_MS)} (< 1 s)"
    )
    change_p50, change_p99 = statistics.median(changes), p99(changes)
    on_time = change_p50 < TARGET_CHANGE_MS and change_p99 < TARGET_CHANGE_MS
    print(
        f"{'database change -> open page':<36}  {change_p50:>8.0f}  {change_p99:>8.0f}  "
        f"{change_p50 / get_ms:>6.1f}x  {verdict(on_time)} (< 2 s)"
    )
    print(f"{'baseline: GET instances':<36}  {get_ms:>8.1f}")
    print()
    minutes = QUIET_S / 60
    each_more = (cpu.sse - cpu.sse_one) * 1000 / (PAGES - 1) / minutes  # noise can be < 0
    poll = max(0.0, cpu.sse_one - cpu.idle) * 1000 / minutes - each_more
    rows = [
        (f"live by SSE, quiet: per page of {PAGES}", per_page_minute(cpu.sse, cpu.idle), ""),
        (
            "  of which each page's own",
            each_more,
            f"{verdict(each_more < TARGET_QUIET_MS)} (< {TARGET_QUIET_MS:g} ms)",
        ),
        ("  and the plane's one poll, shared", max(0.0, poll), "(per plane process)"),
        (
            f"live by SSE, {REPORTS_PER_S:g} reports/s: per page",
            per_page_minute(cpu.sse_reporting, cpu.idle_reporting),
            "",
        ),
        ("polling 1/s with If-None-Match", per_page_minute(cpu.polling, cpu.idle), ""),
    ]
    print(f"{'plane CPU':<36}  {'ms/min':>8}  {'':>8}  {'x base':>7}  target")
    for name, ms, target in rows:
        print(f"{name:<36}  {ms:>8.1f}  {'':>8}  {ms / cpu.get_ms:>6.2f}x  {target}".rstrip())
    print(f"{'baseline: CPU of one GET instances':<36}  {cpu.get_ms:>8.1f}")
    idle_rate = cpu.idle * 1000 / (QUIET_S / 60)
    print(f"{'(the plane with no page open)':<36}  {idle_rate:>8.1f}")
    print()
    print("x base: a time over one GET of the list's time; a CPU over that GET's CPU.")
    print("CPU per page: the plane's utime + stime above its own without pages, / pages.")


if __name__ == "__main__":
    main()
