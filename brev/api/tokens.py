"""API tokens: /orgs/{org}/tokens, a person's and CI's (`--scope run`, with its limits)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import Field

from brev.api.base import Name, _Model


class TokenScope(StrEnum):
    RUN = "run"


class Token(_Model):
    id: str
    name: str
    prefix: str = Field(description="the first characters of the token, to recognise it")
    org: str | None
    owner: str = Field(description="email of the user the token acts as")
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    scope: TokenScope | None = Field(
        None, description="run: a CI token (offers, and only the instances it created); null: all"
    )
    max_price_per_hour: float | None = Field(None, description="run tokens: USD per hour at most")
    max_gpus: int | None = Field(None, description="run tokens: GPUs per instance at most")
    max_ttl_seconds: int | None = Field(
        None, description="run tokens: every instance they create expires within this"
    )


class TokenCreate(_Model):
    name: Name
    expires_in_seconds: Annotated[int, Field(gt=0, le=10 * 365 * 24 * 3600)] | None = None
    scope: TokenScope | None = Field(None, description="run: a token for CI jobs' `brev run`")
    max_price_per_hour: float | None = Field(None, gt=0, le=10_000, description="run scope only")
    max_gpus: int | None = Field(None, ge=0, le=1024, description="run scope only")
    max_ttl_seconds: int | None = Field(None, gt=0, le=30 * 86400, description="run scope only")


class TokenCreated(_Model):
    token: Token
    secret: str = Field(description="the token itself; shown once, never again")
