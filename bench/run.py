"""What `brev run` costs where a CI job waits: the whole `brev run -- echo hi` on a registered
node (rent, sync a small project, run, delete) against its 2 s target, and `brev run --on NAME
--no-sync -- true` against plain `ssh -F ssh_config NAME true` (target: at most 1.5x).

    python bench/run.py [--runs N]

Run it with a regular install's Python (`pip install '.[dev]'` into a fresh venv): an editable
install's import hook slows every start-up. Sets up a `brev server` (SQLite) whose node agents
report at the default 10 s, so a run that waited for a report would show it; a private sshd
on 127.0.0.1 as a node with two GPUs (tests/sshbox.py), an instance `train` (one GPU) for
--on. The echo runs take the other GPU, so each rents and gives back. Round-robin after two
warm-up rounds; prints medians, p90s and ratios beside `python -c pass` and plain ssh, with
PASS/MISS. Bounded (BUDGET_S) and cleaned up however it ends; exit 0 on PASS or MISS, 1 when
it could not measure.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # mypy roots modules at the repository; see bench/harness.py
    from bench import harness, tunnel
else:
    import harness
    import tunnel

PYTHON, BREV, Abort = harness.PYTHON, harness.BREV, harness.Abort
NAME = tunnel.NAME
BUDGET_S = 300.0
PLANE_ENV = {"BREV_RECONCILE": "1", "BREV_NODE_INSTALL_WAIT": "30"}  # agents at the default pace
TARGET_ECHO_S = 2.0
TARGET_ON = 1.5

BARE = "python -c pass"
PLAIN_SSH = f"ssh -F ssh_config {NAME} true"
ON = f"brev run --on {NAME} --no-sync -- true"
ECHO = "brev run -- echo hi"


def project(root: Path) -> Path:
    """A small project to sync: a few sources, an ignored build folder."""
    work = root / "project"
    (work / "src").mkdir(parents=True)
    (work / "build").mkdir()
    for n in range(20):
        (work / "src" / f"module_{n}.py").write_text(f"VALUE = {n}\n" * 50)
    (work / "build" / "artifact.bin").write_bytes(b"\0" * 1_000_000)
    (work / ".gitignore").write_text("build/\n")
    return work


def report(timings: harness.Timings, rounds: int, runs: int) -> None:
    width = max(len(name) for name in (BARE, PLAIN_SSH, ON, ECHO))
    bare, ssh = timings.median(BARE), timings.median(PLAIN_SSH)
    on_ratio = timings.median(ON) / ssh
    echo_s = timings.median(ECHO) / 1000
    print("bench/run.py: brev run against plain ssh and Python start-up")
    print(harness.python_line())
    print(harness.machine_line())
    print(harness.rounds_line(rounds, runs))
    print()
    print(harness.table_header("command", width, "x ssh"))
    print(timings.row(BARE, width, ssh, "speed of light: Python start-up"))
    print(timings.row(PLAIN_SSH, width, ssh, "baseline"))
    on_verdict = "PASS" if on_ratio <= TARGET_ON else "MISS"
    print(timings.row(ON, width, ssh, f"<= {TARGET_ON}x ssh: {on_verdict}"))
    echo_verdict = "PASS" if echo_s < TARGET_ECHO_S else "MISS"
    print(timings.row(ECHO, width, ssh, f"< {TARGET_ECHO_S:.0f} s: {echo_verdict}"))
    print()
    print(f"`{ECHO}`: {echo_s:.2f} s (rent a GPU on the node, sync, run, delete), "
          f"{timings.median(ECHO) / bare:.1f}x Python start-up")  # fmt: skip


def main() -> int:
    runs = harness.parse_runs(__doc__)
    harness.exit_on_sigterm("bench/run.py: terminated; cleaning up")
    harness.require_brev()
    if shutil.which("ssh") is None:
        print("no `ssh` on PATH: this benchmark compares against OpenSSH", file=sys.stderr)
        return 1

    def out_of_time(*_: object) -> None:
        raise Abort(f"the benchmark ran past its {BUDGET_S:.0f} s budget")

    signal.signal(signal.SIGALRM, out_of_time)
    signal.alarm(int(BUDGET_S))
    root = Path(tempfile.mkdtemp(prefix="brev-bench-run-"))
    try:
        with ExitStack() as stack:
            server, _box, env = stack.enter_context(
                tunnel.instance_on_a_box(root, plane_env=PLANE_ENV, gpu="h200:1")
            )
            config = str(server.home / "ssh_config")
            work = project(root)
            runners: dict[str, Callable[[], float]] = {
                BARE: harness.command_runner([PYTHON, "-c", "pass"], env, root),
                PLAIN_SSH: harness.command_runner(["ssh", "-F", config, NAME, "true"], env, root),
                ON: harness.command_runner(
                    [BREV, "run", "--on", NAME, "--no-sync", "--", "true"], env, root
                ),
                ECHO: harness.command_runner([BREV, "run", "--", "echo", "hi"], env, work),
            }
            timings, rounds = harness.measure(runners, runs, budget_s=120.0)
        signal.alarm(0)
        report(timings, rounds, runs)
        return 0
    except (Abort, RuntimeError, subprocess.TimeoutExpired, OSError) as error:
        print(f"bench/run.py: could not measure: {error}", file=sys.stderr)
        return 1
    finally:
        signal.alarm(0)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
