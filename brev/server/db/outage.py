"""A database that cannot be reached is a 503 `database_unavailable`, not a 500 (issue 13,
item 5), and an outage is logged as one line when it starts and one when it ends.

Which errors mean "unavailable" is decided here, narrowly: a connection that failed, broke or
was refused (PostgreSQL down, restarting, out of connection slots; a SQLite file that cannot be
opened), or SQLite's "database is locked" (another writer held the lock past the 30 s busy
timeout: also temporary, so also a 503, with its own message). Every other database error
(a missing table, a constraint, a statement timeout) is a bug or a bad query: a 500 with its
traceback, as before.

One `Reachability` per engine, shared by the requests and the reconciler of a process: the
first failure logs "database unreachable (reason)", the next ones are counted (a summary line
a minute while it lasts), and the first new connection afterwards logs "reachable again"
with how long it took. Nothing waits for that: the pool connects again on the next checkout
(`pool_pre_ping`), so the request after the database returns is answered as usual.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import Request
from fastapi.responses import JSONResponse
from sqlalchemy import Engine, event, text
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from brev import api
from brev.server.log_dedup import DedupLog

log = logging.getLogger("brev.server.database")

CODE = "database_unavailable"
RETRY_AFTER_SECONDS = 5
UNREACHABLE_MESSAGE = "the plane's database is unreachable; this is temporary: try again shortly"
BUSY_MESSAGE = (
    "the plane's database is busy (locked by another writer); this is temporary: try again shortly"
)
# PostgreSQL's SQLSTATEs of a server that is going or not there yet: class 08 (connection
# exception), the shutdowns of class 57, and no connection slot left.
_UNREACHABLE_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "53300"})
# How often a lasting outage is said again, with the count of failures meanwhile.
SUMMARY_EVERY_S = 60.0


@dataclass(frozen=True)
class Unavailable:
    """Why the database cannot answer now: `reason` is for the log (no SQL, no parameters)."""

    kind: Literal["unreachable", "busy"]
    reason: str

    @property
    def message(self) -> str:
        return UNREACHABLE_MESSAGE if self.kind == "unreachable" else BUSY_MESSAGE


def diagnose(error: BaseException) -> Unavailable | None:
    """The unavailability `error` stands for; None for any other error (a bug: a 500)."""
    if not isinstance(error, (OperationalError, InterfaceError)):
        return None
    orig = error.orig
    reason = _reason(orig)
    if isinstance(orig, sqlite3.Error):
        said = str(orig)
        if said.startswith(("database is locked", "database table is locked")):
            return Unavailable("busy", reason)
        if said.startswith("unable to open database file"):
            return Unavailable("unreachable", reason)
        return None
    if error.connection_invalidated or isinstance(error, InterfaceError):
        return Unavailable("unreachable", reason)
    # psycopg raises OperationalError without a SQLSTATE when it has no server to ask
    # (refused, reset, closed by the server) and with one for errors the server sent.
    sqlstate = getattr(orig, "sqlstate", None)
    if type(orig).__module__.startswith("psycopg") and (
        sqlstate is None or sqlstate.startswith("08") or sqlstate in _UNREACHABLE_SQLSTATES
    ):
        return Unavailable("unreachable", reason)
    return None


def _reason(orig: BaseException | None) -> str:
    # The driver's own error, first line only: SQLAlchemy's str() adds the statement and its
    # parameters, which may hold what a log must not (a token's hash, a sealed secret).
    if orig is None:
        return "no driver error"
    lines = str(orig).strip().splitlines()
    name = f"{type(orig).__module__.split('.')[0]}.{type(orig).__name__}"
    return f"{name}: {lines[0][:200]}" if lines else name


class Reachability:
    """Whether the database of one engine answers, as the last connection attempt found."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._failures = 0  # since the outage began
        self._said_at = 0.0
        self._said_failures = 0

    @property
    def down(self) -> bool:
        return self._down_since is not None

    def failed(self, problem: Unavailable) -> None:
        """A request or a pass met `problem`: said when the outage begins, else counted."""
        now = self._clock()
        with self._lock:
            if self._down_since is None:
                self._down_since = self._said_at = now
                self._failures = self._said_failures = 1
                log.error(
                    "database unreachable (%s): requests answer 503 %s and the reconciler "
                    "backs off until it returns",
                    problem.reason,
                    CODE,
                )
                return
            self._failures += 1
            if now - self._said_at >= SUMMARY_EVERY_S:
                log.error(
                    "database still unreachable (%s), %d more times in the last %.0f s",
                    problem.reason,
                    self._failures - self._said_failures,
                    now - self._said_at,
                )
                self._said_at, self._said_failures = now, self._failures

    def reached(self) -> None:
        """A new connection succeeded: an outage, if there was one, is over."""
        if self._down_since is None:  # the usual case, without the lock
            return
        with self._lock:
            down_since, self._down_since = self._down_since, None
            if down_since is not None:  # else another connection said so first
                log.warning(
                    "database reachable again after %.1f s (%d failed requests and passes "
                    "meanwhile)",
                    self._clock() - down_since,
                    self._failures,
                )


_BY_ENGINE: weakref.WeakKeyDictionary[Engine, Reachability] = weakref.WeakKeyDictionary()
_BY_ENGINE_LOCK = threading.Lock()


def reachability(bind: Engine | sessionmaker[Session]) -> Reachability:
    """The engine's record (made, and hooked to its new connections, at the first call)."""
    engine = bind if isinstance(bind, Engine) else bind.kw["bind"]
    with _BY_ENGINE_LOCK:
        found = _BY_ENGINE.get(engine)
        if found is None:
            found = _BY_ENGINE[engine] = Reachability()
            event.listen(engine, "connect", _on_connect(found))
        return found


def _on_connect(found: Reachability) -> Callable[[Any, Any], None]:
    def connected(_dbapi_connection: Any, _record: Any) -> None:
        found.reached()

    return connected


class HealthUnavailable(api.ServerHealth):
    """/healthz while the database is away: its usual fields, status `database_unavailable`,
    and the error body's `error` beside them (a client reads it as any other error)."""

    error: api.ErrorDetail


def response(problem: Unavailable, extra: dict[str, Any] | None = None) -> JSONResponse:
    """503 with the error body (and `extra` beside it: /healthz keeps its own fields)."""
    body = api.ErrorBody(error=api.ErrorDetail(code=CODE, message=problem.message))
    return JSONResponse(
        {**(extra or {}), **body.model_dump(mode="json")},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


async def handle(request: Request, error: Exception) -> JSONResponse:
    """The exception handler of DBAPIError: a 503 for unavailability; anything else is
    raised on, to be answered and logged as the bug it is (brev.server.unhandled)."""
    problem = diagnose(error)
    if problem is None:
        raise error
    note(request.app.state.engine, problem)
    return response(problem)


def note(engine: Engine, problem: Unavailable) -> None:
    """Count `problem` where it belongs: the engine's outage, or the log of lock waits."""
    if problem.kind == "unreachable":
        reachability(engine).failed(problem)
    else:
        _busy.log(logging.WARNING, "busy", "database busy (%s)", problem.reason)


_busy = DedupLog(log)


def noted(engine: Engine, error: BaseException) -> bool:
    """True when `error` is the database being away, which is then counted (`note`: said once
    for the process when it goes, once when it returns); False for any other error."""
    problem = diagnose(error)
    if problem is None:
        return False
    note(engine, problem)
    return True


def probe(engine: Engine) -> Unavailable | None:
    """Ask the database for `SELECT 1` on a connection of its own (no request transaction to
    clean up after a failure); the unavailability met, noted, or None."""
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except (OperationalError, InterfaceError) as error:
        problem = diagnose(error)
        if problem is None:
            raise
        note(engine, problem)
        return problem
    return None
