"""How fast the `brev` CLI starts and lists 1,000 instances, measured against a Python start.

    .venv/bin/python bench/cli_startup.py [--runs N]

Starts its own control plane (`brev server` on a free port, in a temporary BREV_HOME), seeds
1,000 running instances into the default org straight through the database, then times, round
after round and interleaved so machine noise hits every command alike:

- `python -c pass` with this venv's python: the "speed of light" of any Python command, and
  `python -S -c pass` beside it, which skips site-packages and its .pth files, to show what
  they (an editable install's import finder above all) add to every Python start;
- `brev --help`, `brev ls` and `brev ls --json` as the console script, stdout to a pipe;
- the bare `GET /api/v1/orgs/default/instances`, in this process with httpx, to show how much
  of `brev ls` is the server.

Prints median and p90 per command, each median as a multiple of the `python -c pass` one, and
PASS/MISS against the targets. Exits 0 either way: it is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import select

from brev.server.db.engine import make_engine, make_sessionmaker, transaction
from brev.server.db.models import Instance, Membership, Org, User

PYTHON = Path(sys.executable)
BREV = PYTHON.parent / "brev"
ORG = "default"
INSTANCES = 1_000
WARMUP_ROUNDS = 2
MIN_RUNS = 10
MAX_RUNS = 200
SERVER_START_TIMEOUT_S = 30.0
COMMAND_TIMEOUT_S = 30.0
# Measuring stops after this many seconds even when fewer than --runs rounds are done (never
# before MIN_RUNS), so the whole benchmark stays under two minutes on a slow machine.
MEASURE_BUDGET_S = 75.0

BASELINE = "python -c pass"
NO_SITE = "python -S -c pass (no site)"
TARGETS = {"brev --help": 4.0, "brev ls": 6.0}

# (gpu_model, gpu_spec, gpu_count, provider, region, instance_type, price per hour)
SHAPES = [
    ("H100-80GB", "H100:8", 8, "aws", "us-east-1", "p5.48xlarge", 98.32),
    ("H100-80GB", "H100:8", 8, "gcp", "us-central1", "a3-highgpu-8g", 88.25),
    ("H100-80GB", "H100:1", 1, "lambda", "us-west-1", "gpu_1x_h100_pcie", 2.49),
    ("A100-80GB", "A100:8", 8, "aws", "us-east-1", "p4de.24xlarge", 40.97),
    ("A100-40GB", "A100:8", 8, "aws", "us-west-2", "p4d.24xlarge", 32.77),
    ("A100-80GB", "A100:1", 1, "gcp", "europe-west4", "a2-ultragpu-1g", 5.07),
    ("L40S", "L40S:4", 4, "aws", "eu-west-1", "g6e.12xlarge", 10.49),
    ("L4", "L4:1", 1, "gcp", "us-east4", "g2-standard-8", 0.85),
    ("A10G", "A10G:1", 1, "aws", "us-east-2", "g5.2xlarge", 1.21),
    ("RTX-6000-Ada", "RTX6000:2", 2, "crusoe", "us-northcentral1", "l40s-48gb.2x", 3.18),
]
TEAMS = ["train", "eval", "infer", "data", "research", "ft", "rl", "bench"]


@dataclass
class Plane:
    home: Path
    url: str
    token: str


@dataclass
class Timings:
    samples: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, seconds: float) -> None:
        self.samples.setdefault(name, []).append(seconds * 1000.0)

    def median(self, name: str) -> float:
        return statistics.median(self.samples[name])

    def p90(self, name: str) -> float:
        return statistics.quantiles(self.samples[name], n=10, method="inclusive")[-1]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_environment(home: Path) -> dict[str, str]:
    """This process's environment without anything that points brev or Python elsewhere."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("BREV_", "PYTHON")) or key == "PYTHONHASHSEED"
    }
    env["BREV_HOME"] = str(home)
    return env


@contextmanager
def control_plane(home: Path) -> Iterator[Plane]:
    """`brev server` on a free port with BREV_HOME=home; stopped on the way out, however."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = home / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(BREV), "server", "--port", str(port)],
            # The seeded instances stand for no real machine: keep the reconciler off them.
            env={**clean_environment(home), "BREV_RECONCILE": "0"},
            cwd=home,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_healthy(url, process, log_path)
        token = (home / "admin-token").read_text().strip()
        yield Plane(home=home, url=url, token=token)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def wait_until_healthy(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    with httpx.Client(base_url=url, timeout=2.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(
                    f"brev server exited with {process.returncode}:\n{log_path.read_text()}"
                )
            try:
                if client.get("/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
    raise RuntimeError(f"brev server not healthy after {SERVER_START_TIMEOUT_S:.0f}s")


def seed_instances(home: Path, count: int) -> None:
    """`count` running instances in the default org, created by its admin, written directly."""
    rng = random.Random(20240601)
    now = datetime.now(UTC)
    engine = make_engine(f"sqlite:///{home / 'brev.db'}")
    try:
        with transaction(make_sessionmaker(engine)) as session:
            org_id = session.scalars(select(Org.id).where(Org.name == ORG)).one()
            admin_id = session.scalars(
                select(User.id)
                .join(Membership, Membership.user_id == User.id)
                .where(Membership.org_id == org_id, Membership.role == "admin")
            ).first()
            if admin_id is None:
                raise RuntimeError(f"org '{ORG}' has no admin to create instances as")
            instances = []
            for number in range(count):
                model, spec, gpus, provider, region, kind, price = rng.choice(SHAPES)
                created = now - timedelta(seconds=rng.randint(60, 45 * 24 * 3600))
                instances.append(
                    Instance(
                        org_id=org_id,
                        name=f"{rng.choice(TEAMS)}-{model.split('-')[0].lower()}-{number:04d}",
                        created_by_id=admin_id,
                        status="running",
                        desired_status="running",
                        health="healthy",
                        gpu_spec=spec,
                        gpu_model=model,
                        gpu_count=gpus,
                        provider=provider,
                        region=region,
                        zone=f"{region}-{rng.choice('abc')}",
                        instance_type=kind,
                        spot=rng.random() < 0.2,
                        disk_gb=rng.choice([256, 512, 1024, 2048]),
                        image="nvcr.io/nvidia/pytorch:24.05-py3",
                        price_per_hour=price,
                        provider_ref=f"i-{rng.getrandbits(64):016x}",
                        created_at=created,
                        updated_at=created,
                        last_heartbeat_at=now - timedelta(seconds=rng.randint(1, 60)),
                    )
                )
            session.add_all(instances)
    finally:
        engine.dispose()


def command_runner(argv: list[str], env: dict[str, str], cwd: Path) -> Callable[[], float]:
    """A function that runs argv once, stdout and stderr to pipes, and returns its wall time."""

    def run() -> float:
        started = time.perf_counter()
        done = subprocess.run(
            argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
        elapsed = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(argv)} exited with {done.returncode}:\n{done.stderr.decode()}"
            )
        return elapsed

    return run


def http_runner(client: httpx.Client, path: str) -> Callable[[], float]:
    """A function that GETs path once on a kept-alive connection and returns its wall time."""

    def run() -> float:
        started = time.perf_counter()
        response = client.get(path)
        elapsed = time.perf_counter() - started
        response.raise_for_status()
        return elapsed

    return run


def check_outputs(env: dict[str, str], cwd: Path, count: int) -> None:
    """`brev ls` prints a header and one line per instance; `--json` a list of them."""
    listing = subprocess.run(
        [str(BREV), "ls"], env=env, cwd=cwd, capture_output=True, timeout=60, check=True
    ).stdout.decode()
    lines = listing.splitlines()
    if len(lines) != count + 1 or not lines[0].startswith("NAME"):
        raise RuntimeError(f"brev ls printed {len(lines)} lines, expected {count + 1}")
    as_json = subprocess.run(
        [str(BREV), "ls", "--json"], env=env, cwd=cwd, capture_output=True, timeout=60, check=True
    ).stdout
    if as_json.count(b'"name"') != count:
        raise RuntimeError("brev ls --json did not list every instance")


def measure(runners: dict[str, Callable[[], float]], runs: int) -> tuple[Timings, int]:
    """Round-robin: every round runs each command once, starting one further each round."""
    names = list(runners)
    timings = Timings()
    deadline: float | None = None
    for round_number in range(-WARMUP_ROUNDS, runs):
        if round_number == 0:
            deadline = time.monotonic() + MEASURE_BUDGET_S
        elif deadline is not None and round_number >= MIN_RUNS and time.monotonic() > deadline:
            return timings, round_number
        offset = round_number % len(names)
        for name in names[offset:] + names[:offset]:
            elapsed = runners[name]()
            if round_number >= 0:
                timings.add(name, elapsed)
    return timings, runs


def install_mode() -> str:
    """How brev is installed in this venv: an editable install hooks every Python start."""
    try:
        direct_url = importlib.metadata.distribution("brev").read_text("direct_url.json")
    except importlib.metadata.PackageNotFoundError:
        return "not installed (imported from the source tree)"
    if direct_url and json.loads(direct_url).get("dir_info", {}).get("editable"):
        return "editable (pip install -e: a .pth import finder runs at every Python start)"
    return "regular (wheel)"


def report(timings: Timings, rounds: int, runs: int, response_bytes: int) -> None:
    print(f"python   {platform.python_implementation()} {sys.version.split()[0]} ({PYTHON})")
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    print(f"machine  {platform.machine()}, {os.cpu_count()} CPUs (usable: {affinity or '?'})")
    print(f"platform {platform.platform()}")
    print(f"brev     {install_mode()}")
    print(
        f"data     {INSTANCES} instances in org '{ORG}', "
        f"GET /instances body {response_bytes / 1024:.0f} KiB"
    )
    note = "" if rounds == runs else f" (time budget reached; --runs {runs} asked)"
    print(f"rounds   {rounds} measured, {WARMUP_ROUNDS} warm-up, round-robin{note}")
    print()
    baseline = timings.median(BASELINE)
    width = max(len(name) for name in timings.samples)
    print(f"{'command':<{width}}  {'median ms':>9}  {'p90 ms':>8}  {'x python':>8}  target")
    for name in timings.samples:
        median = timings.median(name)
        ratio = median / baseline
        target = TARGETS.get(name)
        verdict = ""
        if target is not None:
            verdict = f"<= {target:g}x {'PASS' if ratio <= target else 'MISS'}"
        line = f"{name:<{width}}  {median:>9.1f}  {timings.p90(name):>8.1f}  {ratio:>7.2f}x"
        print(f"{line}  {verdict}".rstrip())
    print()
    print("x python: median / median of `python -c pass` (same venv python, same rounds).")
    print("no site: the same python with -S; the gap to `python -c pass` is site + .pth files.")
    print("GET row: the request alone, in this process, on a kept-alive httpx connection.")


def positive_runs(text: str) -> int:
    value = int(text)
    if not MIN_RUNS <= value <= MAX_RUNS:
        raise argparse.ArgumentTypeError(f"must be between {MIN_RUNS} and {MAX_RUNS}")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--runs", type=positive_runs, default=15, help="measured rounds (default 15, min 10)"
    )
    args = parser.parse_args()
    # SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C, so the server stops and the dir goes.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if not BREV.exists():
        sys.exit(f"no brev script at {BREV}: install the package into this venv first")

    home = Path(tempfile.mkdtemp(prefix="brev-bench-"))
    try:
        with control_plane(home) as plane:
            seed_instances(home, INSTANCES)
            env = clean_environment(home)
            env.update(BREV_API_URL=plane.url, BREV_TOKEN=plane.token, BREV_ORG=ORG)
            check_outputs(env, home, INSTANCES)
            path = f"/api/v1/orgs/{ORG}/instances"
            headers = {"Authorization": f"Bearer {plane.token}"}
            with httpx.Client(base_url=plane.url, headers=headers, timeout=30.0) as client:
                response_bytes = len(client.get(path).content)
                runners = {
                    BASELINE: command_runner([str(PYTHON), "-c", "pass"], env, home),
                    NO_SITE: command_runner([str(PYTHON), "-S", "-c", "pass"], env, home),
                    "brev --help": command_runner([str(BREV), "--help"], env, home),
                    "brev ls": command_runner([str(BREV), "ls"], env, home),
                    "brev ls --json": command_runner([str(BREV), "ls", "--json"], env, home),
                    f"GET {path}": http_runner(client, path),
                }
                timings, rounds = measure(runners, args.runs)
        report(timings, rounds, args.runs, response_bytes)
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
