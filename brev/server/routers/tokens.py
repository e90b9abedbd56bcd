from __future__ import annotations

from fastapi import APIRouter

from brev import api
from brev.server.deps import DbSession, InOrg
from brev.server.services import tokens

router = APIRouter(tags=["tokens"])


@router.get("/orgs/{org}/tokens")
def list_tokens(session: DbSession, ctx: InOrg) -> list[api.Token]:
    return tokens.list_tokens(session, ctx)


@router.post("/orgs/{org}/tokens", status_code=201)
def create_token(session: DbSession, ctx: InOrg, body: api.TokenCreate) -> api.TokenCreated:
    return tokens.create_token(session, ctx, body)


@router.delete("/orgs/{org}/tokens/{name}")
def revoke_token(session: DbSession, ctx: InOrg, name: str) -> api.Token:
    return tokens.revoke_token(session, ctx, name)
