"""Which database errors are a 503 (brev.server.db.outage.diagnose), on real errors: only a
database that cannot be reached or is locked is; a bug's error stays a 500."""

from __future__ import annotations

import logging
import socket
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError, OperationalError

from brev.server.db import outage
from brev.server.db.engine import CONNECT_TIMEOUT_S, make_engine
from brev.server.db.outage import diagnose
from brev.server.log_dedup import DedupLog
from brev.server.services import orgs
from tests.conftest import Plane
from tests.databases import PostgresDatabases
from tests.postgres import free_port


def _error_of(url: str, statement: str, **connect_args: object) -> DBAPIError:
    engine = create_engine(url, connect_args=connect_args)
    try:
        with pytest.raises(DBAPIError) as raised, engine.begin() as connection:
            connection.execute(text(statement))
        return raised.value
    finally:
        engine.dispose()


def _locked_sqlite_error(tmp_path: Path) -> DBAPIError:
    """What a write meets after the plane's 30 s busy timeout, without the 30 s: another
    connection holds the file's exclusive lock."""
    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path)
    holder.execute("CREATE TABLE t (x INTEGER)")
    holder.commit()
    holder.execute("BEGIN EXCLUSIVE")
    try:
        return _error_of(f"sqlite:///{path}", "INSERT INTO t VALUES (1)", timeout=0)
    finally:
        holder.rollback()
        holder.close()


def test_postgresql_on_a_closed_port_is_unreachable() -> None:
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/postgres"
    found = diagnose(_error_of(url, "SELECT 1", connect_timeout=5))
    assert found is not None and found.kind == "unreachable"
    assert found.reason.startswith("psycopg.OperationalError: connection failed")
    assert "SELECT" not in found.reason  # the driver's words only, never the statement


def test_a_locked_sqlite_database_is_busy(tmp_path: Path) -> None:
    error = _locked_sqlite_error(tmp_path)
    found = diagnose(error)
    assert found is not None and found.kind == "busy"
    assert "locked by another writer" in found.message


def test_a_sqlite_file_that_cannot_be_opened_is_unreachable(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'no-such-directory' / 'brev.db'}"
    found = diagnose(_error_of(url, "SELECT 1"))
    assert found is not None and found.kind == "unreachable"


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT * FROM no_such_table",  # an OperationalError on SQLite: a bug, not an outage
        "SELECT 1 FROM",  # a syntax error
        "CREATE TABLE t (x INTEGER UNIQUE); INSERT INTO t VALUES (1); INSERT INTO t VALUES (1)",
    ],
)
def test_other_errors_stay_errors(tmp_path: Path, statement: str) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'brev.db'}")
    try:
        with pytest.raises(DBAPIError) as raised, engine.begin() as connection:
            for part in statement.split("; "):
                connection.execute(text(part))
    finally:
        engine.dispose()
    assert diagnose(raised.value) is None


def test_an_error_that_is_not_the_databases_is_none() -> None:
    assert diagnose(RuntimeError("database is locked")) is None


@pytest.mark.postgres
def test_a_postgresql_error_the_server_sent_stays_an_error(
    postgres_databases: PostgresDatabases,
) -> None:
    url = postgres_databases.fresh()
    # A statement timeout is an OperationalError too (SQLSTATE 57014): the server answered.
    timeout = _error_of(url, "SELECT pg_sleep(5)", options="-c statement_timeout=50")
    assert type(timeout.orig).__name__ == "QueryCanceled"
    assert diagnose(timeout) is None
    assert diagnose(_error_of(url, "SELECT * FROM no_such_table")) is None


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_locked_database_is_a_busy_503_said_once(
    plane: Plane, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    locked = _locked_sqlite_error(tmp_path)

    def blocked(*_: object) -> None:
        raise locked

    monkeypatch.setattr(orgs, "list_orgs", blocked)
    monkeypatch.setattr(outage, "_busy", DedupLog(outage.log))  # nothing said before this test
    caplog.set_level(logging.INFO)
    http = plane.http(plane.admin_token)
    for _ in range(3):
        answer = http.get("/api/v1/orgs")
        assert answer.status_code == 503
        assert answer.headers["Retry-After"] == "5"
        assert answer.json()["error"]["code"] == "database_unavailable"
        assert "busy" in answer.json()["error"]["message"]
    said = [r.getMessage() for r in caplog.records if r.name == "brev.server.database"]
    assert said == ["database busy (sqlite3.OperationalError: database is locked)"]
    assert http.get("/healthz").status_code == 200  # a lock is no outage


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_database_error_that_is_a_bug_is_a_500_logged_once(
    plane: Plane, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    missing = _error_of(f"sqlite:///{tmp_path / 'brev.db'}", "SELECT * FROM no_such_table")

    def broken(*_: object) -> None:
        raise missing

    monkeypatch.setattr(orgs, "list_orgs", broken)
    caplog.set_level(logging.INFO)
    http = plane.http(plane.admin_token)
    for _ in range(3):
        answer = http.get("/api/v1/orgs")
        assert answer.status_code == 500
        assert answer.json()["error"]["code"] == "internal_error"
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is not None
    assert "no such table" in errors[0].getMessage()


def test_a_postgresql_host_that_never_answers_fails_the_connection_in_seconds() -> None:
    """A listener that accepts and then says nothing (a host dropping packets behaves alike
    once the TCP handshake is done): the connection fails after CONNECT_TIMEOUT_S instead of
    holding its thread for the operating system's timeout."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    port = silent.getsockname()[1]
    outcome: list[BaseException | None] = []

    def connect() -> None:
        engine = make_engine(f"postgresql+psycopg://brev@127.0.0.1:{port}/brev")
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)
        finally:
            engine.dispose()

    started = time.monotonic()
    worker = threading.Thread(target=connect, daemon=True)
    worker.start()
    worker.join(timeout=CONNECT_TIMEOUT_S * 4)
    silent.close()
    assert not worker.is_alive(), "the connection still waits"
    assert isinstance(outcome[0], OperationalError)
    assert time.monotonic() - started >= CONNECT_TIMEOUT_S * 0.8  # the bound, not an error
