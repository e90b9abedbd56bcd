"""Org scoping: every org-owned object is reached through an OrgContext, which exists only for
callers that are members of that org and whose token may act in it."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from brev.api import Role
from brev.server.auth import Principal
from brev.server.db.models import Membership, Org
from brev.server.errors import Forbidden, NotFound


@dataclass(frozen=True)
class OrgContext:
    principal: Principal
    org: Org
    role: Role

    def require_admin(self, action: str) -> None:
        if self.role != Role.ADMIN:
            raise Forbidden(f"{action} needs the admin role in org '{self.org.name}'")


def org_context(session: Session, principal: Principal, org_name: str) -> OrgContext:
    """The caller's view of `org_name`; NotFound, never Forbidden, when they may not see it."""
    row = session.execute(
        select(Org, Membership.role)
        .join(Membership, Membership.org_id == Org.id)
        .where(Org.name == org_name, Membership.user_id == principal.user_id)
    ).one_or_none()
    if row is None or (principal.token_org_id not in (None, row[0].id)):
        raise NotFound(f"org '{org_name}' not found")
    return OrgContext(principal=principal, org=row[0], role=Role(row[1]))
