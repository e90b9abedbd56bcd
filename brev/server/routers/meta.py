"""Endpoints for machines rather than people: health checks and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from brev import __version__, api
from brev.server.db import outage
from brev.server.metrics import CONTENT_TYPE
from brev.server.openapi_errors import errors

router = APIRouter(tags=["meta"])


@router.get(
    "/healthz",
    response_model=api.ServerHealth,
    responses={
        503: {
            **errors(503)[503],
            "model": outage.HealthUnavailable,
            "description": "the database is unreachable: status `database_unavailable`, the "
            "usual fields, and the error body beside them",
        }
    },
)
def healthz(request: Request) -> Response:
    """200 when this process can reach its database; load balancers poll it."""
    engine = request.app.state.engine
    health = api.ServerHealth(status="ok", version=__version__, database=engine.dialect.name)
    problem = outage.probe(engine)
    if problem is not None:
        return outage.response(problem, {**health.model_dump(), "status": outage.CODE})
    return JSONResponse(health.model_dump(mode="json"))


@router.get("/metrics", response_class=Response)
def metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE)
