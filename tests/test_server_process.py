"""The real `brev server` process: first start, restart, where secrets end up, and the
endpoints that machines (load balancers, Prometheus, browsers) read."""

from __future__ import annotations

import stat
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import MetaData, create_engine, func, select, text

from brev import __version__, api
from brev.server.auth import hash_secret
from brev.server.db.models import User
from tests.conftest import LiveServer, start_server, stop_server
from tests.databases import PostgresDatabases

pytestmark = pytest.mark.slow


@contextmanager
def running(home: Path, database_url: str | None = None) -> Iterator[LiveServer]:
    server = start_server(home, database_url=database_url)
    try:
        yield server
    finally:
        stop_server(server)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- first start and restart ------------------------------------------------------------


def test_first_start_writes_the_admin_token_to_a_private_file_only(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with running(home) as server:
        token_path = home / "admin-token"
        assert stat.S_IMODE(token_path.stat().st_mode) == 0o600
        token = token_path.read_text().strip()
        assert token.startswith("brev_")
        assert token_path.read_text() == token + "\n"

        me = httpx.get(f"{server.url}{api.API_PREFIX}/whoami", headers=bearer(token))
        assert me.status_code == 200
        assert me.json()["user"]["email"] == "admin@localhost"
        assert me.json()["memberships"] == [{"org": "default", "role": "admin"}]
    log = server.log.read_text()
    # stdout is a file, not a terminal: the path to the token is printed, the token is not.
    assert str(token_path) in log
    assert token not in log


def test_second_start_keeps_the_admin_and_its_token(tmp_path: Path) -> None:
    home = tmp_path / "home"
    token_path = home / "admin-token"
    with running(home) as first:
        token = token_path.read_text()
        written = token_path.stat().st_mtime_ns
    assert "first start" in first.log.read_text()

    with running(home) as second:
        assert token_path.read_text() == token
        assert token_path.stat().st_mtime_ns == written
        me = httpx.get(f"{second.url}{api.API_PREFIX}/whoami", headers=bearer(token.strip()))
        assert me.status_code == 200
        assert me.json()["user"]["email"] == "admin@localhost"

    log = second.log.read_text()
    assert "first start" not in log
    assert str(token_path) not in log
    engine = create_engine(f"sqlite:///{home / 'brev.db'}")
    try:
        with engine.connect() as connection:
            assert connection.scalar(select(func.count()).select_from(User)) == 1
    finally:
        engine.dispose()


# -- where secrets end up ---------------------------------------------------------------


def exercise_tokens(server: LiveServer) -> list[str]:
    """Requests with the admin token, a new CI token, a wrong token and a revoked one;
    returns every raw secret used."""
    admin = server.admin_token
    url = f"{server.url}{api.API_PREFIX}"
    with httpx.Client(timeout=10) as http:
        assert http.get(f"{url}/whoami", headers=bearer(admin)).status_code == 200
        assert http.get(f"{url}/orgs", headers=bearer(admin)).status_code == 200
        created = http.post(
            f"{url}/orgs/default/tokens",
            json={"name": "ci", "expires_in_seconds": 3600},
            headers=bearer(admin),
        )
        assert created.status_code == 201, created.text
        ci = created.json()["secret"]
        assert ci.startswith("brev_")

        used = http.get(f"{url}/orgs/default/instances", headers=bearer(ci))
        assert used.status_code == 200, used.text
        assert http.get(f"{url}/whoami", headers=bearer(ci)).json()["token_name"] == "ci"

        wrong = ci[:-4] + ("AAAA" if not ci.endswith("AAAA") else "BBBB")
        refused = http.get(f"{url}/whoami", headers=bearer(wrong))
        assert refused.status_code == 401
        assert wrong not in refused.text

        revoked = http.delete(f"{url}/orgs/default/tokens/ci", headers=bearer(admin))
        assert revoked.status_code == 200, revoked.text
        answer = http.get(f"{url}/whoami", headers=bearer(ci))
        assert answer.status_code == 401
        assert "revoked" in answer.text
    return [admin, ci, wrong]


def test_raw_tokens_are_nowhere_in_the_sqlite_database_or_the_log(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with running(home) as server:
        admin, ci, wrong = exercise_tokens(server)
    files = [home / "brev.db", home / "brev.db-wal", server.log]
    for path in files:
        if not path.exists():
            continue
        content = path.read_bytes()
        for secret in (admin, ci, wrong):
            assert secret.encode() not in content, f"a raw token is in {path.name}"
    database = b"".join(p.read_bytes() for p in files[:2] if p.exists())
    # Only the hashes are stored: that is how a request finds its token.
    assert hash_secret(admin).encode() in database
    assert hash_secret(ci).encode() in database
    assert hash_secret(wrong).encode() not in database


def dump_database(database_url: str) -> str:
    """Every row of every table, as text."""
    engine = create_engine(database_url)
    try:
        metadata = MetaData()
        metadata.reflect(engine)
        assert "api_tokens" in metadata.tables
        lines: list[str] = []
        with engine.connect() as connection:
            for table in metadata.sorted_tables:
                for row in connection.execute(select(table)):
                    lines.append(f"{table.name}: {tuple(row)!r}")
        return "\n".join(lines)
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_raw_tokens_are_nowhere_in_the_postgres_database(
    tmp_path: Path, postgres_databases: PostgresDatabases
) -> None:
    database_url = postgres_databases.empty()  # the server migrates it at start
    with running(tmp_path / "home", database_url=database_url) as server:
        assert httpx.get(f"{server.url}/healthz").json()["database"] == "postgresql"
        admin, ci, wrong = exercise_tokens(server)
    dump = dump_database(database_url)
    log = server.log.read_text()
    for secret in (admin, ci, wrong):
        assert secret not in dump
        assert secret not in log
    assert hash_secret(admin) in dump
    assert hash_secret(ci) in dump


# -- endpoints for machines -------------------------------------------------------------


def test_healthz(live_server: LiveServer) -> None:
    response = httpx.get(f"{live_server.url}/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "version": __version__, "database": "sqlite"}


def test_openapi(live_server: LiveServer) -> None:
    response = httpx.get(f"{live_server.url}/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert f"{api.API_PREFIX}/orgs/{{org}}/instances" in paths
    assert f"{api.API_PREFIX}/orgs/{{org}}/tokens" in paths
    assert f"{api.API_PREFIX}/whoami" in paths
    assert {p for p in paths if not p.startswith(f"{api.API_PREFIX}/")} <= {"/healthz", "/metrics"}


def test_metrics_count_requests_by_route_template(live_server: LiveServer) -> None:
    org = f"metrics-{uuid.uuid4().hex[:10]}"
    admin = bearer(live_server.admin_token)
    api_url = f"{live_server.url}{api.API_PREFIX}"
    with httpx.Client(timeout=10) as http:
        assert http.post(f"{api_url}/orgs", json={"name": org}, headers=admin).status_code == 201
        listed = http.get(f"{api_url}/orgs/{org}/instances", headers=admin)
        assert listed.status_code == 200
        missing = http.get(f"{api_url}/orgs/{org}/instances/nothing-here", headers=admin)
        assert missing.status_code == 404
        response = http.get(f"{live_server.url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert org not in response.text

    requests = {
        (s.labels["method"], s.labels["route"], s.labels["status"]): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
        if s.name == "brev_http_requests_total"
    }
    assert requests[("GET", f"{api.API_PREFIX}/orgs/{{org}}/instances", "200")] >= 1
    assert requests[("GET", f"{api.API_PREFIX}/orgs/{{org}}/instances/{{name}}", "404")] >= 1
    assert requests[("POST", f"{api.API_PREFIX}/orgs", "201")] >= 1


def test_dashboard(live_server: LiveServer) -> None:
    response = httpx.get(f"{live_server.url}/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.text.lstrip().lower().startswith("<!doctype html>")


# -- a 201 means committed ---------------------------------------------------------------

HOLD_KEY = 4242  # an advisory lock key of this test's own (the server's start-up lock differs)


@pytest.mark.postgres
def test_a_201_is_sent_only_after_the_commit(
    tmp_path: Path, postgres_databases: PostgresDatabases
) -> None:
    """A 201 means the write is committed. A deferred trigger makes the commit of an org wait
    for a lock this test holds: the answer must not arrive while the commit is held back.
    Deterministic, unlike a race against a fast commit (tests/test_read_after_write.py)."""
    database_url = postgres_databases.fresh()
    engine = create_engine(database_url, isolation_level="AUTOCOMMIT")
    try:
        with running(tmp_path / "home", database_url=database_url) as server:
            with engine.connect() as connection:
                connection.execute(
                    text(
                        "CREATE FUNCTION hold_commit() RETURNS trigger LANGUAGE plpgsql AS $$ "
                        f"BEGIN PERFORM pg_advisory_lock({HOLD_KEY}); "
                        f"PERFORM pg_advisory_unlock({HOLD_KEY}); RETURN NULL; END $$"
                    )
                )
                connection.execute(
                    text(
                        "CREATE CONSTRAINT TRIGGER hold_commit AFTER INSERT ON orgs "
                        "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION hold_commit()"
                    )
                )
                connection.execute(text(f"SELECT pg_advisory_lock({HOLD_KEY})"))
                with ThreadPoolExecutor(max_workers=1) as pool:
                    answer = pool.submit(
                        httpx.post,
                        f"{server.url}{api.API_PREFIX}/orgs",
                        json={"name": "held"},
                        headers=bearer(server.admin_token),
                        timeout=30,
                    )
                    try:
                        done, _ = wait([answer], timeout=2)
                    finally:
                        connection.execute(text(f"SELECT pg_advisory_unlock({HOLD_KEY})"))
                    assert answer.result().status_code == 201
                held = connection.scalar(text("SELECT count(*) FROM orgs WHERE name = 'held'"))
                assert held == 1
            assert not done, "the 201 arrived while its transaction was still uncommitted"
    finally:
        engine.dispose()
