"""Exceptions no handler took: answered `500 internal_error`, logged once (issue 13, item 6).

Starlette answers an unhandled exception in its outermost middleware and then raises it on,
so that the server logs it: with our own handler logging it too, every bug was written twice,
and on every request that met it. Here, just outside the routes, it is answered and logged
once with its traceback; the same failure again (same type, raised at the same line) is
counted and summarised (brev.server.log_dedup), and is not raised on.
"""

from __future__ import annotations

import logging

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from brev import api
from brev.server.log_dedup import DedupLog, raise_site

log = logging.getLogger("brev.server")

CODE = "internal_error"
MESSAGE = "internal error; the server log has the details"


def error_log() -> DedupLog:
    """Where UnhandledErrors writes; flushed when the server stops, for the last counts."""
    return DedupLog(log)


def internal_error() -> JSONResponse:
    body = api.ErrorBody(error=api.ErrorDetail(code=CODE, message=MESSAGE))
    return JSONResponse(body.model_dump(mode="json"), status_code=500)


class UnhandledErrors:
    def __init__(self, app: ASGIApp, errors: DedupLog) -> None:
        self.app = app
        self._log = errors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_noting_start(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_noting_start)
        except Exception as error:
            self._log.log(
                logging.ERROR,
                raise_site(error),
                "unhandled error in %s %s (%s: %s)",
                scope["method"],
                scope["path"],
                type(error).__name__,
                str(error).splitlines()[0][:200] if str(error) else "",
                exc_info=error,
            )
            if not started:  # else the client sees the response cut short, as it would
                await internal_error()(scope, receive, send)
