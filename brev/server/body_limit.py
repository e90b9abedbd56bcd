"""Request bodies have a size limit, enforced before anything parses them (issue 13).

Without one, a member's token sufficed to stall the plane: a 10 MB body whose list held five
million wrong-typed items took 150 s to answer and grew the server by 750 MiB. A body over the
limit is a 413 with the limit in its message, answered from the Content-Length alone where
there is one; a streamed body (no length) is read here up to the limit, then handed on.
Agents' reports (up to 1,000 after an outage) have a larger limit of their own.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyLimit:
    def __init__(
        self, app: ASGIApp, max_bytes: int, per_path: Mapping[str, int] | None = None
    ) -> None:
        self.app = app
        self._max_bytes = max_bytes
        self._per_path = dict(per_path or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._per_path.get(scope.get("path", ""), self._max_bytes)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _refuse(send, limit)
            return
        if declared is not None:
            # The server holds a body to its Content-Length: within the limit, it streams.
            await self.app(scope, receive, send)
            return
        # A streamed body (no length): read up to the limit here, then hand it on.
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client went away: the app sees the same
            chunks.append(message.get("body", b""))
            seen += len(chunks[-1])
            if seen > limit:
                await _refuse(send, limit)
                return
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


async def _refuse(send: Send, limit: int) -> None:
    body = json.dumps(
        {
            "error": {
                "code": "body_too_large",
                "message": f"the request body is over the limit of {limit:,} bytes",
                "fields": [],
            }
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
