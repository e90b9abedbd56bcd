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

import importlib.metadata
import json
import platform
import random
import shutil
import subprocess
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from brev.server.db.engine import make_engine, make_sessionmaker, transaction
from brev.server.db.models import Instance

if TYPE_CHECKING:  # mypy roots modules at the repository; see bench/harness.py
    from bench import harness
else:
    import harness

PYTHON, BREV = harness.PYTHON, harness.BREV
ORG = "default"
INSTANCES = 1_000
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


def seed_instances(home: Path, count: int) -> None:
    """`count` running instances in the default org, created by its admin, written directly."""
    rng = random.Random(20240601)
    now = datetime.now(UTC)
    engine = make_engine(f"sqlite:///{home / 'brev.db'}")
    try:
        with transaction(make_sessionmaker(engine)) as session:
            org_id, admin_id = harness.org_and_admin(session, ORG)
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


def install_mode() -> str:
    """How brev is installed in this venv: an editable install hooks every Python start."""
    try:
        direct_url = importlib.metadata.distribution("brev").read_text("direct_url.json")
    except importlib.metadata.PackageNotFoundError:
        return "not installed (imported from the source tree)"
    if direct_url and json.loads(direct_url).get("dir_info", {}).get("editable"):
        return "editable (pip install -e: a .pth import finder runs at every Python start)"
    return "regular (wheel)"


def verdict(name: str, ratio: float) -> str:
    target = TARGETS.get(name)
    if target is None:
        return ""
    return f"<= {target:g}x {'PASS' if ratio <= target else 'MISS'}"


def report(timings: harness.Timings, rounds: int, runs: int, response_bytes: int) -> None:
    print(harness.python_line())
    print(harness.machine_line())
    print(f"platform {platform.platform()}")
    print(f"brev     {install_mode()}")
    print(
        f"data     {INSTANCES} instances in org '{ORG}', "
        f"GET /instances body {response_bytes / 1024:.0f} KiB"
    )
    print(harness.rounds_line(rounds, runs))
    print()
    baseline = timings.median(BASELINE)
    width = max(len(name) for name in timings.samples)
    print(harness.table_header("command", width, "x python"))
    for name in timings.samples:
        print(timings.row(name, width, baseline, verdict(name, timings.median(name) / baseline)))
    print()
    print("x python: median / median of `python -c pass` (same venv python, same rounds).")
    print("no site: the same python with -S; the gap to `python -c pass` is site + .pth files.")
    print("GET row: the request alone, in this process, on a kept-alive httpx connection.")


def main() -> None:
    runs = harness.parse_runs(__doc__)
    harness.exit_on_sigterm()
    harness.require_brev()

    home = Path(tempfile.mkdtemp(prefix="brev-bench-"))
    try:
        # The seeded instances stand for no real machine: keep the reconciler off them.
        with harness.control_plane(home, env={"BREV_RECONCILE": "0"}) as plane:
            seed_instances(home, INSTANCES)
            env = plane.cli_environment(ORG)
            check_outputs(env, home, INSTANCES)
            path = f"/api/v1/orgs/{ORG}/instances"
            with plane.http() as client:
                response_bytes = len(client.get(path).content)
                runners = {
                    BASELINE: harness.command_runner([PYTHON, "-c", "pass"], env, home),
                    NO_SITE: harness.command_runner([PYTHON, "-S", "-c", "pass"], env, home),
                    "brev --help": harness.command_runner([BREV, "--help"], env, home),
                    "brev ls": harness.command_runner([BREV, "ls"], env, home),
                    "brev ls --json": harness.command_runner([BREV, "ls", "--json"], env, home),
                    f"GET {path}": harness.http_runner(client, path),
                }
                timings, rounds = harness.measure(runners, runs, MEASURE_BUDGET_S)
        report(timings, rounds, runs, response_bytes)
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
