"""Node agents' long-poll for their assignments: `GET /api/v1/agent/assignments?after=V&wait=S`.

An agent otherwise learns what to host from the answer to its next report, up to a report
interval (10 s) after `brev create`. Here the request waits until the node's
`assignments_version` differs from `after` (brev.server.services.node_instances bumps it on
every change), or `wait` seconds (at most 30) pass, and answers the node's current state.

Waiting costs no transaction, no connection and no thread: the request waits on an asyncio
event, outside the admission limit (brev.server.admission). Two things set it:

- a commit in this process that bumped the node (an `after_commit` listener on the plane's
  sessions), within a millisecond;
- one poller thread per process that, while anyone waits, reads the versions of every
  waited-for node in one primary-key query every POLL_S: a bump by another server replica
  on the same database is seen within that.

The reads around a wait (the token and version before, the state after) run on a few threads of
their own, never on the framework's pool: a burst of agents reconnecting must not take the
threads or connections that admitted requests need.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from fastapi import FastAPI
from sqlalchemy import event, select
from sqlalchemy.orm import Session, sessionmaker

from brev import api
from brev.server.auth import Principal, authenticate
from brev.server.db import outage
from brev.server.db.models import Node
from brev.server.errors import Forbidden
from brev.server.services import node_instances, node_reports

log = logging.getLogger("brev.server.assignment_watch")

MAX_WAIT_S = 30.0
POLL_S = 0.5
# The poller's query names at most this many nodes at once.
POLL_CHUNK = 500
READERS = 4


@dataclass(eq=False)
class _Waiter:
    node_id: str
    after: int
    loop: asyncio.AbstractEventLoop
    event: asyncio.Event = field(default_factory=asyncio.Event)

    def wake(self) -> None:
        with contextlib.suppress(RuntimeError):  # its loop is closed: nobody waits any more
            self.loop.call_soon_threadsafe(self.event.set)


@dataclass(frozen=True)
class _Seen:
    node_id: str
    generation: int  # of this process's bumps of the node, taken before its version was read
    state: api.AssignmentsWatch | None  # None: the version was `after`, nothing to say yet


class AssignmentWatch:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self._lock = threading.Lock()
        self._waiters: dict[str, set[_Waiter]] = {}
        # Per node, how many commits of this process bumped it: a bump that lands between a
        # request's read and its wait shows as a different generation (see _register).
        self._generation: dict[str, int] = {}
        self._poller: threading.Thread | None = None
        self._closing = False
        self._readers = ThreadPoolExecutor(READERS, thread_name_prefix="assignment-watch")
        event.listen(sessions, "after_commit", self._after_commit)
        event.listen(sessions, "after_rollback", _forget_bumps)

    async def watch(self, secret: str | None, after: int, wait: float) -> api.AssignmentsWatch:
        """The node's state once its version differs from `after`, or after `wait` seconds."""
        seen = await self._read(self._first, secret, after)
        if seen.state is not None or self._closing:
            return seen.state or await self._read_state(seen.node_id)
        waiter = _Waiter(seen.node_id, after, asyncio.get_running_loop())
        self._register(waiter, seen.generation)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter.event.wait(), min(max(wait, 0.0), MAX_WAIT_S))
        finally:
            self._unregister(waiter)
        return await self._read_state(seen.node_id)

    def notify(self, node_ids: set[str]) -> None:
        """These nodes' versions were bumped and committed: wake whoever waits on them."""
        with self._lock:
            for node_id in node_ids:
                self._generation[node_id] = self._generation.get(node_id, 0) + 1
            woken = [w for node_id in node_ids for w in self._waiters.get(node_id, ())]
        for waiter in woken:
            waiter.wake()

    def close(self) -> None:
        """The server is stopping: answer every wait now, and new ones without waiting (it
        would otherwise hold the shutdown for up to MAX_WAIT_S)."""
        with self._lock:
            self._closing = True
            woken = [w for waiters in self._waiters.values() for w in waiters]
        for waiter in woken:
            waiter.wake()

    # -- the database, on the readers' threads -----------------------------------------

    async def _read(self, read: Callable[..., _Seen], *args: object) -> _Seen:
        return await asyncio.wrap_future(self._readers.submit(read, *args))

    async def _read_state(self, node_id: str) -> api.AssignmentsWatch:
        seen = await self._read(self._state, node_id)
        assert seen.state is not None
        return seen.state

    def _first(self, secret: str | None, after: int) -> _Seen:
        with self._sessions() as session, session.begin():
            node = node_reports.live_node(session, _node_agent(session, secret).token_node_id)
            generation = self._generation_of(node.id)  # before the version: see _register
            if node.assignments_version == after:
                return _Seen(node.id, generation, None)
            return _Seen(node.id, generation, node_reports.watched(session, node))

    def _state(self, node_id: str) -> _Seen:
        with self._sessions() as session, session.begin():
            node = node_reports.live_node(session, node_id)
            return _Seen(node.id, 0, node_reports.watched(session, node))

    def _generation_of(self, node_id: str) -> int:
        with self._lock:
            return self._generation.get(node_id, 0)

    # -- waiters -------------------------------------------------------------------------

    def _register(self, waiter: _Waiter, generation: int) -> None:
        with self._lock:
            self._waiters.setdefault(waiter.node_id, set()).add(waiter)
            # A bump committed after the version was read (its notify came before this
            # registration, so it found no waiter): answer now rather than at the next poll.
            missed = self._generation.get(waiter.node_id, 0) != generation or self._closing
            if self._poller is None:
                self._poller = threading.Thread(
                    target=self._poll, name="assignment-watch-poll", daemon=True
                )
                self._poller.start()
        if missed:
            waiter.wake()

    def _unregister(self, waiter: _Waiter) -> None:
        with self._lock:
            waiters = self._waiters.get(waiter.node_id)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiters[waiter.node_id]

    def _poll(self) -> None:
        """Every POLL_S while anyone waits: wake the waiters whose node's version moved (a
        bump by another replica, or one whose notify this process missed)."""
        failing = False
        while True:
            time.sleep(POLL_S)
            with self._lock:
                if not self._waiters:
                    self._poller = None  # the next waiter starts another
                    return
                watched = list(self._waiters)
            try:
                versions = self._versions(watched)
            except Exception as error:  # the database is away: the waits time out on their own
                # once, not twice a second; an outage as the one line the process says of it
                if not failing and not outage.noted(self._sessions.kw["bind"], error):
                    log.warning("cannot read nodes' assignment versions", exc_info=True)
                failing = True
                continue
            failing = False
            with self._lock:
                woken = [
                    w
                    for node_id in watched
                    for w in self._waiters.get(node_id, ())
                    if versions.get(node_id) != w.after
                ]
            for waiter in woken:
                waiter.wake()

    def _versions(self, node_ids: list[str]) -> dict[str, int]:
        """One indexed query (the primary key) per POLL_CHUNK nodes, one column besides it.
        A node that is gone or removed is missing: its waiters wake and hear why."""
        versions: dict[str, int] = {}
        with self._sessions() as session, session.begin():
            for start in range(0, len(node_ids), POLL_CHUNK):
                rows = session.execute(
                    select(Node.id, Node.assignments_version).where(
                        Node.id.in_(node_ids[start : start + POLL_CHUNK]),
                        Node.removed_at.is_(None),
                    )
                )
                versions.update({node_id: version for node_id, version in rows})
        return versions

    def _after_commit(self, session: Session) -> None:
        bumped = session.info.pop(node_instances.BUMPED, None)
        if bumped:
            self.notify(bumped)


def _forget_bumps(session: Session) -> None:
    session.info.pop(node_instances.BUMPED, None)


def _node_agent(session: Session, secret: str | None) -> Principal:
    principal = authenticate(session, secret)
    if principal.token_kind != "agent" or principal.token_node_id is None:  # noqa: S105
        raise Forbidden("only a node's agent token may wait for its assignments")
    return principal


_CREATING = threading.Lock()


def of(app: FastAPI) -> AssignmentWatch:
    """The app's watch, made on first use (by the route, or by `brev server` at start)."""
    with _CREATING:
        watch: AssignmentWatch | None = getattr(app.state, "assignment_watch", None)
        if watch is None:
            watch = AssignmentWatch(app.state.sessions)
            app.state.assignment_watch = watch
        return watch
