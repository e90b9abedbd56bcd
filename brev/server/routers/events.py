from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from brev import api
from brev.server.deps import DbSession, InOrg
from brev.server.openapi_errors import ORG_ROUTES
from brev.server.services import events

router = APIRouter(tags=["events"], responses=ORG_ROUTES)


@router.get("/orgs/{org}/events")
def list_events(
    session: DbSession,
    ctx: InOrg,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    instance: Annotated[str | None, Query(max_length=63, description="its name")] = None,
    kind: Annotated[
        str | None, Query(max_length=64, description="action prefix, e.g. instance. or member.")
    ] = None,
    actor: Annotated[
        str | None, Query(max_length=254, description="email; 'plane' for the plane's own")
    ] = None,
    before: Annotated[int | None, Query(ge=1, description="only events older than this id")] = None,
) -> list[api.Event]:
    """The org's audit log, newest first; page on with before=<the last id you got>."""
    query = events.EventQuery(instance=instance, kind=kind, actor=actor, before=before)
    return events.list_events(session, ctx, limit, query)
