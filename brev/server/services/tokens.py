"""API tokens of people and CI jobs: issue, list, revoke."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from brev import api
from brev.api import Role
from brev.server.auth import hash_secret, new_secret, visible_prefix
from brev.server.db.models import ApiToken, Org, User, utcnow
from brev.server.errors import Conflict, InvalidInput, NotFound
from brev.server.services import events
from brev.server.services.scope import OrgContext


def issue(
    session: Session,
    *,
    user_id: str,
    org_id: str | None,
    name: str,
    expires_in_seconds: int | None = None,
    scope: api.TokenScope | None = None,
    max_price_per_hour: float | None = None,
    max_gpus: int | None = None,
    max_ttl_seconds: int | None = None,
) -> tuple[ApiToken, str]:
    """A new token and its secret. The secret exists only in the return value."""
    secret = new_secret()
    now = utcnow()
    token = ApiToken(
        user_id=user_id,
        org_id=org_id,
        name=name,
        prefix=visible_prefix(secret),
        secret_hash=hash_secret(secret),
        created_at=now,
        expires_at=now + timedelta(seconds=expires_in_seconds) if expires_in_seconds else None,
        scope=scope.value if scope else None,
        max_price_per_hour=max_price_per_hour,
        max_gpus=max_gpus,
        max_ttl_seconds=max_ttl_seconds,
    )
    session.add(token)
    session.flush()
    return token, secret


LIMITS = ("max_price_per_hour", "max_gpus", "max_ttl_seconds")


def _active_by_name(session: Session, user_id: str, name: str) -> ApiToken | None:
    return session.scalar(
        select(ApiToken).where(
            ApiToken.user_id == user_id, ApiToken.name == name, ApiToken.revoked_at.is_(None)
        )
    )


def create_token(session: Session, ctx: OrgContext, body: api.TokenCreate) -> api.TokenCreated:
    """A token of the caller limited to the context's org: what a CI job should hold (scope
    `run`: only what `brev run` needs, within its limits; see services/run_tokens.py)."""
    user_id = ctx.principal.user_id
    limits = {field: getattr(body, field) for field in LIMITS}
    if body.scope is None:
        for field, value in limits.items():
            if value is not None:
                raise InvalidInput(field, "limits apply to run-scoped tokens only: add scope run")
    if _active_by_name(session, user_id, body.name) is not None:
        raise Conflict(
            f"you already have a token named '{body.name}'; revoke it first or choose another name"
        )
    token, secret = issue(
        session,
        user_id=user_id,
        org_id=ctx.org.id,
        name=body.name,
        expires_in_seconds=body.expires_in_seconds,
        scope=body.scope,
        **limits,
    )
    events.record(
        session,
        org_id=ctx.org.id,
        actor_id=user_id,
        action="token.create",
        object_type="token",
        object_id=token.id,
        object_name=token.name,
        details={"prefix": token.prefix, "expires_at": _iso(token), "scope": token.scope, **limits},
    )
    return api.TokenCreated(token=_to_api(token, ctx.org.name, ctx.principal.email), secret=secret)


def list_tokens(session: Session, ctx: OrgContext) -> list[api.Token]:
    """The caller's tokens usable in this org; an org admin sees every member's."""
    query = (
        select(ApiToken, User.email, Org.name)
        .join(User, User.id == ApiToken.user_id)
        .outerjoin(Org, Org.id == ApiToken.org_id)
        .where(ApiToken.kind == "user")
        .order_by(ApiToken.created_at)
    )
    if ctx.role == Role.ADMIN:
        query = query.where(ApiToken.org_id == ctx.org.id)
    else:
        query = query.where(
            ApiToken.user_id == ctx.principal.user_id,
            (ApiToken.org_id == ctx.org.id) | ApiToken.org_id.is_(None),
        )
    return [_to_api(t, org, email) for t, email, org in session.execute(query).all()]


def revoke_token(session: Session, ctx: OrgContext, name: str) -> api.Token:
    """Revoke the caller's active token called `name` (an admin: any token of the org)."""
    query = (
        select(ApiToken, User.email)
        .join(User, User.id == ApiToken.user_id)
        .where(ApiToken.name == name, ApiToken.revoked_at.is_(None), ApiToken.kind == "user")
    )
    mine = query.where(
        ApiToken.user_id == ctx.principal.user_id,
        (ApiToken.org_id == ctx.org.id) | ApiToken.org_id.is_(None),
    )
    row = session.execute(mine).first()
    if row is None and ctx.role == Role.ADMIN:
        matches = session.execute(query.where(ApiToken.org_id == ctx.org.id)).all()
        if len(matches) > 1:
            owners = ", ".join(sorted(email for _, email in matches))
            raise Conflict(f"several members have a token named '{name}' ({owners})")
        row = matches[0] if matches else None
    if row is None:
        raise NotFound(f"no active token named '{name}' in org '{ctx.org.name}'")
    token, email = row
    token.revoked_at = utcnow()
    events.record(
        session,
        org_id=ctx.org.id,
        actor_id=ctx.principal.user_id,
        action="token.revoke",
        object_type="token",
        object_id=token.id,
        object_name=token.name,
        details={"prefix": token.prefix, "owner": email},
    )
    org_name = ctx.org.name if token.org_id else None
    return _to_api(token, org_name, email)


def _iso(token: ApiToken) -> str | None:
    return token.expires_at.isoformat() if token.expires_at else None


def _to_api(token: ApiToken, org_name: str | None, owner: str) -> api.Token:
    return api.Token(
        id=token.id,
        name=token.name,
        prefix=token.prefix,
        org=org_name,
        owner=owner,
        created_at=token.created_at,
        expires_at=token.expires_at,
        last_used_at=token.last_used_at,
        revoked_at=token.revoked_at,
        scope=api.TokenScope(token.scope) if token.scope else None,
        max_price_per_hour=token.max_price_per_hour,
        max_gpus=token.max_gpus,
        max_ttl_seconds=token.max_ttl_seconds,
    )
