"""Bearer tokens: how they are made, stored (a SHA-256 only) and checked on every request."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from brev.server.db.models import ApiToken, User, utcnow
from brev.server.errors import Unauthenticated

TOKEN_PREFIX = "brev_"  # noqa: S105 (a marker that makes leaked tokens greppable)
VISIBLE_PREFIX_LENGTH = 12  # "brev_" and 7 random characters: enough to tell tokens apart
# Writing last_used_at on every request would make every read a write; a minute is precise
# enough to tell a live token from a forgotten one.
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user, through one of their tokens."""

    user_id: str
    email: str
    token_id: str
    token_name: str
    token_kind: str
    token_org_id: str | None
    token_instance_id: str | None = None
    token_node_id: str | None = None
    # `run`: a CI token (brev.server.services.run_tokens); its limits, None where unlimited.
    token_scope: str | None = None
    max_price_per_hour: float | None = None
    max_gpus: int | None = None
    max_ttl_seconds: int | None = None


def new_secret() -> str:
    # 32 random bytes: guessing is hopeless, so a plain SHA-256 (no salt, no stretching) is
    # the right hash, and lets a request find its token by an indexed equality lookup.
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def visible_prefix(secret: str) -> str:
    return secret[:VISIBLE_PREFIX_LENGTH]


def authenticate(session: Session, secret: str | None, now: datetime | None = None) -> Principal:
    if not secret:
        raise Unauthenticated("missing token: send 'Authorization: Bearer <token>'")
    row = session.execute(
        select(ApiToken, User)
        .join(User, User.id == ApiToken.user_id)
        .where(ApiToken.secret_hash == hash_secret(secret))
    ).one_or_none()
    if row is None:
        raise Unauthenticated("invalid token")
    token, user = row
    return check(token, user, now or utcnow())


@dataclass
class TokenRow:
    """A token as check() reads it, from a row read without the ORM (brev.server.ingest);
    `last_used_at` is moved here when due."""

    id: str
    name: str
    kind: str
    org_id: str | None
    instance_id: str | None
    node_id: str | None
    scope: str | None
    revoked_at: datetime | None
    expires_at: datetime | None
    last_used_at: datetime | None
    max_price_per_hour: float | None
    max_gpus: int | None
    max_ttl_seconds: int | None


@dataclass(frozen=True)
class UserRow:
    id: str
    email: str
    disabled_at: datetime | None


def check(token: ApiToken | TokenRow, user: User | UserRow, now: datetime) -> Principal:
    """The caller a found token stands for; Unauthenticated when it may not act any more."""
    if token.revoked_at is not None:
        raise Unauthenticated(f"token '{token.name}' was revoked")
    if token.expires_at is not None and token.expires_at <= now:
        raise Unauthenticated(f"token '{token.name}' expired")
    if user.disabled_at is not None:
        raise Unauthenticated("this user is disabled")
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        token.last_used_at = now
    return Principal(
        user_id=user.id,
        email=user.email,
        token_id=token.id,
        token_name=token.name,
        token_kind=token.kind,
        token_org_id=token.org_id,
        token_instance_id=token.instance_id,
        token_node_id=token.node_id,
        token_scope=token.scope,
        max_price_per_hour=token.max_price_per_hour,
        max_gpus=token.max_gpus,
        max_ttl_seconds=token.max_ttl_seconds,
    )
