"""Engines and sessions for SQLite (the default) and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pydantic_core
from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

from brev.errors import BrevError

SUPPORTED = "sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST/DB"
# Connections per process: the requests admitted at once (brev.server.admission, 20) plus the
# reconciler's workers (16), with room to spare.
POOL_SIZE = 20
POOL_OVERFLOW = 30
# How long a new PostgreSQL connection may take: a database host that drops packets would
# otherwise hold a request (and its thread) for the operating system's TCP timeout, minutes,
# instead of answering 503 database_unavailable. `?connect_timeout=N` in the URL overrides it.
CONNECT_TIMEOUT_S = 5


def json_text(value: Any) -> str:
    # pydantic's encoder (and its decoder below) for JSON columns instead of the standard
    # library's: an agent's report is stored as JSON and its last one read back on every
    # report, and json.dumps and json.loads of it were a twentieth of a report's CPU (3.5 and
    # 1.9 times slower). The text differs only in spacing and in an exponent's form (1e-7,
    # not 1e-07): both parse to the same values.
    return pydantic_core.to_json(value).decode()


JSON_CODEC: dict[str, Any] = {
    "json_serializer": json_text,
    "json_deserializer": pydantic_core.from_json,
}


class DatabaseUnavailable(BrevError):
    """The database URL is wrong, or the database cannot be reached. Never shows a password."""


def describe(database_url: str) -> str:
    try:
        return make_url(database_url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(unparsable URL)"


def make_engine(database_url: str) -> Engine:
    try:
        url = make_url(database_url)
    except ArgumentError:
        raise DatabaseUnavailable(f"invalid database URL; expected {SUPPORTED}") from None
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise DatabaseUnavailable(
            f"unsupported database {url.get_backend_name()!r} in {describe(database_url)}; "
            f"brev runs on SQLite or PostgreSQL: {SUPPORTED}"
        )
    if url.get_backend_name() == "postgresql" and url.get_driver_name() != "psycopg":
        raise DatabaseUnavailable(
            f"use the psycopg driver for PostgreSQL: postgresql+psycopg://... "
            f"(got {describe(database_url)})"
        )
    if url.get_backend_name() == "postgresql":
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise DatabaseUnavailable(
                "PostgreSQL needs psycopg: pip install 'brev[postgresql]'"
            ) from None
    if database_url.startswith("sqlite"):
        engine = create_engine(
            database_url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=POOL_SIZE,
            max_overflow=POOL_OVERFLOW,
            **JSON_CODEC,
        )
        event.listen(engine, "connect", _configure_sqlite)
        return engine
    connect_args = {} if "connect_timeout" in url.query else {"connect_timeout": CONNECT_TIMEOUT_S}
    return create_engine(
        database_url,
        pool_pre_ping=True,
        pool_size=POOL_SIZE,
        max_overflow=POOL_OVERFLOW,
        connect_args=connect_args,
        **JSON_CODEC,
    )


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers proceed during a write; foreign keys are off by default in SQLite.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose work commits on success and rolls back on any exception."""
    with sessions() as session, session.begin():
        yield session
