"""The real `brev` CLI against a real `brev server` whose reconciler runs (every 0.2 s), with
moto's EC2 server as AWS: provider credentials, then create, ls, show, stop, start, delete, and
the mistakes a person makes on the way. Every test ends with moto and the database agreeing.

One server for the module; each test has an org, a user and a CLI home of its own, and resets
moto first (so counts of machines are the test's own).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from brev import api
from brev.client import BrevClient
from brev.providers.base import TAG_INSTANCE_ID, TAG_MANAGED
from tests.cli_runner import brev, ok, one_line_error
from tests.conftest import LiveServer
from tests.moto import MotoServer
from tests.real_plane import (
    CLI_TIMEOUT_SECONDS,
    instance_count,
    instance_status,
    live_ids,
    start_plane,
    stop_plane,
    the_machine_of,
    untracked,
    wait_for,
    without_aws,
)

pytestmark = pytest.mark.slow

A100_8_AWS = ("a100:8", "--provider", "aws", "--region", "us-east-1")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_plane(tmp_path_factory.mktemp("cli-lifecycle") / "home")
    yield server
    stop_plane(server)


@dataclass
class User:
    """The admin of an org of their own on the module's server, with a CLI home of their own."""

    server: LiveServer
    moto: MotoServer
    org: str
    token: str
    home: Path
    client: BrevClient

    def env(self, **extra: str) -> dict[str, str]:
        login = {"BREV_API_URL": self.server.url, "BREV_TOKEN": self.token, "BREV_ORG": self.org}
        return {**without_aws(self.server.env(BREV_HOME=str(self.home), **login)), **extra}

    def brev(self, *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
        return brev(*args, env=self.env(**extra_env), timeout=CLI_TIMEOUT_SECONDS)

    def add_aws(self) -> None:
        self.client.add_provider("aws", self.moto.config())

    def wait_status(self, name: str, status: str | None) -> None:
        """Until `brev ls` shows `name` in `status` (None: until it no longer lists it); fails
        at once if it fails instead."""
        seen: list[str | None] = []

        def arrived() -> bool:
            seen.append(instance_status(self.client, name))
            if seen[-1] == "failed":
                pytest.fail(f"{name} failed: {self.client.instance(name).status_reason}")
            return seen[-1] == status

        what = f"{name} to be {status}" if status else f"{name} to leave `brev ls`"
        wait_for(self.server, what, arrived, describe=lambda: f"status {seen[-1:]}")

    def ls(self) -> list[dict[str, Any]]:
        listed: list[dict[str, Any]] = json.loads(ok(self.brev("ls", "--json")).stdout)
        return listed

    def assert_nothing_created(self) -> None:
        """No row, not even a deleted one (which a machine could still carry), and no machine."""
        assert self.ls() == []
        assert instance_count(self.server.home, self.org) == 0
        assert live_ids(self.moto) == []


@pytest.fixture
def user(plane: LiveServer, moto_server: MotoServer, tmp_path: Path) -> Iterator[User]:
    moto_server.reset()
    org = unique("org")
    with BrevClient(plane.url, plane.admin_token) as admin:
        admin.create_org(org)
        added = admin.add_member(f"{unique('user')}@example.com", role=api.Role.ADMIN, org=org)
    assert added.login_token is not None
    client = BrevClient(plane.url, added.login_token, org=org)
    person = User(plane, moto_server, org, added.login_token, tmp_path / "cli-home", client)
    yield person
    # Leave nothing for the reconciler to drive into moto during the next test.
    try:
        for instance in client.instances():
            client.delete_instance(instance.name)
        deadline = time.monotonic() + 60
        while client.instances() and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        client.close()


# -- provider credentials ---------------------------------------------------------------


def test_provider_add_checks_the_keys_and_never_shows_the_secret(
    user: User, tmp_path: Path
) -> None:
    secret = f"secret-{uuid.uuid4().hex}"
    keys = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": secret}
    added = ok(user.brev("provider", "add", "aws", "--endpoint-url", user.moto.url, **keys))
    assert added.stdout == ""
    assert "Added aws credentials" in added.stderr and user.org in added.stderr

    listed = ok(user.brev("provider", "ls", "--json"))
    [config] = json.loads(listed.stdout)
    assert set(config) == {"provider", "identity", "added_by", "created_at"}
    assert config["provider"] == "aws"
    assert config["identity"].startswith("account ") and "arn:aws" in config["identity"]
    assert config["identity"] in added.stderr
    table = ok(user.brev("provider", "ls"))
    assert table.stdout.splitlines()[0].split() == ["PROVIDER", "IDENTITY", "ADDED", "BY", "AGE"]
    assert config["identity"] in table.stdout
    for output in (added, listed, table):
        assert secret not in output.stdout + output.stderr
    # Nor in the server's log, nor in clear in its database.
    assert secret not in user.server.log.read_text()
    for stored in user.server.home.glob("brev.db*"):
        assert secret.encode() not in stored.read_bytes()

    # No keys in the environment, no profile: one line saying so, nothing changed.
    empty_home = tmp_path / "empty-home"
    empty_home.mkdir()
    missing = empty_home / "no-such-credentials"
    line = one_line_error(
        user.brev(
            "provider",
            "add",
            "aws",
            "--endpoint-url",
            user.moto.url,
            HOME=str(empty_home),
            AWS_SHARED_CREDENTIALS_FILE=str(missing),
        )
    )
    assert "no AWS credentials" in line and str(missing) in line
    assert json.loads(ok(user.brev("provider", "ls", "--json")).stdout) == [config]


def test_provider_add_and_rm_print_json(user: User) -> None:
    secret = f"secret-{uuid.uuid4().hex}"
    keys = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": secret}
    added = ok(
        user.brev("provider", "add", "aws", "--endpoint-url", user.moto.url, "--json", **keys)
    )
    config = json.loads(added.stdout)
    assert set(config) == {"provider", "identity", "added_by", "created_at"}
    assert config["provider"] == "aws" and config["identity"].startswith("account ")
    assert secret not in added.stdout + added.stderr
    removed = json.loads(ok(user.brev("provider", "rm", "aws", "--json")).stdout)
    assert removed == {"org": user.org, "removed": "aws"}
    assert user.client.providers() == []


def test_provider_rm_is_refused_while_an_instance_lives_there(user: User) -> None:
    user.add_aws()
    name = unique("busy")
    ok(user.brev("create", *A100_8_AWS, "--name", name, "--detach"))
    line = one_line_error(user.brev("provider", "rm", "aws"))
    assert "still use aws" in line and "delete them first" in line
    assert [c.provider for c in user.client.providers()] == ["aws"]

    ok(user.brev("delete", name, "-y"))
    user.wait_status(name, None)
    removed = ok(user.brev("provider", "rm", "aws"))
    assert "Removed aws credentials" in removed.stderr
    assert json.loads(ok(user.brev("provider", "ls", "--json")).stdout) == []
    assert live_ids(user.moto) == []


def test_provider_rm_refusal_names_the_instances(user: User) -> None:
    user.add_aws()
    name = unique("busy")
    ok(user.brev("create", *A100_8_AWS, "--name", name, "--detach"))
    line = one_line_error(user.brev("provider", "rm", "aws"))
    assert name in line


# -- create to delete -------------------------------------------------------------------


def test_create_ls_show_stop_start_delete(user: User) -> None:
    user.add_aws()
    created = ok(user.brev("create", *A100_8_AWS, "--json"))
    instance = json.loads(created.stdout)
    name = instance["name"]
    assert instance["status"] == "running"
    assert (instance["provider"], instance["region"]) == ("aws", "us-east-1")
    assert instance["instance_type"] == "p4d.24xlarge"  # the cheapest A100:8 on AWS
    assert re.search(rf"^Creating {name}: \d+ placement\(s\) to try\.$", created.stderr, re.M)
    assert re.search(rf"^{name}: running \(aws p4d\.24xlarge ", created.stderr, re.M)

    # The cloud has exactly that machine, tagged as ours.
    machine = the_machine_of(user.moto, instance["id"])
    assert len(live_ids(user.moto)) == 1
    assert machine["InstanceId"] == instance["provider_ref"]
    assert machine["Tags"][TAG_INSTANCE_ID] == instance["id"]
    assert machine["Tags"][TAG_MANAGED] == "true"

    # brev ls: the row, with where it runs and what it costs.
    table = ok(user.brev("ls")).stdout.splitlines()
    columns = ["NAME", "STATUS", "HEALTH", "GPU", "PROVIDER", "$/H", "AGE", "EXPIRES"]
    assert table[0].split() == columns
    [row] = table[1:]
    assert row.startswith(name)
    assert "running" in row.split()
    assert "aws/us-east-1" in row.split()
    assert f"{instance['price_per_hour']:.2f}" in row.split()
    [listed] = user.ls()
    assert listed["name"] == name and listed["status"] == "running"

    # brev show: the fields, the attempt that worked, the events.
    shown = ok(user.brev("show", name)).stdout
    assert machine["InstanceId"] in shown
    assert re.search(r"^#\s+PROVIDER\s+TYPE\s+WHERE\s+OUTCOME$", shown, re.M)
    assert re.search(r"^1\s+aws\s+p4d\.24xlarge\s+\S+\s+ok$", shown, re.M)
    for action in ("instance.create", "instance.attempt", "instance.provisioned"):
        assert action in shown
    assert "instance.running" in shown

    detail = json.loads(ok(user.brev("show", name, "--json")).stdout)
    assert set(detail) == set(api.InstanceDetail.model_fields)
    assert detail["id"] == instance["id"] and detail["status"] == "running"
    assert detail["desired_status"] == "running"
    assert detail["provider_ref"] == machine["InstanceId"]
    assert detail["plan"] and set(detail["plan"][0]) == set(api.Placement.model_fields)
    assert detail["attempt"] == 0
    actions = [e["action"] for e in detail["events"]]  # newest first
    assert actions == [
        "instance.running",
        "instance.provisioned",
        "instance.attempt",
        "instance.create",
    ]
    assert all(set(e) == set(api.Event.model_fields) for e in detail["events"])

    # Removing the credentials that run it is refused.
    line = one_line_error(user.brev("provider", "rm", "aws"))
    assert "still use aws" in line

    # stop, then start: the plane converges, moto agrees.
    stopping = ok(user.brev("stop", name))
    assert f"Stopping {name}." in stopping.stderr
    user.wait_status(name, "stopped")
    machine = the_machine_of(user.moto, instance["id"])
    assert machine["State"]["Name"] == "stopped"
    assert ok(user.brev("show", name, "--json")).stdout.count('"instance.stopped"') == 1

    starting = ok(user.brev("start", name))
    assert f"Starting {name}." in starting.stderr
    user.wait_status(name, "running")
    machine = the_machine_of(user.moto, instance["id"])
    assert machine["State"]["Name"] == "running"
    assert machine["InstanceId"] == instance["provider_ref"]

    # delete without -y and without a terminal: refused, in one line, and nothing happens.
    line = one_line_error(user.brev("delete", name))
    assert "-y" in line
    kept = user.client.instance(name)
    assert kept.desired_status == "running" and kept.status == "running"
    assert "instance.delete" not in [e.action for e in kept.events]
    assert len(live_ids(user.moto)) == 1

    deleting = ok(user.brev("delete", name, "-y"))
    assert f"Deleting {name}." in deleting.stderr
    user.wait_status(name, None)
    assert user.ls() == []
    assert live_ids(user.moto) == []
    assert untracked(user.moto, user.server.home) == []


def test_detach_returns_at_once_and_the_instance_runs_later(user: User) -> None:
    user.add_aws()
    started = time.monotonic()
    detached = ok(user.brev("create", *A100_8_AWS, "--detach"))
    took = time.monotonic() - started
    assert detached.stdout == ""
    [line] = detached.stderr.splitlines()  # no status line: it did not wait
    found = re.fullmatch(r"Creating (\S+): \d+ placement\(s\) to try\.", line)
    assert found, line
    name = found.group(1)
    assert took < 10, f"--detach took {took:.1f} s"

    user.wait_status(name, "running")
    [listed] = user.ls()
    machine = the_machine_of(user.moto, listed["id"])
    assert user.client.instance(name).provider_ref == machine["InstanceId"]
    ok(user.brev("delete", name, "-y"))
    user.wait_status(name, None)
    assert live_ids(user.moto) == []


def test_a_taken_name_is_refused_in_one_line(user: User) -> None:
    user.add_aws()
    first = ok(user.brev("create", *A100_8_AWS, "--name", "taken", "--detach", "--json"))
    accepted = json.loads(first.stdout)
    assert accepted["name"] == "taken"
    assert accepted["status"] == "pending"  # printed as accepted: it did not wait

    line = one_line_error(user.brev("create", *A100_8_AWS, "--name", "taken"))
    assert "an instance named 'taken' already exists" in line
    assert instance_count(user.server.home, user.org) == 1

    user.wait_status("taken", "running")
    the_machine_of(user.moto, accepted["id"])
    assert len(live_ids(user.moto)) == 1
    ok(user.brev("delete", "taken", "-y"))
    user.wait_status("taken", None)
    assert live_ids(user.moto) == []


# -- what creates nothing ---------------------------------------------------------------


def test_dry_run_prints_the_placements_cheapest_first_and_creates_nothing(user: User) -> None:
    user.add_aws()
    dry = ok(user.brev("create", "a100", "--dry-run"))
    assert dry.stderr.startswith("Would try, in this order, for A100")
    table = dry.stdout.splitlines()
    assert table[0].split() == ["#", "PROVIDER", "TYPE", "GPU", "WHERE", "$/H"]
    rows = [r.split() for r in table[1:]]
    assert len(rows) >= 2
    assert [r[0] for r in rows] == [str(n) for n in range(1, len(rows) + 1)]
    assert {r[1] for r in rows} == {"aws"}
    prices = [float(r[-1]) for r in rows]
    assert prices == sorted(prices)

    plan = json.loads(ok(user.brev("create", "a100", "--dry-run", "--json")).stdout)
    assert [round(p["price_per_hour"], 2) for p in plan["placements"]] == prices
    assert [p["instance_type"] for p in plan["placements"]] == [r[2] for r in rows]

    user.assert_nothing_created()


@pytest.mark.parametrize(
    ("args", "exit_code", "message"),
    [
        (["a10O"], 1, "unknown GPU 'a10O'; did you mean A100, A10 or A10G?"),
        (["h100:3"], 1, "no offer has 3 "),
        (["a100", "--disk", "-5"], 2, "--disk"),
        (["a100", "--timeout", "3y"], 1, "--timeout: invalid duration '3y'"),
        (["a100", "--startup-script", "MISSING"], 1, "--startup-script: cannot read MISSING"),
    ],
    ids=["misspelt-gpu", "no-such-count", "negative-disk", "bad-timeout", "missing-script"],
)
def test_bad_input_is_one_line_and_creates_nothing(
    user: User, tmp_path: Path, args: list[str], exit_code: int, message: str
) -> None:
    user.add_aws()
    missing = str(tmp_path / "no-such-script.sh")
    args = [missing if a == "MISSING" else a for a in args]
    message = message.replace("MISSING", missing)
    result = user.brev("create", *args)
    if exit_code == 1:
        assert message in one_line_error(result)
    else:  # a usage error that the parser catches: exit 2, its usage text, no traceback
        assert result.returncode == exit_code, result.stderr
        assert result.stdout == ""
        assert "Traceback" not in result.stderr
        assert message in result.stderr
    user.assert_nothing_created()
