"""The dashboard's fleet overview and its live updates."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import TypeAdapter

from brev.api.fleet import FleetOverview
from brev.server import fleet_watch
from brev.server.conditional import json_or_not_modified
from brev.server.deps import DbSession, InOrg
from brev.server.openapi_errors import NOT_MODIFIED, ORG_ROUTES
from brev.server.services import fleet

router = APIRouter(tags=["dashboard"], responses=ORG_ROUTES)
_OVERVIEW = TypeAdapter(FleetOverview)


@router.get("/orgs/{org}/fleet", response_model=FleetOverview, responses=NOT_MODIFIED)
def fleet_overview(request: Request, session: DbSession, ctx: InOrg) -> Response:
    """Every GPU of the org, cloud and owned, with its newest reading; cost now, spend this
    week, idle GPUs. Sends an ETag; answers If-None-Match with 304."""
    return json_or_not_modified(request, _OVERVIEW, fleet.overview(session, ctx))


@router.get(
    "/orgs/{org}/watch",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def watch_fleet(request: Request, ctx: InOrg) -> StreamingResponse:
    """Server-Sent Events: `event: fleet` with `{"version"}` at once and whenever anything the
    dashboard shows of the org changes (on any replica); a keepalive comment every 15 s."""
    stream = fleet_watch.of(request.app).stream(ctx.org.id)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream, media_type="text/event-stream", headers=headers)
