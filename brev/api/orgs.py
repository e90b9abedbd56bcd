"""Users, orgs and their members: /whoami and /orgs/{org}/members."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import Field

from brev.api.base import Name, _Model


class Role(StrEnum):
    ADMIN = "admin"
    MEMBER = "member"


class User(_Model):
    id: str
    email: str
    name: str
    created_at: datetime


class Membership(_Model):
    org: str
    role: Role


class Whoami(_Model):
    user: User
    memberships: list[Membership]
    token_name: str
    token_org: str | None = Field(description="the only org this token may act in; null: any")
    default_org: str | None


class Org(_Model):
    id: str
    name: str
    created_at: datetime
    role: Role = Field(description="the caller's role in this org")


class OrgCreate(_Model):
    name: Name


class Member(_Model):
    email: str
    name: str
    role: Role
    joined_at: datetime


class MemberAdd(_Model):
    email: Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$", max_length=254)]
    name: Annotated[str, Field(max_length=100)] = ""
    role: Role = Role.MEMBER


class MemberRole(_Model):
    role: Role


class MemberAdded(_Model):
    member: Member
    login_token: str | None = Field(
        description="a token for a user created by this call; shown once, never again"
    )
