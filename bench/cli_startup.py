"""How fast the `brev` CLI starts in the install users get, against a Python start.

    .venv/bin/python bench/cli_startup.py [--runs N] [--install regular|editable|both]

Two installs of the same source, each against its own python's `python -c pass`:
- regular: `pip install .` into a venv of its own under build/cli-bench/, what `pip install
  brev` gives a user. Made once (about 40 s, its dependencies from pip's configured index); on
  later runs brev alone is reinstalled (no dependencies) when the source changed.
- editable: this venv (`pip install -e`), whose import finder (a .pth file) runs at every
  Python start and so inflates the baseline the ratios divide by.

Starts its own control plane (`brev server` of this venv on a free port, in a temporary
BREV_HOME), seeds 1,000 running instances into the default org straight through the database,
one of them with a plan, events and GPUs for `brev show`, then times, round after round and
interleaved so machine noise hits every command alike, with stdout to a pipe:

- `python -c pass` and `python -S -c pass` (no site-packages, so none of their .pth files);
- `brev --help`, `brev search --help`, `brev ls`, `brev search a100` and `brev show NAME` as
  the console script, and for the regular install `brev --help` and `brev search a100` with
  BREV_FAST=0 (the full CLI: what the fast paths save);
- the bare GETs behind ls, search and show, in this process with httpx (the server's share).

Prints median and p90 per command, each median as a multiple of its install's `python -c pass`
median, whether the command took its fast path (it never imports typer) and, for the regular
install, PASS/MISS against the targets of issue 14. Exits 0 either way: it is a benchmark, not
a test.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from brev.server.db.engine import make_engine, make_sessionmaker, transaction
from brev.server.db.models import Event, Instance

if TYPE_CHECKING:  # mypy roots modules at the repository; see bench/harness.py
    from bench import harness
else:
    import harness

REPOSITORY = Path(__file__).resolve().parents[1]
REGULAR_VENV = REPOSITORY / "build" / "cli-bench" / "venv"
EDITABLE_BIN = harness.PYTHON.parent
ORG = "default"
INSTANCES = 1_000
SHOWN = "train-a100-detail"  # the instance `brev show` prints, with everything it can show
# Measuring stops after this many seconds even when fewer than --runs rounds are done (never
# before MIN_RUNS), so the whole benchmark stays within three minutes on a slow machine.
MEASURE_BUDGET_S = 75.0
PIP_TIMEOUT_S = 300
# What a checkout holds that is not the package's source (as tests/test_install.py has it).
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "*.pyc"
)

BASELINE = "python -c pass"
# The targets (issue 14), for the regular install: x its `python -c pass`.
TARGETS = {
    "brev --help": 3.0,
    "brev search --help": 3.0,
    "brev ls": 5.0,
    "brev search a100": 5.0,
    f"brev show {SHOWN}": 5.0,
}
FULL_CLI = " (BREV_FAST=0)"

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


# -- the regular install ----------------------------------------------------------------------


def source_digest(paths: list[Path]) -> str:
    """A digest of every file under `paths` (bytecode caches left out)."""
    digest = hashlib.sha256()
    for root in paths:
        files = [root] if root.is_file() else sorted(root.rglob("*"))
        for path in files:
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(REPOSITORY)).encode() + b"\0")
                digest.update(path.read_bytes())
    return digest.hexdigest()


def pip_install(venv: Path, *options: str) -> None:
    """pip install this source tree into `venv`, from a copy: a build in the tree would leave
    build/lib behind, whose stale files (a module since moved) a later build would ship."""
    log = venv.parent / "pip.log"
    with tempfile.TemporaryDirectory(prefix="brev-source-") as copy:
        source = Path(copy) / "brev"
        shutil.copytree(REPOSITORY, source, ignore=NOT_SOURCE, symlinks=True)
        with log.open("ab") as output:
            done = subprocess.run(
                [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", *options, "."],
                cwd=source,
                stdout=output,
                stderr=subprocess.STDOUT,
                timeout=PIP_TIMEOUT_S,
                check=False,
            )
    if done.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        raise harness.Abort(f"pip install {' '.join(options)} . failed ({log}):\n{tail}")


def regular_install() -> Path:
    """The bin/ of a venv where brev is `pip install .`-ed from this source tree, as it is now."""
    dependencies = source_digest([REPOSITORY / "pyproject.toml", REPOSITORY / "setup.py"])
    source = source_digest([REPOSITORY / d for d in ("brev", "providers", "migrations")])
    stamps = REGULAR_VENV.parent / "dependencies", REGULAR_VENV.parent / "source"
    python = REGULAR_VENV / "bin" / "python"
    fresh = not python.exists() or _read(stamps[0]) != dependencies
    if fresh:
        print(f"building the regular install in {REGULAR_VENV} (once, about 40 s) ...")
        shutil.rmtree(REGULAR_VENV, ignore_errors=True)
        REGULAR_VENV.parent.mkdir(parents=True, exist_ok=True)
        (REGULAR_VENV.parent / "pip.log").unlink(missing_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(REGULAR_VENV)], check=True)
        pip_install(REGULAR_VENV)
    elif _read(stamps[1]) != source:
        print("reinstalling brev in the regular install (the source changed) ...")
        pip_install(REGULAR_VENV, "--no-deps", "--force-reinstall")
    stamps[0].write_text(dependencies)
    stamps[1].write_text(source)
    return REGULAR_VENV / "bin"


def _read(path: Path) -> str | None:
    return path.read_text() if path.exists() else None


def editable_environment(env: dict[str, str], cwd: Path) -> tuple[dict[str, str], str]:
    """The environment that times this source tree with the editable venv, and a note: a venv
    made by another checkout (a worktree's) imports that checkout's brev unless this one comes
    first on PYTHONPATH."""
    where = subprocess.run(
        [str(EDITABLE_BIN / "python"), "-c", "import brev; print(brev.__file__)"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()
    if Path(where).resolve().is_relative_to(REPOSITORY):
        return env, ""
    return {
        **env,
        "PYTHONPATH": str(REPOSITORY),
    }, f" (PYTHONPATH={REPOSITORY}: it installs {where})"


# -- the plane's rows -------------------------------------------------------------------------


def seed_instances(home: Path, count: int) -> None:
    """`count` running instances in the default org, created by its admin, written directly;
    SHOWN is one of them, with a plan, two attempts, events and eight GPUs."""
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
                shown = number == 0
                instances.append(
                    Instance(
                        org_id=org_id,
                        name=SHOWN
                        if shown
                        else f"{rng.choice(TEAMS)}-{model.split('-')[0].lower()}-{number:04d}",
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
                        plan=_plan(provider, region, kind, model, gpus, price) if shown else [],
                        attempt=1 if shown else 0,
                        telemetry={"gpus": [_gpu(i) for i in range(gpus)]} if shown else {},
                    )
                )
            session.add_all(instances)
            session.flush()
            shown_instance = instances[0]
            for minutes, action, details in (
                (30, "instance.created", {"gpu": shown_instance.gpu_spec}),
                (29, "instance.attempt_failed", {"attempt": 1, "reason": "no capacity"}),
                (28, "instance.provisioned", {"attempt": 2, "machine": "i-0123"}),
                (20, "instance.running", {}),
            ):
                session.add(
                    Event(
                        org_id=org_id,
                        actor_id=admin_id,
                        action=action,
                        object_type="instance",
                        object_id=shown_instance.id,
                        object_name=SHOWN,
                        details=details,
                        created_at=now - timedelta(minutes=minutes),
                    )
                )
    finally:
        engine.dispose()


def _plan(
    provider: str, region: str, kind: str, model: str, gpus: int, price: float
) -> list[dict[str, object]]:
    placement = {
        "provider": provider,
        "instance_type": kind,
        "region": region,
        "zone": f"{region}-a",
        "spot": False,
        "gpu_model": model,
        "gpu_count": gpus,
        "price_per_hour": price,
        "node": None,
    }
    return [placement, {**placement, "zone": f"{region}-b"}]


def _gpu(index: int) -> dict[str, object]:
    return {
        "index": index,
        "name": "NVIDIA A100-SXM4-80GB",
        "utilization_gpu_pct": 90.0 + index,
        "memory_used_mib": 60_000.0,
        "memory_total_mib": 81_920.0,
        "temperature_c": 60.0 + index,
        "power_draw_w": 350.0,
        "power_limit_w": 400.0,
        "processes": [{"pid": 1000 + index, "name": "/usr/bin/python3"}],
    }


# -- what is timed ----------------------------------------------------------------------------


def commands() -> dict[str, list[str]]:
    """The `brev` command lines timed, by row name."""
    return {
        "brev --help": ["--help"],
        "brev search --help": ["search", "--help"],
        "brev ls": ["ls"],
        "brev search a100": ["search", "a100"],
        f"brev show {SHOWN}": ["show", SHOWN],
    }


def check_outputs(bin_dir: Path, env: dict[str, str], cwd: Path) -> dict[str, bool]:
    """Each command prints what it should (ls: a header and one line per instance); whether
    each took its fast path, i.e. never imported typer."""
    brev = str(bin_dir / "brev")

    def output(args: list[str]) -> str:
        return subprocess.run(
            [brev, *args], env=env, cwd=cwd, capture_output=True, timeout=60, check=True
        ).stdout.decode()

    lines = output(["ls"]).splitlines()
    if len(lines) != INSTANCES + 1 or not lines[0].startswith("NAME"):
        raise harness.Abort(f"brev ls printed {len(lines)} lines, expected {INSTANCES + 1}")
    if not output(["search", "a100"]).startswith("PROVIDER"):
        raise harness.Abort("brev search a100 printed no offers")
    if "instance.provisioned" not in output(["show", SHOWN]):
        raise harness.Abort(f"brev show {SHOWN} printed no events")
    fast = {}
    for name, args in commands().items():
        done = subprocess.run(
            [str(bin_dir / "python"), "-X", "importtime", brev, *args],
            env=env,
            cwd=cwd,
            capture_output=True,
            timeout=60,
            check=True,
        )
        imported = [line.rsplit(b"|", 1)[-1].strip() for line in done.stderr.splitlines()]
        fast[name] = b"typer" not in imported
    return fast


def runners_for(
    install: str, bin_dir: Path, env: dict[str, str], cwd: Path
) -> dict[str, Callable[[], float]]:
    python, brev = bin_dir / "python", bin_dir / "brev"
    runners = {
        f"{install}:{BASELINE}": harness.command_runner([python, "-c", "pass"], env, cwd),
        f"{install}:python -S -c pass": harness.command_runner(
            [python, "-S", "-c", "pass"], env, cwd
        ),
    }
    for name, args in commands().items():
        runners[f"{install}:{name}"] = harness.command_runner([brev, *args], env, cwd)
    if install == "regular":
        full = {**env, "BREV_FAST": "0"}
        for name in ("brev --help", "brev search a100"):
            runners[f"{install}:{name}{FULL_CLI}"] = harness.command_runner(
                [brev, *commands()[name]], full, cwd
            )
    return runners


# -- the report -------------------------------------------------------------------------------


def verdict(install: str, name: str, ratio: float) -> str:
    target = TARGETS.get(name) if install == "regular" else None
    if target is None:
        return ""
    return f"<= {target:g}x {'PASS' if ratio <= target else 'MISS'}"


def report(
    timings: harness.Timings,
    rounds: int,
    runs: int,
    installs: dict[str, Path],
    fast: dict[str, dict[str, bool]],
    response_bytes: int,
    notes: dict[str, str],
) -> None:
    print(harness.python_line())
    print(harness.machine_line())
    for install, bin_dir in installs.items():
        print(f"{install:<8} {bin_dir.parent}{notes.get(install, '')}")
    print(
        f"data     {INSTANCES} instances in org '{ORG}', "
        f"GET /instances body {response_bytes / 1024:.0f} KiB"
    )
    print(harness.rounds_line(rounds, runs))
    width = max(len(name) for name in timings.samples) + 7
    first_baseline = timings.median(f"{next(iter(installs))}:{BASELINE}")
    for install in [*installs, "server"]:
        baseline = (
            first_baseline if install == "server" else timings.median(f"{install}:{BASELINE}")
        )
        print()
        print(
            harness.table_header(
                f"{install} install" if install in installs else install, width, "x python"
            )
        )
        for row in (row for row in timings.samples if row.startswith(f"{install}:")):
            name = row.split(":", 1)[1]
            took = fast.get(install, {}).get(name)
            label = name if took is None else f"{name} [{'fast' if took else 'full'}]"
            median = timings.median(row)
            print(
                f"{label:<{width}}  {median:>9.1f}  {timings.p90(row):>8.1f}  "
                f"{median / baseline:>7.2f}x  {verdict(install, name, median / baseline)}".rstrip()
            )
    print()
    print("x python: median / median of that install's `python -c pass` (same rounds);")
    print("the server rows divide by the first install's. [fast]: the command never imported")
    print("typer (brev.cli.fast, brev.cli.listing); [full]: it went through the full CLI.")
    print("server rows: the request alone, in this process, on a kept-alive httpx connection.")


def parse_arguments() -> tuple[int, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--runs", type=harness.positive_runs, default=15, help="measured rounds (default 15)"
    )
    parser.add_argument(
        "--install",
        choices=["regular", "editable", "both"],
        default="both",
        help="which install's CLI to time (default both)",
    )
    arguments = parser.parse_args()
    installs = ["regular", "editable"] if arguments.install == "both" else [arguments.install]
    return arguments.runs, installs


def main() -> None:
    runs, chosen = parse_arguments()
    harness.exit_on_sigterm()
    harness.require_brev()
    installs = {
        install: regular_install() if install == "regular" else EDITABLE_BIN for install in chosen
    }
    home = Path(tempfile.mkdtemp(prefix="brev-bench-"))
    try:
        # The seeded instances stand for no real machine: keep the reconciler off them.
        with harness.control_plane(home, env={"BREV_RECONCILE": "0"}) as plane:
            seed_instances(home, INSTANCES)
            env = plane.cli_environment(ORG)
            envs, notes = dict.fromkeys(installs, env), {}
            if "editable" in installs:
                envs["editable"], notes["editable"] = editable_environment(env, home)
            fast = {
                install: check_outputs(bin_dir, envs[install], home)
                for install, bin_dir in installs.items()
            }
            prefix = f"/api/v1/orgs/{ORG}"
            with plane.http() as client:
                response_bytes = len(client.get(f"{prefix}/instances").content)
                runners: dict[str, Callable[[], float]] = {}
                for install, bin_dir in installs.items():
                    runners.update(runners_for(install, bin_dir, envs[install], home))
                for path, params in (
                    ("/instances", None),
                    ("/offers", {"gpu": "a100", "spot": "false", "sort": "price"}),
                    (f"/instances/{SHOWN}", None),
                ):
                    runners[f"server:GET {path}"] = harness.http_runner(
                        client, prefix + path, params
                    )
                timings, rounds = harness.measure(runners, runs, MEASURE_BUDGET_S)
        report(timings, rounds, runs, installs, fast, response_bytes, notes)
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
