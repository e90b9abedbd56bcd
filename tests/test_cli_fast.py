"""`brev search` and `brev show` on their fast paths (brev.cli.fast): against a real `brev
server`, they print byte for byte what the full CLI (BREV_FAST=0) prints, without importing
typer; what they were not written for goes to the full CLI. And the pieces: the login they
read, the query they send, the answers they refuse."""

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic_core import to_json
from sqlalchemy import select

from brev import api
from brev.cli import login_state
from brev.cli.fast import plane, search, show
from brev.server.db.engine import make_engine, make_sessionmaker, transaction
from brev.server.db.models import Event, Instance, Org, User
from tests.cli_imports import imports_typer
from tests.cli_runner import brev, one_line_error
from tests.conftest import LiveServer

pytestmark = pytest.mark.slow


@pytest.fixture
def env(live_server: LiveServer, tmp_path: Path) -> dict[str, str]:
    """Logged in through the environment as the server's admin, in the default org."""
    return live_server.env(
        BREV_HOME=str(tmp_path / "cli-home"),
        BREV_API_URL=live_server.url,
        BREV_TOKEN=live_server.admin_token,
        BREV_ORG="default",
    )


def same_as_full_cli(args: list[str], env: dict[str, str]) -> tuple[str, str, int]:
    """`brev ARGS` on its fast path and through the full CLI print the same; what it printed."""
    fast = brev(*args, env=env)
    full = brev(*args, env={**env, "BREV_FAST": "0"})
    assert (fast.stdout, fast.stderr, fast.returncode) == (
        full.stdout,
        full.stderr,
        full.returncode,
    ), args
    return fast.stdout, fast.stderr, fast.returncode


# -- search ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["a100"],
        ["a100", "--json"],
        ["--json", "h100:8", "--spot", "--sort", "gpus"],
        ["h100", "--max-price=30", "--min-vram", "80", "--sort=vram"],
        ["a100-80gb:8", "--provider", "lambda, aws", "--region", "us-east-1"],
        ["h100:8", "--max-price", "0.01"],  # nothing matches: a note on stderr
        ["cpu", "--json"],
    ],
)
def test_search_prints_what_the_full_cli_prints(args: list[str], env: dict[str, str]) -> None:
    stdout, _, status = same_as_full_cli(["search", *args], env)
    assert status == 0
    assert not imports_typer(["search", *args], env)
    if "--json" not in args and stdout:
        assert stdout.split()[:2] == ["PROVIDER", "TYPE"]


@pytest.mark.parametrize(
    "args",
    [
        ["nosuchgpu"],  # the plane refuses it: the full CLI's one-line error
        ["--max-price", "0"],
        ["--sort", "cheapest"],
        ["a100", "h100"],
        ["a100", "--json", "--json"],
        ["--region"],
        ["--no-such-flag"],
    ],
)
def test_search_leaves_the_unusual_to_the_full_cli(args: list[str], env: dict[str, str]) -> None:
    same_as_full_cli(["search", *args], env)
    assert imports_typer(["search", *args], env)


def test_search_query_is_what_the_client_sends() -> None:
    assert search.parse([]) == ({"spot": "false", "sort": "price"}, False)
    query, json_output = search.parse(
        ["a100:8", "--spot", "--provider", "aws, gcp", "--region=us-east-1", "--json"]
    ) or ({}, False)
    assert json_output
    assert query == {
        "spot": "true",
        "sort": "price",
        "gpu": "a100:8",
        "region": "us-east-1",
        "provider": "aws,gcp",
    }
    assert search.parse(["--max-price", "10", "--min-vram", "0"]) == (
        {"spot": "false", "sort": "price", "max_price": "10.0", "min_vram": "0.0"},
        False,
    )
    for refused in (["--min-vram", "-1"], ["--max-price", "nan"], ["--sort", "PRICE"], ["-"]):
        assert search.parse(refused) is None, refused


# -- show -----------------------------------------------------------------------------------


def add_detailed_instance(server: LiveServer, name: str) -> None:
    """An instance in the default org with everything `brev show` prints: a status it is
    leaving, a TTL and a lease, GPUs the agent reported, a failed and a successful attempt."""
    now = datetime.now(UTC)
    engine = make_engine(f"sqlite:///{server.home / 'brev.db'}")
    try:
        with transaction(make_sessionmaker(engine)) as session:
            org_id = session.scalars(select(Org.id).where(Org.name == "default")).one()
            admin_id = session.scalars(select(User.id)).first()
            assert admin_id is not None
            placement = {
                "provider": "aws",
                "instance_type": "p4de.24xlarge",
                "region": "us-east-1",
                "zone": "us-east-1a",
                "spot": False,
                "gpu_model": "A100-80GB",
                "gpu_count": 8,
                "price_per_hour": 40.97,
                "node": None,
            }
            gpu = {
                "index": 0,
                "name": "NVIDIA A100-SXM4-80GB",
                "utilization_gpu_pct": 97.0,
                "memory_used_mib": 61440.0,
                "memory_total_mib": 81920.0,
                "temperature_c": 64.0,
                "power_draw_w": 342.5,
                "power_limit_w": 400.0,
                "processes": [{"pid": 4242, "name": "/usr/bin/python3"}],
            }
            instance = Instance(
                org_id=org_id,
                name=name,
                created_by_id=admin_id,
                status="running",
                desired_status="stopped",
                health="healthy",
                status_reason="stopping: asked by admin",
                gpu_spec="A100:8",
                gpu_model="A100-80GB",
                gpu_count=8,
                provider="aws",
                region="us-east-1",
                zone="us-east-1a",
                instance_type="p4de.24xlarge",
                spot=False,
                disk_gb=512,
                image="ubuntu-22.04",
                price_per_hour=40.97,
                provider_ref="i-0123456789abcdef0",
                ssh_host="203.0.113.7",
                created_at=now - timedelta(hours=3, minutes=20),
                updated_at=now - timedelta(minutes=5),
                # mid-unit, so the ages read the same a few seconds apart: 2h, 10m, 5m
                expires_at=now + timedelta(hours=2, minutes=20),
                run_lease_until=now + timedelta(minutes=10, seconds=15),
                last_heartbeat_at=now - timedelta(minutes=5, seconds=30),
                plan=[{**placement, "zone": "us-east-1b"}, placement],
                attempt=1,
                telemetry={"gpus": [gpu, {**gpu, "index": 1, "processes": []}]},
            )
            session.add(instance)
            session.flush()
            for minutes, action, details in (
                (180, "instance.created", {"gpu": "A100:8", "ttl": None}),
                (
                    179,
                    "instance.attempt_failed",
                    {"attempt": 1, "zone": "us-east-1b", "reason": "no capacity"},
                ),
                (
                    178,
                    "instance.provisioned",
                    {
                        "attempt": 2,
                        "provider": "aws",
                        "instance_type": "p4de.24xlarge",
                        "region": "us-east-1",
                        "machine": "i-0123",
                    },
                ),
            ):
                session.add(
                    Event(
                        org_id=org_id,
                        actor_id=admin_id,
                        action=action,
                        object_type="instance",
                        object_id=instance.id,
                        object_name=name,
                        details=details,
                        created_at=now - timedelta(minutes=minutes),
                    )
                )
    finally:
        engine.dispose()


def test_show_prints_what_the_full_cli_prints(live_server: LiveServer, env: dict[str, str]) -> None:
    name = f"detailed-{uuid.uuid4().hex[:8]}"
    add_detailed_instance(live_server, name)
    table, notes, _ = same_as_full_cli(["show", name], env)
    assert not imports_typer(["show", name], env)
    # every part of it is there: fields, the agent's note, GPUs, attempts, events
    assert "running (wanted: stopped)" in table
    assert "deleted unless `brev run` renews it" in table
    assert "NVIDIA A100-SXM4-80GB" in table and "python3[4242]" in table
    assert "no capacity" in table and "instance.provisioned" in table
    assert "Last agent report" in notes

    as_json, _, _ = same_as_full_cli(["show", name, "--json"], env)
    assert not imports_typer(["show", "--json", name], env)
    assert json.loads(as_json)["name"] == name


def test_show_of_an_unknown_instance_is_the_full_cli_s_error(env: dict[str, str]) -> None:
    assert "not found" in one_line_error(brev("show", "no-such-instance", env=env))
    same_as_full_cli(["show", "no-such-instance"], env)
    for args in (["show"], ["show", "a", "b"], ["show", "--jsn", "a"], ["show", "a/../b"]):
        same_as_full_cli(args, env)


def test_the_fields_are_the_api_s() -> None:
    assert tuple(api.Offer.model_fields) == search.OFFER_FIELDS
    assert tuple(api.InstanceDetail.model_fields) == show.DETAIL_FIELDS
    assert tuple(api.Placement.model_fields) == show.PLACEMENT_FIELDS
    assert tuple(api.Event.model_fields) == show.EVENT_FIELDS


# -- the plane: login, JSON, HTTP -----------------------------------------------------------


@pytest.mark.parametrize(
    ("stored", "environment"),
    [
        (None, {}),
        (None, {"BREV_API_URL": "http://a:1", "BREV_TOKEN": "t", "BREV_ORG": "o"}),
        ({"url": "http://s:2", "token": "st", "org": "so"}, {}),
        ({"url": "http://s:2", "token": "st", "org": "so"}, {"BREV_ORG": "other"}),
        ({"url": "http://s:2"}, {"BREV_TOKEN": "t"}),
    ],
)
def test_the_login_is_the_cli_s(
    stored: dict[str, str] | None,
    environment: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BREV_HOME", str(tmp_path))
    for variable in ("BREV_API_URL", "BREV_TOKEN", "BREV_ORG"):
        monkeypatch.delenv(variable, raising=False)
    for variable, value in environment.items():
        monkeypatch.setenv(variable, value)
    if stored is not None:
        (tmp_path / "credentials.json").write_text(json.dumps(stored))
    expected = login_state.current_login()
    fast = plane.current_login()
    assert fast is not None
    assert (fast.url, fast.token, fast.org) == (expected.url, expected.token, expected.org)


def test_an_unreadable_login_is_left_to_the_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BREV_HOME", str(tmp_path))
    (tmp_path / "credentials.json").write_text("{not json")
    assert plane.current_login() is None


def test_json_prints_as_pydantic_does_or_is_left_to_the_cli() -> None:
    data: Any = {
        "name": "größe ✓",
        "zones": [],
        "telemetry": {},
        "nested": [{"a": 1.5, "b": None, "c": True}],
        "price": 40.97,
        "count": 8,
        "control": "tab\there\n\u0001",
    }
    assert plane.prints_alike(data)
    assert json.dumps(data, indent=2, ensure_ascii=False) == to_json(data, indent=2).decode()
    assert not plane.prints_alike({"tiny": [1e-05]})
    assert not plane.prints_alike({"huge": 1e16})


@pytest.fixture
def answering() -> Iterator[list[bytes]]:
    """A server on a free port that answers each connection with the next of the bytes put in
    the list (then closes it); the port is the list's first item until a test reads it."""
    answers: list[bytes] = []
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            with connection:
                request = b""
                while b"\r\n\r\n" not in request:
                    request += connection.recv(65536)
                connection.sendall(answers.pop(0))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    answers.append(str(port).encode())
    yield answers
    listener.close()


def test_only_a_whole_200_answer_is_read(
    answering: list[bytes], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    port = answering.pop(0).decode()
    monkeypatch.setenv("BREV_HOME", str(tmp_path))
    monkeypatch.setenv("BREV_API_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("BREV_TOKEN", "brev_test")
    monkeypatch.setenv("BREV_ORG", "default")
    for variable in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(variable, raising=False)
    body = b'[{"name": "a"}]'
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
    cases = [
        (head + b"content-length: %d\r\n\r\n" % len(body) + body, [{"name": "a"}]),
        (b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\n{}", None),
        (head + b"transfer-encoding: chunked\r\n\r\nf\r\n" + body + b"\r\n0\r\n\r\n", None),
        (head + b"content-length: 99\r\n\r\n" + body, None),  # cut off
        (head + b"\r\n" + body, None),  # no length
        (head + b"content-length: 3\r\n\r\nNaN", None),
    ]
    for answer, expected in cases:
        answering.append(answer)
        got = plane.get_org_json("/instances")
        assert (got[1] if got else None) == expected, answer
