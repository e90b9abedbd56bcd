"""`brev run` end to end on a registered node: a real plane, a real sshd box with the real
agent, the real ssh. Exit codes pass through, output streams, --out comes back, the instance
goes whatever happens, and brev's own failures have their own codes."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from brev.cli import exit_codes
from tests.conftest import BREV
from tests.run_plane import RunPlane, run_plane, wait_for_line

__all__ = ["run_plane"]
pytestmark = pytest.mark.slow


def test_echo_hi_passes_output_and_exit_code_and_gives_the_gpu_back(
    run_plane: RunPlane, tmp_path: Path
) -> None:
    result = run_plane.run("h200", "--no-sync", "--", "echo hi; echo oops >&2")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hi\n"
    assert "oops" in result.stderr and "Traceback" not in result.stderr
    assert "brev: created" in result.stderr and "brev: deleted" in result.stderr
    run_plane.assert_nothing_left()


@pytest.mark.parametrize(
    ("command", "code"),
    [("exit 3", 3), ("no-such-command-here", 127), ("kill -9 $$", 137), ("exit 255", 255)],
)
def test_the_command_exit_code_is_brevs(run_plane: RunPlane, command: str, code: int) -> None:
    result = run_plane.run("--no-sync", "--", command)
    assert result.returncode == code, result.stderr
    run_plane.assert_nothing_left()


def test_gpus_and_env_reach_the_command(run_plane: RunPlane) -> None:
    result = run_plane.run(
        "h200:2",
        "--no-sync",
        "--env",
        "GREETING=hello world",
        "--",
        'echo "$GREETING|$CUDA_VISIBLE_DEVICES"',
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello world|0,1\n"


def test_json_events_and_step_summary(run_plane: RunPlane, tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    result = run_plane.run("--no-sync", "--json", "--", "exit 3", GITHUB_STEP_SUMMARY=str(summary))
    assert result.returncode == 3
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    names = [e["event"] for e in events]
    for expected in ("created", "ready", "started", "exited", "deleted"):
        assert expected in names, names
    assert next(e for e in events if e["event"] == "exited")["exit_code"] == 3
    assert "cost_usd" in next(e for e in events if e["event"] == "deleted")
    text = summary.read_text()
    assert "### brev run" in text and "| exit code | 3 |" in text and "node gpu-box" in text


def test_sigterm_mid_run_reaches_the_command_and_deletes(
    run_plane: RunPlane, tmp_path: Path
) -> None:
    marker = tmp_path / "got-term"
    script = f"trap 'echo term > {marker}; exit 5' TERM; echo started; while :; do sleep 0.1; done"
    process = run_plane.start_run("--no-sync", "--", script)
    wait_for_line(process, "brev: running")
    assert process.stdout is not None
    assert process.stdout.readline() == "started\n"
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == exit_codes.SIGTERM
    assert marker.read_text() == "term\n"
    run_plane.assert_nothing_left()


def test_a_dropped_connection_is_its_own_code_and_deletes(run_plane: RunPlane) -> None:
    # A socket folder of this test's own (short: a unix socket's path has ~100 bytes), so the
    # kill below cannot reach another test's run on a parallel worker.
    sockets = tempfile.mkdtemp(prefix="drop-", dir="/tmp")
    process = run_plane.start_run("--no-sync", "--", "echo started; sleep 60", TMPDIR=sockets)
    assert process.stdout is not None
    assert process.stdout.readline() == "started\n"
    # The connection is the run's ControlMaster (ssh names it "ssh: SOCKET [mux]"); the
    # command's own ssh is a client of it and ends with it.
    masters = subprocess.run(
        ["pgrep", "-f", rf"{sockets}/brev-ssh-.*master \[mux\]"],
        capture_output=True,
        text=True,
    ).stdout.split()
    assert masters
    subprocess.run(["kill", "-9", *masters], check=False)
    assert process.wait(timeout=60) == exit_codes.CONNECTION_LOST
    assert process.stderr is not None
    assert "connection was lost" in process.stderr.read()
    run_plane.assert_nothing_left()
    shutil.rmtree(sockets, ignore_errors=True)


def test_plane_unreachable_is_one_line(run_plane: RunPlane) -> None:
    result = run_plane.run("--no-sync", "--", "true", BREV_API_URL="http://127.0.0.1:9")
    assert result.returncode == exit_codes.BREV_ERROR
    assert result.stderr.count("\n") == 1 and "cannot reach" in result.stderr


def test_no_capacity_has_its_own_code_and_leaves_nothing(run_plane: RunPlane) -> None:
    holder = run_plane.start_run("h200:2", "--no-sync", "--", "echo started; sleep 30")
    assert holder.stdout is not None
    assert holder.stdout.readline() == "started\n"
    try:
        result = run_plane.run("h200", "--provider", "local", "--no-sync", "--", "true")
        assert result.returncode == exit_codes.NO_CAPACITY, result.stderr
        assert "no capacity" in result.stderr
        assert len(run_plane.live_instances()) == 1
    finally:
        holder.send_signal(signal.SIGINT)
        assert holder.wait(timeout=60) == exit_codes.SIGINT
    run_plane.assert_nothing_left()


def test_usage_errors_exit_2_and_rent_nothing(run_plane: RunPlane) -> None:
    bad = (["--"], ["a100"], ["--timeout", "soon", "--", "true"], ["--env", "1X=2", "--", "true"])
    for args in bad:
        result = run_plane.run(*args)
        assert result.returncode == exit_codes.USAGE, (args, result.stderr)
        assert "Traceback" not in result.stderr
    result = run_plane.run("a10O", "--no-sync", "--", "true")
    assert result.returncode == exit_codes.USAGE
    assert "did you mean" in result.stderr
    assert run_plane.live_instances() == []


def test_on_an_existing_instance_keeps_it(run_plane: RunPlane) -> None:
    from tests.cli_runner import brev, ok

    ok(brev("create", "cpu", "--name", "dev", "--timeout", "60s", env=run_plane.env()))
    try:
        result = run_plane.run("--on", "dev", "--no-sync", "--", "echo on-dev")
        assert result.returncode == 0, result.stderr
        assert result.stdout == "on-dev\n"
        assert "dev" in run_plane.live_instances()
    finally:
        ok(brev("delete", "dev", "-y", env=run_plane.env()))
    run_plane.assert_nothing_left()


def test_timing_of_echo_hi_on_a_node(run_plane: RunPlane) -> None:
    """Not a speed test (bench/run.py is): the whole run finishes in bounded time."""
    started = time.monotonic()
    result = run_plane.run("--no-sync", "--", "echo hi")
    assert result.returncode == 0 and result.stdout == "hi\n"
    assert time.monotonic() - started < 30


def test_the_ttl_ends_a_run_with_its_own_code(run_plane: RunPlane) -> None:
    started = time.monotonic()
    result = run_plane.run("--ttl", "3s", "--no-sync", "--", "sleep 60")
    assert result.returncode == exit_codes.TIMEOUT, result.stderr
    assert "TTL" in result.stderr
    assert time.monotonic() - started < 30
    run_plane.assert_nothing_left()


def test_a_missing_out_path_warns_and_keeps_the_exit_code(
    run_plane: RunPlane, tmp_path: Path
) -> None:
    result = brev_in(
        run_plane,
        tmp_path,
        "--no-sync",
        "--out",
        "made.txt",
        "--out",
        "absent.txt",
        "--",
        "echo result > made.txt; exit 4",
    )
    assert result.returncode == 4, result.stderr
    assert (tmp_path / "made.txt").read_text() == "result\n"
    assert "absent.txt" in result.stderr and "warning" in result.stderr
    run_plane.assert_nothing_left()


def brev_in(
    run_plane: RunPlane, cwd: Path, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    process = run_plane.start_run(*args, cwd=cwd, **env)
    out, err = process.communicate(timeout=90)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def test_sync_sends_the_directory_honouring_ignores_and_out_comes_back(
    run_plane: RunPlane, tmp_path: Path
) -> None:
    work = tmp_path / "project"
    (work / "src").mkdir(parents=True)
    (work / "src" / "test.sh").write_text("echo tested > results/report.txt\n")
    (work / ".gitignore").write_text("*.log\n")
    (work / ".brevignore").write_text("data/\n")
    (work / "debug.log").write_text("not sent")
    (work / "data").mkdir()
    (work / "data" / "big.bin").write_text("not sent")
    result = brev_in(
        run_plane,
        work,
        "--out",
        "results",
        "--out",
        "listing.txt:out/listing.txt",
        "--",
        "mkdir -p results; sh src/test.sh; find . -type f | sort > listing.txt",
    )
    assert result.returncode == 0, result.stderr
    assert (work / "results" / "report.txt").read_text() == "tested\n"
    listing = (work / "out" / "listing.txt").read_text().split()
    assert "./src/test.sh" in listing and "./.gitignore" in listing
    assert "./debug.log" not in listing and "./data/big.bin" not in listing
    run_plane.assert_nothing_left()


def test_keep_leaves_the_instance_without_a_lease(run_plane: RunPlane) -> None:
    from tests.cli_runner import brev, ok

    result = run_plane.run("--keep", "--name", "kept", "--no-sync", "--", "echo kept")
    assert result.returncode == 0, result.stderr
    assert "brev shell kept" in result.stderr
    [instance] = run_plane.client.instances()
    assert instance.name == "kept" and instance.run_lease_until is None
    ok(brev("delete", "kept", "-y", env=run_plane.env()))
    run_plane.assert_nothing_left()


def test_a_second_signal_skips_to_deletion(run_plane: RunPlane) -> None:
    process = run_plane.start_run("--no-sync", "--", "trap '' TERM INT; echo started; sleep 60")
    assert process.stdout is not None
    assert process.stdout.readline() == "started\n"
    process.send_signal(signal.SIGTERM)
    wait_for_line(process, "forwarding the signal")
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == exit_codes.SIGTERM
    assert time.monotonic() - started < 8  # not the 10 s grace
    run_plane.assert_nothing_left()


def test_on_with_no_sync_takes_the_fast_path_and_cleans_up(run_plane: RunPlane) -> None:
    from tests.cli_runner import brev, ok

    ok(brev("create", "cpu", "--name", "quick", "--timeout", "60s", env=run_plane.env()))
    runs = run_plane.box.node_home / "instances" / "quick" / "brev-runs"
    try:
        for fast in ("1", "0"):  # the fast path, and the full CLI: the same behaviour
            hi = run_plane.run(
                "--on", "quick", "--no-sync", "--env", "X=1", "--", "echo $X", BREV_FAST=fast
            )
            assert (hi.returncode, hi.stdout) == (0, "1\n"), hi.stderr
            assert ("is ready" in hi.stderr) == (fast == "0")  # the fast path says nothing
            assert (
                run_plane.run(
                    "--on", "quick", "--no-sync", "--", "exit 9", BREV_FAST=fast
                ).returncode
                == 9
            )
            assert (
                run_plane.run(
                    "--on=quick", "--no-sync", "--", "exit 255", BREV_FAST=fast
                ).returncode
                == 255
            )
            assert not runs.exists() or list(runs.iterdir()) == []
        process = run_plane.start_run(
            "--on", "quick", "--no-sync", "--", "trap 'exit 6' INT; echo started; sleep 60 & wait"
        )
        assert process.stdout is not None
        assert process.stdout.readline() == "started\n"
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == exit_codes.SIGINT
        assert "quick" in run_plane.live_instances()
    finally:
        ok(brev("delete", "quick", "-y", env=run_plane.env()))
    run_plane.assert_nothing_left()


def test_100_mb_of_output_streams_with_bounded_memory(run_plane: RunPlane) -> None:
    """The command's output never passes through Python: brev's peak RSS stays what it is
    without any output (its children, ssh included, are counted too)."""
    probe = (
        "import resource, subprocess, sys\n"
        "done = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)\n"
        "print(len(done.stdout), done.returncode,"
        " resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)\n"
    )
    size = 100_000_000
    command = [BREV, "run", "--no-sync", "--", f"head -c {size} /dev/zero"]
    done = subprocess.run(
        [sys.executable, "-c", probe, *command],
        env=run_plane.env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    length, code, peak_mib = (int(word) for word in done.stdout.split())
    assert (length, code) == (size, 0), done.stderr
    assert peak_mib < 100, f"brev peaked at {peak_mib} MiB for {size // 10**6} MB of output"
    run_plane.assert_nothing_left()


def test_a_run_scoped_token_over_its_limit_is_refused_naming_it(run_plane: RunPlane) -> None:
    from tests.cli_runner import brev, ok

    secret = ok(
        brev(
            "token",
            "create",
            "--name",
            "ci-small",
            "--scope",
            "run",
            "--max-gpus",
            "1",
            env=run_plane.env(),
        )
    ).stdout.strip()
    result = run_plane.run("h200:2", "--no-sync", "--", "true", BREV_TOKEN=secret)
    assert result.returncode == exit_codes.BREV_ERROR, result.stderr
    assert "max_gpus" in result.stderr and "Traceback" not in result.stderr
    within = run_plane.run("h200", "--no-sync", "--", "echo within", BREV_TOKEN=secret)
    assert (within.returncode, within.stdout) == (0, "within\n"), within.stderr
    run_plane.assert_nothing_left()


def test_no_ssh_on_path_is_one_error_before_anything_is_rented(
    run_plane: RunPlane, tmp_path: Path
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(sys.executable)
    result = run_plane.run("--no-sync", "--", "true", PATH=str(bin_dir))
    assert result.returncode == exit_codes.BREV_ERROR, result.stderr
    assert "no `ssh` on PATH" in result.stderr and "Traceback" not in result.stderr
    assert run_plane.live_instances() == []
