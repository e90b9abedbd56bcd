"""Endpoints for machines rather than people: health checks and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from sqlalchemy import text

from brev import __version__, api
from brev.server.deps import DbSession
from brev.server.metrics import CONTENT_TYPE

router = APIRouter(tags=["meta"])


@router.get("/healthz")
def healthz(session: DbSession) -> api.ServerHealth:
    """200 when this process can reach its database; load balancers poll it."""
    session.execute(text("SELECT 1"))
    return api.ServerHealth(
        status="ok", version=__version__, database=session.get_bind().dialect.name
    )


@router.get("/metrics", response_class=Response)
def metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE)
