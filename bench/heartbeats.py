"""How many agent reports per second the plane ingests, beside a bare endpoint; what an agent costs.

    .venv/bin/python bench/heartbeats.py

For SQLite, then PostgreSQL (a throwaway cluster; skipped with a note when its binaries are
missing), starts `brev server` (BREV_RECONCILE=0) in a temporary BREV_HOME, seeds 1,000 running
instances and one agent token each straight into the database, then drives
`POST /api/v1/agent/reports` from this process: each request is one agent's realistic 8-GPU
report (the stub nvidia-smi's, GPUs repeated with distinct uuids) with the agent's next seq.

- saturation: THREADS client threads, each on its own kept-alive connection, for SATURATE_S;
- paced: RATE requests/s for PACED_S, latency counted from each request's scheduled time (a
  late start counts against the server, not hidden by it).

The baseline, in the same run and driven the same way: a bare FastAPI app under uvicorn (one
process, same log settings as `brev server`) whose only route parses the same pydantic body
(`brev.api.AgentReports`) and returns {"accepted": n}: the speed of light of the endpoint.

Then the agent's footprint: a real `brev agent run --interval 1s` (stub nvidia-smi on PATH)
against the SQLite plane for FOOTPRINT_S: RSS, CPU s per minute (its own and its children's).

Prints the table with PASS/MISS against the targets (>= 0.5x the bare endpoint; p99 < 50 ms at
100 reports/s). Exits 0 either way: it is a benchmark, not a test.
"""

from __future__ import annotations

import http.client
import json
import os
import pwd
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from brev import api
from brev.server.auth import hash_secret, new_secret, visible_prefix
from brev.server.db.engine import make_engine, make_sessionmaker, transaction
from brev.server.db.models import ApiToken, Instance

if TYPE_CHECKING:  # mypy roots modules at the repository; see bench/harness.py
    from bench import harness
else:
    import harness

ORG = "default"
AGENTS = 1_000
GPUS = 8
THREADS = 8
SATURATE_S = 8.0
PACED_S = 10.0
RATE = 100.0
FOOTPRINT_S = 20.0
TARGET_RATIO = 0.5
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
    """AGENTS tokens (each one instance's) and the next seq of each."""

    tokens: list[str]
    report: bytes
    seqs: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    cursor: int = 0

    def next_request(self) -> tuple[str, bytes]:
        """The next agent, round-robin, and its body: one report with its next seq."""
        with self.lock:
            agent = self.cursor % len(self.tokens)
            self.cursor += 1
            if not self.seqs:
                self.seqs = [0] * len(self.tokens)
            self.seqs[agent] += 1
            seq = self.seqs[agent]
        report = self.report.replace(b'"%s"', b'"%b"' % datetime.now(UTC).isoformat().encode())
        body = b'{"reports":[{"seq":%d,"report":%b}],"interval_seconds":10}' % (seq, report)
        return self.tokens[agent], body


def seed_agents(database_url: str, count: int) -> list[str]:
    """`count` running instances in the default org and an agent token for each, written
    directly (as `POST .../agent-token` would, less its audit event); their secrets."""
    engine = make_engine(database_url)
    secrets: list[str] = []
    try:
        with transaction(make_sessionmaker(engine)) as session:
            org_id, admin_id = harness.org_and_admin(session, ORG)
            instances = [
                Instance(
                    org_id=org_id,
                    name=f"gpu-{number:04d}",
                    created_by_id=admin_id,
                    status="running",
                    health="healthy",
                    gpu_spec="H200:8",
                    gpu_model="H200",
                    gpu_count=GPUS,
                    provider="aws",
                    region="us-east-1",
                    instance_type="p5en.48xlarge",
                    price_per_hour=63.30,
                )
                for number in range(count)
            ]
            session.add_all(instances)
            session.flush()
            for instance in instances:
                secret = new_secret()
                secrets.append(secret)
                session.add(
                    ApiToken(
                        user_id=admin_id,
                        org_id=org_id,
                        name=f"agent-{instance.id}",
                        kind="agent",
                        instance_id=instance.id,
                        prefix=visible_prefix(secret),
                        secret_hash=hash_secret(secret),
                    )
                )
    finally:
        engine.dispose()
    return secrets


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


def run_threads(url: str, work: Callable[[Client, int], None]) -> None:
    """`work(client, k)` in THREADS threads, each with its own connection; re-raises a failure."""
    failures: list[BaseException] = []

    def thread(k: int) -> None:
        client = Client(url)
        try:
            work(client, k)
        except BaseException as exc:  # handed to the main thread
            failures.append(exc)
        finally:
            client.close()

    threads = [threading.Thread(target=thread, args=(k,), daemon=True) for k in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise failures[0]


def saturate(url: str, agents: Agents, seconds: float) -> float:
    """Requests per second with THREADS clients sending back to back for `seconds`."""
    done = [0] * THREADS
    deadline = time.perf_counter() + seconds

    def work(client: Client, k: int) -> None:
        while time.perf_counter() < deadline:
            client.post(*agents.next_request())
            done[k] += 1

    started = time.perf_counter()
    run_threads(url, work)
    return sum(done) / (time.perf_counter() - started)


def paced(url: str, agents: Agents, rate: float, seconds: float) -> list[float]:
    """Latencies (ms) of `rate` requests/s for `seconds`, each from its scheduled start."""
    total = int(rate * seconds)
    latencies: list[float] = []
    start = time.perf_counter() + 0.1

    def work(client: Client, k: int) -> None:
        for i in range(k, total, THREADS):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            client.post(*agents.next_request())
            latencies.append((time.perf_counter() - scheduled) * 1000.0)

    run_threads(url, work)
    return latencies


@dataclass
class Result:
    name: str
    per_s: float
    p50_ms: float
    p99_ms: float


def measure(name: str, url: str, agents: Agents) -> Result:
    saturate(url, agents, 1.0)  # warm-up: connections, the first queries, caches
    per_s = saturate(url, agents, SATURATE_S)
    latencies = paced(url, agents, RATE, PACED_S)
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    print(f"  {name}: {per_s:.0f} reports/s, p50 {cuts[49]:.1f} ms p99 {cuts[98]:.1f} ms")
    return Result(name, per_s, cuts[49], cuts[98])


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


def postgres_bindir() -> Path | None:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)
    if candidates:
        return candidates[0].parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


@contextmanager
def postgres(bindir: Path) -> Iterator[str]:
    """A throwaway cluster (as the postgres user when root), default durability settings;
    its URL. Stopped and removed on the way out."""
    run_as = "postgres" if os.geteuid() == 0 else None
    datadir = Path(tempfile.mkdtemp(prefix="brev-bench-pg-"))
    port = harness.free_port()

    def pg(*args: str) -> None:
        command = [str(bindir / args[0]), *args[1:]]
        if run_as:
            command = ["runuser", "-u", run_as, "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    if run_as:
        user = pwd.getpwnam(run_as)
        os.chown(datadir, user.pw_uid, user.pw_gid)
    try:
        pg("initdb", "-D", str(datadir), "-U", "postgres", "-A", "trust", "--no-sync")
        options = f"-p {port} -k {datadir} -c listen_addresses=127.0.0.1 -c max_connections=200"
        log = str(datadir / "server.log")
        pg("pg_ctl", "-D", str(datadir), "-o", options, "-l", log, "-w", "start")
        try:
            yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
        finally:
            pg("pg_ctl", "-D", str(datadir), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(datadir, ignore_errors=True)


def plane_run(name: str, home: Path, report: bytes, database_url: str | None) -> Result:
    env = {"BREV_RECONCILE": "0"}
    if database_url:
        env["BREV_DATABASE_URL"] = database_url
    with harness.control_plane(home, env=env) as plane:
        tokens = seed_agents(database_url or f"sqlite:///{home / 'brev.db'}", AGENTS)
        result = measure(name, plane.url, Agents(tokens, report))
        if name == "plane, SQLite":
            footprint(plane, tokens[0], home)
        return result


# -- the agent's footprint ------------------------------------------------------------------


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


def footprint(plane: harness.Plane, token: str, home: Path) -> None:
    env = harness.clean_environment(home / "agent")
    env["PATH"] = f"{STUB_BIN}:{env.get('PATH', '')}"
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
        while time.perf_counter() - started < FOOTPRINT_S:
            time.sleep(1.0)
            rss_max = max(rss_max, proc_sample(process.pid)[0])
        rss1, own1, kids1 = proc_sample(process.pid)
        minutes = (time.perf_counter() - started) / 60
    finally:
        harness.stop_process(process)
    with plane.http() as client:
        shown = client.get(f"/api/v1/orgs/{ORG}/instances/gpu-0000").json()
    print(
        f"  agent: RSS {rss0:.1f} -> {rss1:.1f} MiB (max {rss_max:.1f}); CPU per minute "
        f"{(own1 - own0) / minutes:.2f} s own + {(kids1 - kids0) / minutes:.2f} s nvidia-smi; "
        f"instance health {shown.get('health')!r}"
    )


# -- main -----------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def report(results: list[Result], report_bytes: int, notes: list[str]) -> None:
    print()
    print(harness.python_line())
    print(harness.machine_line())
    print(
        f"load     {AGENTS} agents, {GPUS}-GPU report of {report_bytes / 1024:.1f} KiB, "
        f"{THREADS} kept-alive connections; saturation {SATURATE_S:g} s, "
        f"paced {RATE:g}/s for {PACED_S:g} s"
    )
    for note in notes:
        print(f"note     {note}")
    print()
    bare = results[0].per_s
    print(
        f"{'backend':<16}  {'reports/s':>9}  {'x bare':>6}  {'p50 ms':>7}  {'p99 ms':>7}  "
        f">= {TARGET_RATIO:g}x  p99 < {TARGET_P99_MS:g} ms"
    )
    for r in results:
        ratio = r.per_s / bare
        targets = (
            ""
            if r is results[0]
            else (f"{verdict(ratio >= TARGET_RATIO):<7}  {verdict(r.p99_ms < TARGET_P99_MS)}")
        )
        print(
            f"{r.name:<16}  {r.per_s:>9.0f}  {ratio:>5.2f}x  {r.p50_ms:>7.1f}  "
            f"{r.p99_ms:>7.1f}  {targets}".rstrip()
        )
    print()
    print("x bare: reports/s / those of the bare FastAPI endpoint (same body, same run).")
    print("latency: from each request's scheduled time at the paced rate, client included.")


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--bare":
        serve_bare(int(sys.argv[2]))
        return
    if len(sys.argv) > 1:
        sys.exit(__doc__)
    harness.exit_on_sigterm()
    harness.require_brev()
    home = Path(tempfile.mkdtemp(prefix="brev-bench-"))
    notes: list[str] = []
    try:
        body = eight_gpu_report(home)
        results = []
        print("measuring (about 2 minutes)...")
        with bare_server(home) as bare:
            results.append(measure("bare FastAPI", bare.url, Agents([""] * AGENTS, body)))
        results.append(plane_run("plane, SQLite", home / "sqlite", body, None))
        bindir = postgres_bindir()
        if bindir is None:
            notes.append("PostgreSQL skipped: no initdb (apt-get install postgresql)")
        else:
            with postgres(bindir) as url:
                results.append(plane_run("plane, PostgreSQL", home / "pg", body, url))
        report(results, len(body), notes)
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
