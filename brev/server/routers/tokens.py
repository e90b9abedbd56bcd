from __future__ import annotations

from fastapi import APIRouter

from brev import api
from brev.server.deps import DbSession, InOrg
from brev.server.openapi_errors import ORG_ROUTES, WITH_BODY, conflict
from brev.server.services import tokens

router = APIRouter(tags=["tokens"], responses=ORG_ROUTES)


@router.get("/orgs/{org}/tokens")
def list_tokens(session: DbSession, ctx: InOrg) -> list[api.Token]:
    return tokens.list_tokens(session, ctx)


@router.post(
    "/orgs/{org}/tokens",
    status_code=201,
    responses={**WITH_BODY, **conflict("the caller has an active token of that name")},
)
def create_token(session: DbSession, ctx: InOrg, body: api.TokenCreate) -> api.TokenCreated:
    return tokens.create_token(session, ctx, body)


@router.delete(
    "/orgs/{org}/tokens/{name}", responses=conflict("several members have a token of that name")
)
def revoke_token(session: DbSession, ctx: InOrg, name: str) -> api.Token:
    return tokens.revoke_token(session, ctx, name)
