from __future__ import annotations

from fastapi import APIRouter, Response

from brev import api
from brev.server.deps import Caller, DbSession, InOrg, admin_only
from brev.server.openapi_errors import USER_ROUTES, WITH_BODY, conflict, errors
from brev.server.services import orgs

router = APIRouter(tags=["orgs"], responses=USER_ROUTES)


@router.get("/whoami")
def whoami(session: DbSession, caller: Caller) -> api.Whoami:
    return orgs.whoami(session, caller)


@router.get("/orgs")
def list_orgs(session: DbSession, caller: Caller) -> list[api.Org]:
    return orgs.list_orgs(session, caller)


@router.post(
    "/orgs", status_code=201, responses={**WITH_BODY, **conflict("an org of that name exists")}
)
def create_org(session: DbSession, caller: Caller, body: api.OrgCreate) -> api.Org:
    return orgs.create_org(session, caller, body)


@router.get("/orgs/{org}", responses=errors(404))
def get_org(ctx: InOrg) -> api.Org:
    return orgs.get_org(ctx)


@router.get("/orgs/{org}/members", responses=errors(404))
def list_members(session: DbSession, ctx: InOrg) -> list[api.Member]:
    return orgs.list_members(session, ctx)


@router.post(
    "/orgs/{org}/members",
    status_code=201,
    dependencies=[admin_only("adding members")],
    responses={**WITH_BODY, **errors(404), **conflict("already a member")},
)
def add_member(session: DbSession, ctx: InOrg, body: api.MemberAdd) -> api.MemberAdded:
    return orgs.add_member(session, ctx, body)


@router.put(
    "/orgs/{org}/members/{email}",
    dependencies=[admin_only("changing roles")],
    responses={**WITH_BODY, **errors(404), **conflict("the org's last admin")},
)
def set_member_role(session: DbSession, ctx: InOrg, email: str, body: api.MemberRole) -> api.Member:
    """Change a member's role (admins only); 409 for the org's last admin."""
    return orgs.set_role(session, ctx, email, body.role)


@router.delete(
    "/orgs/{org}/members/{email}",
    status_code=204,
    dependencies=[admin_only("removing members")],
    responses={**errors(404), **conflict("the org's last admin")},
)
def remove_member(session: DbSession, ctx: InOrg, email: str) -> Response:
    orgs.remove_member(session, ctx, email)
    return Response(status_code=204)
