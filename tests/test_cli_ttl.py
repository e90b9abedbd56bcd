"""`brev ttl`, `brev create --ttl`, the expires column of `brev ls`, the ttl and lease rows of
`brev show`, and `brev token create --scope run`: the real console script against a real
`brev server` (its reconciler off: the seeded instances stand for no machine)."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from brev import api
from brev.client import BrevClient
from brev.server.db.engine import make_engine
from brev.server.db.models import Instance, Org, utcnow
from tests.cli_runner import brev, ok, one_line_error
from tests.conftest import LiveServer
from tests.moto import MotoServer
from tests.seed import add_instances

pytestmark = pytest.mark.slow


@pytest.fixture
def env(live_server: LiveServer, tmp_path: Path) -> dict[str, str]:
    """An org of its own with one seeded instance, `alpha`; its admin logged in by env."""
    org, email = f"org-{uuid.uuid4().hex[:10]}", f"u-{uuid.uuid4().hex[:10]}@example.com"
    with BrevClient(live_server.url, live_server.admin_token) as admin:
        admin.create_org(org)
        token = admin.add_member(email, role=api.Role.ADMIN, org=org).login_token
    assert token is not None
    database_url = f"sqlite:///{live_server.home / 'brev.db'}"
    add_instances(database_url, org, email, ["alpha"])
    # three days old: its age reads `3d` in every `brev ls`, however slowly the commands run
    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                update(Instance)
                .where(Instance.name == "alpha")
                .where(Instance.org_id == select(Org.id).where(Org.name == org).scalar_subquery())
                .values(created_at=utcnow() - timedelta(days=3))
            )
    finally:
        engine.dispose()
    login = {"BREV_API_URL": live_server.url, "BREV_TOKEN": token, "BREV_ORG": org}
    return live_server.env(BREV_HOME=str(tmp_path / "cli-home"), **login)


def _ls_row(env: dict[str, str], name: str) -> tuple[list[str], str]:
    header, *rows = ok(brev("ls", env=env)).stdout.splitlines()
    [row] = [r for r in rows if r.split()[0] == name]
    return header.split(), row[header.index("EXPIRES") :].strip()


def test_ttl_shows_in_ls_and_show_and_turns_off(env: dict[str, str]) -> None:
    header, expires = _ls_row(env, "alpha")
    assert header == ["NAME", "STATUS", "HEALTH", "GPU", "PROVIDER", "$/H", "AGE", "EXPIRES"]
    assert expires == "-"
    assert " 3d " in ok(brev("ls", env=env)).stdout  # the fixture's age, stable

    set_it = ok(brev("ttl", "alpha", "2h", env=env))
    assert set_it.stdout == ""
    assert "alpha will be deleted in 2h" in set_it.stderr
    assert _ls_row(env, "alpha")[1] == "in 2h"
    # the fast path (urllib) and the full CLI print the same bytes, the new column included
    for args in (["ls"], ["ls", "--json"]):
        slow = ok(brev(*args, env={**env, "BREV_FAST": "0"})).stdout
        assert ok(brev(*args, env=env)).stdout == slow
    [listed] = json.loads(ok(brev("ls", "--json", env=env)).stdout)
    assert listed["expires_at"] is not None and listed["run_lease_until"] is None

    shown = {
        line.split(None, 1)[0]: line.split(None, 1)[1]
        for line in ok(brev("show", "alpha", env=env)).stdout.splitlines()
        if line.startswith(("ttl", "lease"))
    }
    assert shown["ttl"].startswith("deleted in 2h (") and shown["lease"] == "-"
    events = ok(brev("show", "alpha", env=env)).stdout
    assert "instance.ttl_set" in events

    off = ok(brev("ttl", "alpha", "OFF", env=env))
    assert "TTL is off for alpha" in off.stderr
    assert _ls_row(env, "alpha")[1] == "-"


def test_create_with_a_ttl(
    env: dict[str, str], live_server: LiveServer, moto_server: MotoServer
) -> None:
    moto_server.reset()
    with BrevClient(live_server.url, env["BREV_TOKEN"], org=env["BREV_ORG"]) as client:
        client.add_provider("aws", moto_server.config())
    where = ["--provider", "aws", "--region", "us-east-1", "--detach", "--json"]
    created = json.loads(ok(brev("create", "t4", "--ttl", "4h", *where, env=env)).stdout)
    assert created["expires_at"] is not None and created["run_lease_until"] is None
    assert _ls_row(env, created["name"])[1] == "in 4h"


def test_bad_durations_and_names_are_one_line_errors(env: dict[str, str]) -> None:
    assert "invalid duration 'soon'" in one_line_error(brev("ttl", "alpha", "soon", env=env))
    assert "--ttl: invalid duration '3x'" in one_line_error(
        brev("create", "t4", "--ttl", "3x", env=env)
    )
    assert "instance 'nosuch' not found" in one_line_error(brev("ttl", "nosuch", "1h", env=env))
    assert "longer than zero" in one_line_error(brev("ttl", "alpha", "0m", env=env))


def test_run_scoped_token_from_the_cli(env: dict[str, str]) -> None:
    refused = one_line_error(brev("token", "create", "--name", "x", "--max-gpus", "2", env=env))
    assert "--max-gpus" in refused and "--scope run" in refused
    assert "--max-ttl: invalid duration '2y'" in one_line_error(
        brev("token", "create", "--name", "x", "--scope", "run", "--max-ttl", "2y", env=env)
    )
    assert "unknown scope 'admin'" in one_line_error(
        brev("token", "create", "--name", "x", "--scope", "admin", env=env)
    )

    args = ["--scope", "run", "--max-price", "5", "--max-gpus", "8", "--max-ttl", "2h"]
    created = ok(brev("token", "create", "--name", "ci", *args, env=env))
    (secret,) = created.stdout.splitlines()
    assert secret.startswith("brev_") and secret not in created.stderr
    assert "run-scoped token 'ci'" in created.stderr
    assert "at most $5.00/h, 8 GPUs, TTL 2h" in created.stderr
    tokens = json.loads(ok(brev("token", "ls", "--json", env=env)).stdout)
    [ci] = [t for t in tokens if t["name"] == "ci"]
    assert (ci["scope"], ci["max_price_per_hour"], ci["max_gpus"], ci["max_ttl_seconds"]) == (
        "run",
        5.0,
        8,
        7200,
    )
    table = ok(brev("token", "ls", env=env)).stdout.splitlines()
    assert "SCOPE" in table[0].split()
    assert any(line.split()[0] == "ci" and " run " in line for line in table[1:])

    as_ci = {**env, "BREV_TOKEN": secret}
    # its own instances only: alpha is not its own
    assert ok(brev("ls", "--json", env=as_ci)).stdout == "[]\n"
    assert "instance 'alpha' not found" in one_line_error(brev("ttl", "alpha", "1h", env=as_ci))
    forbidden = one_line_error(brev("token", "ls", env=as_ci))
    assert "scope 'run'" in forbidden and "GET /orgs/{org}/tokens" in forbidden
