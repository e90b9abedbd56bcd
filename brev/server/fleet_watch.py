"""The dashboard's live updates: `GET /api/v1/orgs/{org}/watch`, a Server-Sent Events stream
that says `event: fleet` whenever anything the dashboard shows of the org changed.

The stream carries only a version; the page then re-reads what it shows, with If-None-Match
(brev.server.conditional). Chosen over polling by measurement (docs/benchmarks.md, Dashboard):
an open page that sees no change costs the plane a keepalive every 15 s instead of a list
query every second or two.

The version comes from the database, never from this process's memory, so a change made
through any replica reaches pages open on every other: one poller thread per process reads,
every POLL_S and only while pages are open, two grouped queries over all watched orgs
(instances: count and newest `updated_at`, which every change of a row moves, agent reports
included; nodes: each one's report time, cadence, status by reports and assignments). A
stream holds no transaction, connection or framework thread while it waits, and is not
counted by the admission limit.
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

from brev.server.db.models import Instance, Node
from brev.server.services.scheduler import status_by_reports

log = logging.getLogger("brev.server.fleet_watch")

POLL_S = 1.0
KEEPALIVE_S = 15.0
# How long EventSource waits before reconnecting after the stream ends (a plane restart).
RETRY_MS = 1000
READERS = 2


@dataclass(eq=False)
class _Page:
    org_id: str
    version: str
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
        page = _Page(org_id, versions.get(org_id, ""), asyncio.get_running_loop())
        self._register(page)
        try:
            sent = page.version
            yield f"retry: {RETRY_MS}\n".encode() + _event(sent)
            while not self._closing:
                try:
                    await asyncio.wait_for(page.changed.wait(), KEEPALIVE_S)
                except TimeoutError:
                    yield b": keepalive\n\n"
                    continue
                page.changed.clear()
                if page.version != sent and not self._closing:
                    sent = page.version
                    yield _event(sent)
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
        while True:
            time.sleep(POLL_S)
            with self._lock:
                if not self._pages:
                    self._poller = None  # the next page starts another
                    return
                watched = list(self._pages)
            try:
                versions = self._versions(watched)
            except Exception:  # the database is away: pages keep their data, and wait
                if not failing:
                    log.warning("cannot read the fleet versions", exc_info=True)
                failing = True
                continue
            failing = False
            with self._lock:
                moved = [
                    page
                    for org_id in watched
                    for page in self._pages.get(org_id, ())
                    if versions.get(org_id, "") != page.version
                ]
                for page in moved:
                    page.version = versions.get(page.org_id, "")
            for page in moved:
                page.wake()

    def _versions(self, org_ids: list[str]) -> dict[str, str]:
        parts: dict[str, list[object]] = {org_id: [] for org_id in org_ids}
        with self._sessions() as session, session.begin():
            instances = session.execute(
                select(Instance.org_id, func.count(), func.max(Instance.updated_at))
                .where(Instance.org_id.in_(org_ids))
                .group_by(Instance.org_id)
            )
            for org_id, count, newest in instances:
                parts[org_id] += [count, str(newest)]
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
                stamp = reported.isoformat() if reported else None
                parts[org_id] += [node_id, stamp, status.value, assignments]
        return {org_id: _digest(values) for org_id, values in parts.items()}


def _digest(values: list[object]) -> str:
    return hashlib.blake2b(json.dumps(values).encode(), digest_size=8).hexdigest()


def _event(version: str) -> bytes:
    return f"event: fleet\ndata: {json.dumps({'version': version})}\n\n".encode()


_CREATING = threading.Lock()


def of(app: FastAPI) -> FleetWatch:
    """The app's watch, made on first use."""
    with _CREATING:
        watch: FleetWatch | None = getattr(app.state, "fleet_watch", None)
        if watch is None:
            watch = FleetWatch(app.state.sessions)
            app.state.fleet_watch = watch
        return watch
