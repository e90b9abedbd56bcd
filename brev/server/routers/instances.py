from __future__ import annotations

from fastapi import APIRouter

from brev import api
from brev.server.deps import DbSession, InOrg
from brev.server.services import instances

router = APIRouter(tags=["instances"])


@router.get("/orgs/{org}/instances")
def list_instances(session: DbSession, ctx: InOrg) -> list[api.Instance]:
    return instances.list_instances(session, ctx)


@router.get("/orgs/{org}/instances/{name}")
def get_instance(session: DbSession, ctx: InOrg, name: str) -> api.Instance:
    return instances.get_instance(session, ctx, name)
