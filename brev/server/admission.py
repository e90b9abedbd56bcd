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


class AdmissionLimit:
    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self._slots = anyio.Semaphore(limit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        async with self._slots:
            await self.app(scope, receive, send)
