"""`brev run` against a real plane driving moto's EC2: what must never leak a paid machine.
moto's machines never become reachable (no sshd, no agent), so each run here waits, and is
cancelled, killed, timed out or retried while it waits. Every test counts machines in moto."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator

import pytest

from brev.cli import exit_codes
from tests.conftest import BREV
from tests.moto import MotoServer
from tests.real_plane import live_ids
from tests.run_plane import wait_for_line
from tests.test_cli_lifecycle import User, plane, user

__all__ = ["plane", "user"]
pytestmark = pytest.mark.slow

A100 = ("a100:8", "--provider", "aws", "--region", "us-east-1", "--no-sync")
GITHUB = {
    "GITHUB_ACTIONS": "true",
    "GITHUB_RUN_ID": "4242",
    "GITHUB_RUN_ATTEMPT": "1",
    "GITHUB_JOB": "gpu-tests",
}


@pytest.fixture
def aws(user: User) -> Iterator[User]:
    user.add_aws()
    yield user


def start(user: User, *args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [BREV, "run", *args],
        env=user.env(**env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_machines(moto: MotoServer, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while len(live_ids(moto)) != count:
        if time.monotonic() > deadline:
            pytest.fail(f"moto holds {live_ids(moto)}, not {count} machine(s)")
        time.sleep(0.2)


def assert_nothing_left(user: User, timeout: float = 60) -> None:
    wait_machines(user.moto, 0, timeout)
    deadline = time.monotonic() + timeout
    while user.client.instances():
        if time.monotonic() > deadline:
            pytest.fail(f"still listed: {[i.name for i in user.client.instances()]}")
        time.sleep(0.2)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_cancel_while_provisioning_deletes_the_machine(aws: User, signum: int, code: int) -> None:
    process = start(aws, *A100, "--", "true")
    wait_for_line(process, "brev: created")
    wait_machines(aws.moto, 1)
    process.send_signal(signum)
    assert process.wait(timeout=60) == code
    assert_nothing_left(aws)


def test_a_cancel_right_after_start_leaves_nothing(aws: User) -> None:
    process = start(aws, *A100, "--", "true")
    time.sleep(0.3)  # mid start-up or mid create request: whichever it is, nothing may stay
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) in (exit_codes.SIGTERM, -signal.SIGTERM)
    assert_nothing_left(aws)


def test_timeout_while_waiting_is_its_own_code_and_deletes(aws: User) -> None:
    result = subprocess.run(
        [BREV, "run", *A100, "--timeout", "3s", "--", "true"],
        env=aws.env(),
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == exit_codes.TIMEOUT, result.stderr
    assert "--timeout" in result.stderr
    assert_nothing_left(aws)


def test_sigkill_of_brev_run_the_plane_deletes_when_the_lease_lapses(aws: User) -> None:
    process = start(aws, *A100, "--", "true", BREV_RUN_LEASE="5s")
    wait_for_line(process, "brev: created")
    wait_machines(aws.moto, 1)
    process.kill()
    process.wait()
    [instance] = aws.client.instances()
    assert instance.run_lease_until is not None
    assert_nothing_left(aws, timeout=60)


def test_a_retried_step_reuses_the_first_rental(aws: User) -> None:
    first = start(aws, *A100, "--", "true", **GITHUB)
    wait_for_line(first, "brev: created")
    wait_machines(aws.moto, 1)
    first.kill()  # the runner died; the step is retried with the same CI environment
    first.wait()
    second = start(aws, *A100, "--", "true", **GITHUB)
    wait_for_line(second, "brev: reusing")
    assert len(aws.client.instances()) == 1
    wait_machines(aws.moto, 1)
    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=60) == exit_codes.SIGTERM
    assert_nothing_left(aws)
    # A later step of the same job, after the first rental ended, rents afresh.
    third = start(aws, *A100, "--", "true", **GITHUB)
    wait_for_line(third, "brev: created")
    third.send_signal(signal.SIGTERM)
    assert third.wait(timeout=60) == exit_codes.SIGTERM
    assert_nothing_left(aws)


def test_unknown_gpu_is_a_usage_error_and_rents_nothing(aws: User) -> None:
    result = subprocess.run(
        [BREV, "run", "a10O", "--provider", "aws", "--no-sync", "--", "true"],
        env=aws.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == exit_codes.USAGE
    assert "did you mean" in result.stderr and "Traceback" not in result.stderr
    assert live_ids(aws.moto) == [] and aws.client.instances() == []
