"""What the benchmarks share: a real `brev server` (or another server) started on a free port and
stopped however the run ends, commands timed as subprocesses, and the median/p90 tables.

The benchmarks run as `python bench/NAME.py`, which puts bench/ first on sys.path, while mypy
roots modules at the repository (this one is `bench.harness` to it). So they import it as

    if TYPE_CHECKING:
        from bench import harness
    else:
        import harness
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from brev.server.db.models import Membership, Org, User

PYTHON = Path(sys.executable)
BREV = PYTHON.parent / "brev"
START_TIMEOUT_S = 30.0
COMMAND_TIMEOUT_S = 30.0
WARMUP_ROUNDS = 2
MIN_RUNS = 10
MAX_RUNS = 200


class Abort(RuntimeError):
    """The run cannot go on (a server did not start, a check failed, time ran out); the message
    says why."""


# -- processes ------------------------------------------------------------------------------


def require_brev() -> None:
    if not BREV.exists():
        sys.exit(f"no brev script at {BREV}: install the package into this venv first")


def exit_on_sigterm(message: str | None = None) -> None:
    """SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C: servers stop and temporary dirs go."""

    def terminated(*_: object) -> None:
        if message:
            print(message, file=sys.stderr)
        sys.exit(143)

    signal.signal(signal.SIGTERM, terminated)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_environment(home: Path | None = None) -> dict[str, str]:
    """This process's environment without anything that points brev or Python elsewhere; with
    BREV_HOME=home when given."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("BREV_", "PYTHON")) or key == "PYTHONHASHSEED"
    }
    if home is not None:
        env["BREV_HOME"] = str(home)
    return env


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def wait_until_up(url: str, process: subprocess.Popen[bytes], what: str, log: Path) -> None:
    """Until GET `url` answers 200; Abort (with the log) when the process exits first."""
    deadline = time.monotonic() + START_TIMEOUT_S
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise Abort(f"{what} exited with {process.returncode}:\n{log.read_text()}")
            try:
                if client.get(url).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
    raise Abort(f"{what} did not answer within {START_TIMEOUT_S:.0f} s")


@dataclass
class Server:
    """A process started by `serving`, answering on `url`."""

    url: str
    log: Path
    pid: int


@contextmanager
def serving(
    what: str,
    argv: list[str],
    *,
    port: int,
    ready_path: str,
    env: dict[str, str],
    log: Path,
    cwd: Path | None = None,
) -> Iterator[Server]:
    """`argv` (which listens on `port`) started with its output in `log`, once `ready_path`
    answers; stopped on the way out, however."""
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as output:
        process = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_up(f"{url}{ready_path}", process, what, log)
        yield Server(url=url, log=log, pid=process.pid)
    finally:
        stop_process(process)


@dataclass
class Plane(Server):
    """A `brev server` started by `control_plane`, with the token of its bootstrap admin."""

    home: Path
    token: str

    def cli_environment(self, org: str) -> dict[str, str]:
        """What `brev` needs to act as the admin in `org`, through the environment only."""
        env = clean_environment(self.home)
        env.update(BREV_API_URL=self.url, BREV_TOKEN=self.token, BREV_ORG=org)
        return env

    def http(self) -> httpx.Client:
        """An httpx client for the API, as the admin."""
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30.0)


@contextmanager
def control_plane(
    home: Path, *, log: Path | None = None, env: Mapping[str, str] | None = None
) -> Iterator[Plane]:
    """`brev server` on a free port with BREV_HOME=home (made if need be) and `env` added; its
    output in `log` (default home/server.log)."""
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    with serving(
        "brev server",
        [str(BREV), "server", "--port", str(port)],
        port=port,
        ready_path="/healthz",
        env={**clean_environment(home), **(env or {})},
        log=log or home / "server.log",
        cwd=home,
    ) as server:
        token = (home / "admin-token").read_text().strip()
        yield Plane(url=server.url, log=server.log, pid=server.pid, home=home, token=token)


# -- timing ---------------------------------------------------------------------------------


@dataclass
class Timings:
    samples: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, seconds: float) -> None:
        self.samples.setdefault(name, []).append(seconds * 1000.0)

    def median(self, name: str) -> float:
        return statistics.median(self.samples[name])

    def p90(self, name: str) -> float:
        return statistics.quantiles(self.samples[name], n=10, method="inclusive")[-1]

    def row(self, name: str, width: int, per: float, verdict: str = "", digits: int = 1) -> str:
        """`name`'s table row: median and p90 in ms, the median as a multiple of `per`."""
        median = self.median(name)
        return (
            f"{name:<{width}}  {median:>9.{digits}f}  {self.p90(name):>8.{digits}f}  "
            f"{median / per:>7.2f}x  {verdict}"
        ).rstrip()


def table_header(first: str, width: int, ratio: str) -> str:
    return f"{first:<{width}}  {'median ms':>9}  {'p90 ms':>8}  {ratio:>8}  target"


def command_runner(
    command: Sequence[str | Path], env: dict[str, str], cwd: Path
) -> Callable[[], float]:
    """A function that runs `command` once, stdout and stderr to pipes, and returns its wall
    time."""
    argv = [str(part) for part in command]

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


def http_runner(
    client: httpx.Client, path: str, params: dict[str, str] | None = None
) -> Callable[[], float]:
    """A function that GETs path once on a kept-alive connection and returns its wall time."""

    def run() -> float:
        started = time.perf_counter()
        response = client.get(path, params=params)
        elapsed = time.perf_counter() - started
        response.raise_for_status()
        return elapsed

    return run


def measure(
    runners: dict[str, Callable[[], float]], runs: int, budget_s: float
) -> tuple[Timings, int]:
    """Round-robin: every round runs each command once, starting one further each round, after
    WARMUP_ROUNDS unmeasured rounds. Stops after `budget_s` of measuring (never before MIN_RUNS
    rounds); the timings and the rounds measured."""
    names = list(runners)
    timings = Timings()
    deadline: float | None = None
    for round_number in range(-WARMUP_ROUNDS, runs):
        if round_number == 0:
            deadline = time.monotonic() + budget_s
        elif deadline is not None and round_number >= MIN_RUNS and time.monotonic() > deadline:
            return timings, round_number
        offset = round_number % len(names)
        for name in names[offset:] + names[:offset]:
            elapsed = runners[name]()
            if round_number >= 0:
                timings.add(name, elapsed)
    return timings, runs


def positive_runs(text: str) -> int:
    value = int(text)
    if not MIN_RUNS <= value <= MAX_RUNS:
        raise argparse.ArgumentTypeError(f"must be between {MIN_RUNS} and {MAX_RUNS}")
    return value


def parse_runs(doc: str | None) -> int:
    """The command line of a benchmark that takes only --runs; `doc`'s first line is its help."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    parser.add_argument(
        "--runs", type=positive_runs, default=15, help="measured rounds (default 15, min 10)"
    )
    runs: int = parser.parse_args().runs
    return runs


# -- reporting ------------------------------------------------------------------------------


def python_line() -> str:
    return f"python   {platform.python_implementation()} {sys.version.split()[0]} ({PYTHON})"


def machine_line() -> str:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return f"machine  {platform.machine()}, {os.cpu_count()} CPUs (usable: {usable or '?'})"


def rounds_line(rounds: int, runs: int) -> str:
    note = "" if rounds == runs else f" (time budget reached; --runs {runs} asked)"
    return f"rounds   {rounds} measured, {WARMUP_ROUNDS} warm-up, round-robin{note}"


def org_and_admin(session: Session, org: str) -> tuple[str, str]:
    """The ids of `org` and of an admin of it, for rows a benchmark seeds directly."""
    org_id = session.scalars(select(Org.id).where(Org.name == org)).one()
    admin_id = session.scalars(
        select(User.id)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.org_id == org_id, Membership.role == "admin")
    ).first()
    if admin_id is None:
        raise Abort(f"org '{org}' has no admin to seed rows as")
    return org_id, admin_id
