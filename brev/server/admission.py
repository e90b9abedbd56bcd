"""At most N requests inside the application at once; the rest wait outside, without a thread.

FastAPI runs each sync dependency and the route as separate hops on a pool of 40 threads, and a
request holds its database connection (on SQLite also the write lock, once it has written) from
its first hop to its commit. Let more requests in than there are connections, and threads fill
up with requests waiting for a connection while the requests holding one wait for a thread: a
burst of ~60 requests stalled the server for 30 s and ended in 500s. Admitting fewer requests
than both the connection pool and the thread pool holds means a holder always gets a thread.
"""

from __future__ import annotations

import anyio
from starlette.types import ASGIApp, Receive, Scope, Send

from brev.api import API_PREFIX

# Node agents' long-polls wait up to 30 s holding no thread or connection (their short reads
# run on threads of their own, brev.server.assignment_watch): counted here, 20 waiting agents
# would shut everyone else out. Agents' reports hold neither either: they wait in the report
# writer's queue (brev.server.ingest), whose own threads and connections write them. Counted,
# a burst of reports filled every slot while a user's request waited behind them, each batch
# held 20 reports at most, and taking a slot was a twentieth of a report's CPU.
NOT_ADMITTED = frozenset({f"{API_PREFIX}/agent/assignments", f"{API_PREFIX}/agent/reports"})
# The dashboard's event streams (brev.server.fleet_watch) stay open as long as a page does.
NOT_ADMITTED_SUFFIX = "/watch"


class AdmissionLimit:
    def __init__(self, app: ASGIApp, limit: int, not_admitted: frozenset[str] = NOT_ADMITTED):
        self.app = app
        self._slots = anyio.Semaphore(limit)
        self._not_admitted = not_admitted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if (
            scope["type"] != "http"
            or path in self._not_admitted
            or (path.startswith(f"{API_PREFIX}/orgs/") and path.endswith(NOT_ADMITTED_SUFFIX))
        ):
            await self.app(scope, receive, send)
            return
        async with self._slots:
            await self.app(scope, receive, send)
