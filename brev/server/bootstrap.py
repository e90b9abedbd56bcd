"""First start against an empty database: an admin, a default org, and a one-time admin token."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from brev.api import Role
from brev.server.db.models import Membership, Org, User
from brev.server.services import events, tokens

DEFAULT_ORG = "default"


@dataclass(frozen=True)
class Bootstrapped:
    admin_email: str
    org: str
    admin_token: str


def bootstrap_if_empty(session: Session, admin_email: str) -> Bootstrapped | None:
    """Create the first admin when the database has no users; None when it already has some."""
    if session.scalar(select(func.count()).select_from(User)):
        return None
    admin = User(email=admin_email, name="admin")
    org = Org(name=DEFAULT_ORG)
    session.add_all([admin, org])
    session.flush()
    session.add(Membership(user_id=admin.id, org_id=org.id, role=Role.ADMIN))
    _, secret = tokens.issue(session, user_id=admin.id, org_id=None, name="admin")
    events.record(
        session,
        org_id=org.id,
        actor_id=None,
        action="plane.bootstrap",
        object_type="user",
        object_id=admin.id,
        object_name=admin_email,
    )
    return Bootstrapped(admin_email=admin_email, org=org.name, admin_token=secret)
