"""How fast `brev search a100` answers, and how fast the catalog query behind it runs.

    .venv/bin/python bench/search.py [--runs N]

Starts its own control plane (`brev server` on a free port, in a temporary BREV_HOME), then
times, round after round and interleaved so machine noise hits every command alike:

- `python -c pass` with this venv's python: the "speed of light" of any Python command;
- `brev search a100` and `brev search a100 --json` as the console script, stdout to a pipe;
- the bare `GET /api/v1/orgs/default/offers?gpu=a100`, in this process with httpx, to show
  how much of the command is the server.

Then, in this process: loading the shipped catalog from its CSVs (uncached), `find_offers`
over the whole catalog (no filter, sorted by price), and the same plus the conversion of every
offer to `brev.api.Offer` that the server does.

Prints medians (and p90 for commands), each command's median as a multiple of the `python -c
pass` one, and PASS/MISS against the targets: the whole command under 0.5 s, the query under
20 ms. Exits 0 either way: it is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import os
import platform
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
from pathlib import Path

import httpx
from pydantic import TypeAdapter

from brev import api
from brev.catalog import OfferQuery, find_offers, load_catalog

PYTHON = Path(sys.executable)
BREV = PYTHON.parent / "brev"
ORG = "default"
WARMUP_ROUNDS = 2
MIN_RUNS = 10
MAX_RUNS = 200
IN_PROCESS_RUNS = 200
SERVER_START_TIMEOUT_S = 30.0
COMMAND_TIMEOUT_S = 30.0
# Measuring stops after this many seconds even when fewer than --runs rounds are done (never
# before MIN_RUNS), so the benchmark stays around a minute on a slow machine.
MEASURE_BUDGET_S = 45.0

BASELINE = "python -c pass"
COMMAND = "brev search a100"
QUERY = "find_offers, whole catalog"
TARGETS_MS = {COMMAND: 500.0, QUERY: 20.0}


@dataclass
class Plane:
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
            env=clean_environment(home),
            cwd=home,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_healthy(url, process, log_path)
        yield Plane(url=url, token=(home / "admin-token").read_text().strip())
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


def http_runner(client: httpx.Client, path: str, params: dict[str, str]) -> Callable[[], float]:
    """A function that GETs path once on a kept-alive connection and returns its wall time."""

    def run() -> float:
        started = time.perf_counter()
        response = client.get(path, params=params)
        elapsed = time.perf_counter() - started
        response.raise_for_status()
        return elapsed

    return run


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


def measure_in_process(timings: Timings) -> int:
    """Catalog load, the whole-catalog query and the query plus the API conversion; offers."""
    as_api = TypeAdapter(list[api.Offer])
    whole_catalog = OfferQuery()
    load_catalog()  # warm: the server keeps the catalog for its lifetime
    as_api.validate_python(find_offers(whole_catalog), from_attributes=True)
    for _ in range(IN_PROCESS_RUNS // 10):
        started = time.perf_counter()
        load_catalog.__wrapped__()
        timings.add("load_catalog (uncached)", time.perf_counter() - started)
    for _ in range(IN_PROCESS_RUNS):
        started = time.perf_counter()
        found = find_offers(whole_catalog)
        timings.add(QUERY, time.perf_counter() - started)
        as_api.validate_python(found, from_attributes=True)
        timings.add(f"{QUERY} + api.Offer", time.perf_counter() - started)
    return len(load_catalog().offers)


def verdict(name: str, median: float) -> str:
    target = TARGETS_MS.get(name)
    if target is None:
        return ""
    return f"< {target:g} ms {'PASS' if median < target else 'MISS'}"


def report(commands: Timings, in_process: Timings, rounds: int, runs: int, offers: int) -> None:
    print(f"python   {platform.python_implementation()} {sys.version.split()[0]} ({PYTHON})")
    print(f"machine  {platform.machine()}, {os.cpu_count()} CPUs")
    print(f"platform {platform.platform()}")
    print(f"catalog  {offers} offers")
    note = "" if rounds == runs else f" (time budget reached; --runs {runs} asked)"
    print(f"rounds   {rounds} measured, {WARMUP_ROUNDS} warm-up, round-robin{note}")
    print()
    baseline = commands.median(BASELINE)
    names = [*commands.samples, *in_process.samples]
    width = max(len(name) for name in names)
    print(f"{'command':<{width}}  {'median ms':>9}  {'p90 ms':>8}  {'x python':>8}  target")
    for name in commands.samples:
        median = commands.median(name)
        line = (
            f"{name:<{width}}  {median:>9.1f}  {commands.p90(name):>8.1f}  "
            f"{median / baseline:>7.2f}x  {verdict(name, median)}"
        )
        print(line.rstrip())
    print()
    print(f"{'in this process':<{width}}  {'median ms':>9}  {'p90 ms':>8}  {'x query':>8}  target")
    query = in_process.median(QUERY)
    for name in in_process.samples:
        median = in_process.median(name)
        line = (
            f"{name:<{width}}  {median:>9.2f}  {in_process.p90(name):>8.2f}  "
            f"{median / query:>7.2f}x  {verdict(name, median)}"
        )
        print(line.rstrip())
    print()
    print("x python: median / median of `python -c pass` (same venv python, same rounds).")
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

    home = Path(tempfile.mkdtemp(prefix="brev-bench-search-"))
    try:
        with control_plane(home) as plane:
            env = clean_environment(home)
            env.update(BREV_API_URL=plane.url, BREV_TOKEN=plane.token, BREV_ORG=ORG)
            path = f"{api.API_PREFIX}/orgs/{ORG}/offers"
            headers = {"Authorization": f"Bearer {plane.token}"}
            with httpx.Client(base_url=plane.url, headers=headers, timeout=30.0) as client:
                runners = {
                    BASELINE: command_runner([str(PYTHON), "-c", "pass"], env, home),
                    COMMAND: command_runner([str(BREV), "search", "a100"], env, home),
                    f"{COMMAND} --json": command_runner(
                        [str(BREV), "search", "a100", "--json"], env, home
                    ),
                    f"GET {path}?gpu=a100": http_runner(client, path, {"gpu": "a100"}),
                }
                commands, rounds = measure(runners, args.runs)
        in_process = Timings()
        offers = measure_in_process(in_process)
        report(commands, in_process, rounds, args.runs, offers)
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
