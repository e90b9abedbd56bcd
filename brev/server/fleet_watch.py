"""The dashboard's live updates: `GET /api/v1/orgs/{org}/watch`, a Server-Sent Events stream of
two kinds of event about the org. `fleet`: what the lists show changed (an instance made,
removed, or changed in what it is: status, health, settings; a node's status or GPUs
assignments). `readings`: agents reported new GPU readings, said at most every READINGS_S
(agents report every 10 s; a fleet of them reports all the time, and a page that re-read its
lists on each report would cost the plane a list query per page per second).
The stream carries only versions; the page then re-reads what it shows, with If-None-Match
(brev.server.conditional). Chosen over polling by measurement (docs/benchmarks.md, Dashboard):
an open page that sees no change costs the plane a keepalive every 15 s instead of a list
query every second or two.

The versions come from the database, never from this process's memory, so a change made
through any replica reaches pages open on every other: one poller thread per process reads,
every POLL_S and only while pages are open, two grouped queries over all watched orgs
(instances: count, newest `updated_at`, which only a change of what an instance is moves
(brev.server.db.models.INSTANCE_BOOKKEEPING), and newest report; nodes: each one's status by
reports, assignments and report time). A stream holds no transaction, connection or framework
thread while it waits, and is not counted by the admission limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from brev.server.db import outage
from brev.server.db.models import Instance, Node
from brev.server.services.scheduler import status_by_reports

log = logging.getLogger("brev.server.fleet_watch")

POLL_S = 1.0
READINGS_S = 10.0
KEEPALIVE_S = 15.0
# How long EventSource waits before reconnecting after the stream ends (a plane restart).
RETRY_MS = 1000
READERS = 2


@dataclass(frozen=True)
class Versions:
    fleet: str = ""
    readings: str = ""


@dataclass(eq=False)
class _Page:
    org_id: str
    versions: Versions
    loop: asyncio.AbstractEventLoop
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def wake(self) -> None:
        with contextlib.suppress(RuntimeError):  # its loop is closed: the page is gone
            self.loop.call_soon_threadsafe(self.changed.set)


class FleetWatch:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self._lock = threading.Lock()
        self._pages: dict[str, set[_Page]] = {}
        self._poller: threading.Thread | None = None
        self._closing = False
        self._readers = ThreadPoolExecutor(READERS, thread_name_prefix="fleet-watch")

    async def stream(self, org_id: str) -> AsyncIterator[bytes]:
        """The event stream of one open page: the version now, then each new one."""
        versions = await asyncio.wrap_future(self._readers.submit(self._versions, [org_id]))
        page = _Page(org_id, versions.get(org_id, Versions()), asyncio.get_running_loop())
        self._register(page)
        try:
            sent = page.versions
            yield f"retry: {RETRY_MS}\n".encode() + _event("fleet", sent.fleet)
            while not self._closing:
                try:
                    await asyncio.wait_for(page.changed.wait(), KEEPALIVE_S)
                except TimeoutError:
                    yield b": keepalive\n\n"
                    continue
                page.changed.clear()
                now = page.versions
                if now.fleet != sent.fleet and not self._closing:
                    yield _event("fleet", now.fleet)
                if now.readings != sent.readings and not self._closing:
                    yield _event("readings", now.readings)
                sent = now
        finally:
            self._unregister(page)

    def close(self) -> None:
        """The server is stopping: end every stream now (uvicorn waits for open requests);
        the pages' EventSources reconnect to whichever plane answers next."""
        with self._lock:
            self._closing = True
            pages = [p for pages in self._pages.values() for p in pages]
        for page in pages:
            page.wake()

    def _register(self, page: _Page) -> None:
        with self._lock:
            self._pages.setdefault(page.org_id, set()).add(page)
            if self._poller is None:
                self._poller = threading.Thread(
                    target=self._poll, name="fleet-watch-poll", daemon=True
                )
                self._poller.start()

    def _unregister(self, page: _Page) -> None:
        with self._lock:
            pages = self._pages.get(page.org_id)
            if pages is not None:
                pages.discard(page)
                if not pages:
                    del self._pages[page.org_id]

    def _poll(self) -> None:
        failing = False
        readings_at = time.monotonic()
        while True:
            time.sleep(POLL_S)
            with self._lock:
                if not self._pages:
                    self._poller = None  # the next page starts another
                    return
                watched = list(self._pages)
            try:
                versions = self._versions(watched)
            except Exception as error:  # the database is away: pages keep their data, and wait
                # once, not twice a second; an outage as the one line the process says of it
                if not failing and not outage.noted(self._sessions.kw["bind"], error):
                    log.warning("cannot read the fleet versions", exc_info=True)
                failing = True
                continue
            failing = False
            with_readings = time.monotonic() - readings_at >= READINGS_S
            if with_readings:
                readings_at = time.monotonic()
            moved = []
            with self._lock:
                for org_id in watched:
                    new = versions.get(org_id, Versions())
                    for page in self._pages.get(org_id, ()):
                        old = page.versions
                        next_ = Versions(new.fleet, new.readings if with_readings else old.readings)
                        if next_ != old:
                            page.versions = next_
                            moved.append(page)
            for page in moved:
                page.wake()

    def _versions(self, org_ids: list[str]) -> dict[str, Versions]:
        fleet: dict[str, list[object]] = {org_id: [] for org_id in org_ids}
        readings: dict[str, list[object]] = {org_id: [] for org_id in org_ids}
        with self._sessions() as session, session.begin():
            instances = session.execute(
                select(
                    Instance.org_id,
                    func.count(),
                    func.max(Instance.updated_at),
                    func.max(Instance.last_heartbeat_at),
                )
                .where(Instance.org_id.in_(org_ids))
                .group_by(Instance.org_id)
            )
            for org_id, count, changed, reported in instances:
                fleet[org_id] += [count, str(changed)]
                readings[org_id].append(str(reported))
            nodes = session.execute(
                select(
                    Node.org_id,
                    Node.id,
                    Node.last_heartbeat_at,
                    Node.report_interval_seconds,
                    Node.assignments_version,
                )
                .where(Node.org_id.in_(org_ids), Node.removed_at.is_(None))
                .order_by(Node.id)
            )
            for org_id, node_id, reported, interval, assignments in nodes:
                status = status_by_reports(reported, interval)  # turns offline by time alone
                fleet[org_id] += [node_id, status.value, assignments]
                readings[org_id].append(reported.isoformat() if reported else None)
        return {
            org_id: Versions(_digest(fleet[org_id]), _digest(readings[org_id]))
            for org_id in org_ids
        }


def _digest(values: list[object]) -> str:
    return hashlib.blake2b(json.dumps(values).encode(), digest_size=8).hexdigest()


def _event(kind: str, version: str) -> bytes:
    return f"event: {kind}\ndata: {json.dumps({'version': version})}\n\n".encode()


_CREATING = threading.Lock()


def of(app: FastAPI) -> FleetWatch:
    """The app's watch, made on first use."""
    with _CREATING:
        watch: FleetWatch | None = getattr(app.state, "fleet_watch", None)
        if watch is None:
            watch = FleetWatch(app.state.sessions)
            app.state.fleet_watch = watch
        return watch
