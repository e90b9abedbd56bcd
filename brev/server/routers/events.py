from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from brev import api
from brev.server.deps import DbSession, InOrg
from brev.server.services import events

router = APIRouter(tags=["events"])


@router.get("/orgs/{org}/events")
def list_events(
    session: DbSession, ctx: InOrg, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[api.Event]:
    """The org's audit log, newest first."""
    return events.list_events(session, ctx, limit)
