"""How many agent reports per second the plane ingests, beside a bare endpoint; what an agent costs.

    .venv/bin/python bench/heartbeats.py [--rounds N] [--no-footprint]

Starts, side by side: a bare FastAPI endpoint (the baseline), `brev server` on SQLite, and on
one throwaway PostgreSQL cluster (skipped with a note when its binaries are missing) two
`brev server` replicas on one database (BREV_RECONCILE=0 for all, temporary homes). Seeds
1,000 running instances and one agent token each straight into each database, then drives
`POST /api/v1/agent/reports` from this process: each request is one agent's realistic 8-GPU
report (the stub nvidia-smi's, GPUs repeated with distinct uuids) with the agent's next seq.
Four targets: the bare endpoint, SQLite, PostgreSQL (one replica), and both replicas at once
(each agent reports to one of them, as behind a load balancer that keeps connections).

- saturation: THREADS client threads per server, each on its own kept-alive connection, for
  SATURATE_S; ROUNDS rounds, each measuring every target once (in a rotated order, so that a
  change of the machine's load hits them alike); medians of the rounds and of each round's
  ratios (x bare, and two replicas against one);
- paced: RATE requests/s for PACED_S, latency counted from each request's scheduled time (a
  late start counts against the server, not hidden by it).

The baseline, driven the same way: a bare FastAPI app under uvicorn (one process, same log
settings as `brev server`) whose only route parses the same pydantic body
(`brev.api.AgentReports`) and returns {"accepted": n}: the speed of light of the endpoint.

Then the agent's footprint: a real `brev agent run --interval 1s` (stub nvidia-smi on PATH)
against the SQLite plane for FOOTPRINT_S: RSS, CPU s per minute (its own and its children's).

Prints the table with PASS/MISS against the targets (one replica >= 0.5x the bare endpoint;
two replicas on one PostgreSQL >= 1.7x one; p99 < 50 ms at 100 reports/s). Exits 0 either
way: it is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from brev import api

if TYPE_CHECKING:  # mypy roots modules at the repository; see bench/harness.py
    from bench import agent_footprint, harness, loadgen, pgcluster
else:
    import agent_footprint
    import harness
    import loadgen
    import pgcluster

ORG = "default"
AGENTS = 1_000
GPUS = 8
THREADS = 8  # per server
ROUNDS = 3
SATURATE_S = 8.0
PACED_S = 10.0
RATE = 100.0
FOOTPRINT_S = 20.0
TARGET_RATIO = 0.5
TARGET_SCALING = 1.7  # two replicas on one PostgreSQL against one
TARGET_P99_MS = 50.0
REPORTS_PATH = "/api/v1/agent/reports"
STUB_BIN = Path("/work/shared/fixtures/nvidia-smi/bin")


# -- the report and the agents --------------------------------------------------------------


def eight_gpu_report(home: Path) -> bytes:
    """`brev agent collect --json` with the stub nvidia-smi, its GPUs repeated to GPUS."""
    env = harness.clean_environment(home)
    env["PATH"] = f"{STUB_BIN}:{env.get('PATH', '')}"
    out = subprocess.run(
        [str(harness.BREV), "agent", "collect", "--json"],
        env=env,
        capture_output=True,
        timeout=30,
        check=True,
    ).stdout
    report: dict[str, Any] = json.loads(out)
    gpus = report["gpus"]
    if not gpus:
        raise harness.Abort("the stub nvidia-smi reported no GPU")
    report["gpus"] = [
        {
            **gpus[i % len(gpus)],
            "index": i,
            "uuid": f"GPU-{i:08x}-9184-9b8e-5a1a-9ba7d688cef7",
            "bus_id": f"00000000:00:{6 + i:02X}.0",
        }
        for i in range(GPUS)
    ]
    report["collected_at"] = "%s"  # each request's own time: a changed report is written
    return json.dumps(report, separators=(",", ":")).encode()


@dataclass
class Agents:
    """AGENTS tokens (each one instance's) and the next seq of each. Agents are dealt to lanes
    (one lane per server of a target): agent i reports to lane i % lanes only."""

    tokens: list[str]
    report: bytes
    seqs: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    cursors: dict[tuple[int, int], int] = field(default_factory=dict)

    def next_request(self, lane: int = 0, lanes: int = 1) -> tuple[str, bytes]:
        """The lane's next agent, round-robin, and its body: one report with its next seq."""
        with self.lock:
            cursor = self.cursors.get((lane, lanes), 0)
            self.cursors[(lane, lanes)] = cursor + 1
            agent = (lane + cursor * lanes) % len(self.tokens)
            if not self.seqs:
                self.seqs = [0] * len(self.tokens)
            self.seqs[agent] += 1
            seq = self.seqs[agent]
        report = self.report.replace(b'"%s"', b'"%b"' % datetime.now(UTC).isoformat().encode())
        body = b'{"reports":[{"seq":%d,"report":%b}],"interval_seconds":10}' % (seq, report)
        return self.tokens[agent], body


# -- load -----------------------------------------------------------------------------------


class Client:
    """One kept-alive connection (http.client: the cheapest client, so it steals less CPU from
    the server on a 2-core machine)."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.connection = http.client.HTTPConnection(host, int(port), timeout=30)

    def post(self, token: str, body: bytes) -> None:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.connection.request("POST", REPORTS_PATH, body=body, headers=headers)
        response = self.connection.getresponse()
        answer = response.read()
        if response.status != 200 or b'"accepted":1' not in answer:
            raise harness.Abort(f"POST {REPORTS_PATH}: {response.status} {answer[:300]!r}")

    def close(self) -> None:
        self.connection.close()


@dataclass
class Target:
    """What one measurement drives: one server, or several sharing the agents (lanes)."""

    name: str
    urls: list[str]
    agents: Agents
    pids: list[int]  # its servers' processes, whose CPU is counted
    rates: list[float] = field(default_factory=list)  # reports/s of each round
    cpu_ms: list[float] = field(default_factory=list)  # its servers' CPU per report, each round
    p50_ms: float = 0.0
    p99_ms: float = 0.0

    @property
    def threads(self) -> int:
        return THREADS * len(self.urls)

    @property
    def per_s(self) -> float:
        return statistics.median(self.rates)


def run_threads(target: Target, work: Callable[[Client, int], None]) -> None:
    """`work(client, k)` in THREADS threads per server of the target, thread k on server
    k % servers, each with its own connection; re-raises a failure."""
    failures: list[BaseException] = []

    def thread(k: int) -> None:
        client = Client(target.urls[k % len(target.urls)])
        try:
            work(client, k)
        except BaseException as exc:  # handed to the main thread
            failures.append(exc)
        finally:
            client.close()

    threads = [
        threading.Thread(target=thread, args=(k,), daemon=True) for k in range(target.threads)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise failures[0]


def saturate(target: Target, seconds: float) -> float:
    """Requests per second with the target's threads sending back to back for `seconds`."""
    done = [0] * target.threads
    deadline = time.perf_counter() + seconds
    lanes = len(target.urls)

    def work(client: Client, k: int) -> None:
        while time.perf_counter() < deadline:
            client.post(*target.agents.next_request(k % lanes, lanes))
            done[k] += 1

    started = time.perf_counter()
    run_threads(target, work)
    return sum(done) / (time.perf_counter() - started)


def first_reports(target: Target) -> None:
    """One report from each agent that has not reported yet."""
    remaining = [len(target.agents.tokens) - sum(1 for seq in target.agents.seqs if seq)]
    lanes = len(target.urls)
    lock = threading.Lock()

    def work(client: Client, k: int) -> None:
        while True:
            with lock:
                if remaining[0] <= 0:
                    return
                remaining[0] -= 1
            client.post(*target.agents.next_request(k % lanes, lanes))

    run_threads(target, work)


def paced(target: Target, rate: float, seconds: float) -> list[float]:
    """Latencies (ms) of `rate` requests/s for `seconds`, each from its scheduled start."""
    total = int(rate * seconds)
    latencies: list[float] = []
    start = time.perf_counter() + 0.1
    threads, lanes = target.threads, len(target.urls)

    def work(client: Client, k: int) -> None:
        for i in range(k, total, threads):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            client.post(*target.agents.next_request(k % lanes, lanes))
            latencies.append((time.perf_counter() - scheduled) * 1000.0)

    run_threads(target, work)
    return latencies


def measure_rounds(targets: list[Target], rounds: int) -> None:
    """Each round saturates every target once, starting one further each round."""
    for target in targets:
        # Warm-up: connections, the first queries, caches, and every agent's first report,
        # which pins its host keys through the full path (brev.server.services.agents):
        # once in an agent's life, so not what a round should measure.
        saturate(target, 1.0)
        first_reports(target)
    for number in range(rounds):
        offset = number % len(targets)
        for target in targets[offset:] + targets[:offset]:
            cpu, started = server_cpu_s(target), time.perf_counter()
            target.rates.append(saturate(target, SATURATE_S))
            reports = target.rates[-1] * (time.perf_counter() - started)
            target.cpu_ms.append((server_cpu_s(target) - cpu) / reports * 1e3)
            print(
                f"  round {number + 1}: {target.name}: {target.rates[-1]:.0f} reports/s, "
                f"{target.cpu_ms[-1]:.2f} ms of server CPU a report"
            )
    for target in targets:
        latencies = paced(target, RATE, PACED_S)
        cuts = statistics.quantiles(latencies, n=100, method="inclusive")
        target.p50_ms, target.p99_ms = cuts[49], cuts[98]
        print(f"  paced {RATE:g}/s: {target.name}: p50 {cuts[49]:.1f} ms p99 {cuts[98]:.1f} ms")


def server_cpu_s(target: Target) -> float:
    """CPU seconds the target's server processes have used (PostgreSQL's not included)."""
    return sum(agent_footprint.proc_sample(pid)[1] for pid in target.pids)


# -- the servers ----------------------------------------------------------------------------


def bare_app() -> Any:
    from fastapi import FastAPI

    app = FastAPI()

    @app.post(REPORTS_PATH)
    def reports(body: api.AgentReports) -> dict[str, int]:
        return {"accepted": len(body.reports)}

    return app


def serve_bare(port: int) -> None:
    import uvicorn

    uvicorn.run(bare_app(), host="127.0.0.1", port=port, log_level="info", access_log=True)


@contextmanager
def bare_server(home: Path) -> Iterator[harness.Server]:
    port = harness.free_port()
    argv = [str(harness.PYTHON), str(Path(__file__).resolve()), "--bare", str(port)]
    with harness.serving(
        "bare FastAPI",
        argv,
        port=port,
        ready_path="/docs",
        env=harness.clean_environment(home),
        log=home / "bare.log",
    ) as server:
        yield server


def seed_agents(database_url: str) -> list[str]:
    """AGENTS running instances and an agent token each, written directly; their secrets."""
    return [agent.token for agent in loadgen.seed_fleet(database_url, AGENTS, ORG)]


def start_plane(
    stack: ExitStack,
    home: Path,
    database_url: str | None,
    secret_key: str,
    replica_of: harness.Plane | None = None,
    env: dict[str, str] | None = None,
) -> harness.Plane:
    """`brev server` (no reconciler) on `database_url` (default: SQLite in `home`), stopped
    when `stack` closes. A replica (of `replica_of`) shares its database and secret key, not
    its home; its admin token is copied over (only the first start of a database makes one).
    `env` is added to (and wins over) those settings."""
    settings = {"BREV_RECONCILE": "0", "BREV_SECRET_KEY": secret_key}
    if database_url:
        settings["BREV_DATABASE_URL"] = database_url
    settings.update(env or {})
    if replica_of is not None:
        home.mkdir(parents=True, exist_ok=True)
        shutil.copy(replica_of.home / "admin-token", home / "admin-token")
    return stack.enter_context(harness.control_plane(home, env=settings))


def start_targets(
    stack: ExitStack, home: Path, report: bytes, notes: list[str]
) -> tuple[list[Target], harness.Plane]:
    """Every server up and seeded: the targets, and the SQLite plane (for the footprint)."""
    from cryptography.fernet import Fernet

    key = Fernet.generate_key().decode()
    bare = stack.enter_context(bare_server(home))
    targets = [Target("bare FastAPI", [bare.url], Agents([""] * AGENTS, report), [bare.pid])]
    sqlite = start_plane(stack, home / "sqlite", None, key)
    tokens = seed_agents(f"sqlite:///{home / 'sqlite' / 'brev.db'}")
    targets.append(Target("plane, SQLite", [sqlite.url], Agents(tokens, report), [sqlite.pid]))
    bindir = pgcluster.postgres_bindir()
    if bindir is None:
        notes.append("PostgreSQL skipped: no initdb (apt-get install postgresql)")
        return targets, sqlite
    url = stack.enter_context(pgcluster.postgres(bindir))
    first = start_plane(stack, home / "pg-a", url, key)
    second = start_plane(stack, home / "pg-b", url, key, replica_of=first)
    # One database and one set of agents: the seqs go on from one target to the other.
    agents = Agents(seed_agents(url), report)
    targets.append(Target("plane, PostgreSQL", [first.url], agents, [first.pid]))
    both = [first.pid, second.pid]
    targets.append(Target("2 replicas, PostgreSQL", [first.url, second.url], agents, both))
    return targets, sqlite


# -- main -----------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def report(targets: list[Target], report_bytes: int, rounds: int, notes: list[str]) -> None:
    print()
    print(harness.python_line())
    print(harness.machine_line())
    print(
        f"load     {AGENTS} agents, {GPUS}-GPU report of {report_bytes / 1024:.1f} KiB, "
        f"{THREADS} kept-alive connections per server; saturation {SATURATE_S:g} s x "
        f"{rounds} rounds (medians), paced {RATE:g}/s for {PACED_S:g} s"
    )
    for note in notes:
        print(f"note     {note}")
    print()
    bare = targets[0]
    one = next((t for t in targets if t.name == "plane, PostgreSQL"), None)
    print(
        f"{'backend':<22}  {'reports/s':>9}  {'min-max':>11}  {'x bare':>6}  {'CPU ms':>6}  "
        f"{'p50 ms':>6}  {'p99 ms':>6}  target (p99 < {TARGET_P99_MS:g} ms)"
    )
    for t in targets:
        ratio = _median_ratio(t, bare)
        spread = f"{min(t.rates):.0f}-{max(t.rates):.0f}"
        if t is bare:
            targets_met = ""
        elif len(t.urls) > 1 and one is not None:
            scaling = _median_ratio(t, one)
            targets_met = (
                f"{scaling:.2f}x one replica >= {TARGET_SCALING:g}x: "
                f"{verdict(scaling >= TARGET_SCALING)}  {verdict(t.p99_ms < TARGET_P99_MS)}"
            )
        else:
            targets_met = (
                f">= {TARGET_RATIO:g}x bare: {verdict(ratio >= TARGET_RATIO)}  "
                f"{verdict(t.p99_ms < TARGET_P99_MS)}"
            )
        print(
            f"{t.name:<22}  {t.per_s:>9.0f}  {spread:>11}  {ratio:>5.2f}x  "
            f"{statistics.median(t.cpu_ms):>6.2f}  {t.p50_ms:>6.1f}  {t.p99_ms:>6.1f}  "
            f"{targets_met}".rstrip()
        )
    print()
    print("reports/s: the median of the rounds; x bare (and x one replica): the median of each")
    print("round's ratio (same body, same run). CPU ms: the servers' CPU per report at")
    print("saturation (median of the rounds; PostgreSQL's own not counted). latency: from each")
    print("request's scheduled time at the paced rate, client included.")


def _median_ratio(target: Target, base: Target) -> float:
    return statistics.median(r / b for r, b in zip(target.rates, base.rates, strict=True))


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--rounds", type=int, default=ROUNDS, help=f"saturation rounds, medians ({ROUNDS})"
    )
    parser.add_argument(
        "--no-footprint", action="store_true", help="skip the agent's footprint (20 s)"
    )
    return parser.parse_args()


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--bare":
        serve_bare(int(sys.argv[2]))
        return
    arguments = parse_arguments()
    harness.exit_on_sigterm()
    harness.require_brev()
    home = Path(tempfile.mkdtemp(prefix="brev-bench-"))
    notes: list[str] = []
    try:
        body = eight_gpu_report(home)
        minutes = (arguments.rounds * 4 * SATURATE_S + 4 * PACED_S + 30) / 60
        print(f"measuring (about {minutes:.0f} minutes)...")
        with ExitStack() as stack:
            targets, sqlite = start_targets(stack, home, body, notes)
            measure_rounds(targets, arguments.rounds)
            if not arguments.no_footprint:
                token = targets[1].agents.tokens[0]  # gpu-0000's
                agent_footprint.measure(sqlite, token, home, STUB_BIN, FOOTPRINT_S, ORG)
        report(targets, len(body), arguments.rounds, notes)
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
