"""Orgs and their members."""

from __future__ import annotations

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from brev import api
from brev.api import Role
from brev.server.auth import Principal
from brev.server.db.models import Membership, Org, User
from brev.server.errors import Conflict, Forbidden, NotFound
from brev.server.services import events, tokens
from brev.server.services.scope import OrgContext


def _visible_orgs(principal: Principal) -> Select[Org, str]:
    query = (
        select(Org, Membership.role)
        .join(Membership, Membership.org_id == Org.id)
        .where(Membership.user_id == principal.user_id)
    )
    if principal.token_org_id is not None:
        query = query.where(Org.id == principal.token_org_id)
    return query.order_by(Membership.created_at, Org.name)


def _to_api(org: Org, role: str) -> api.Org:
    return api.Org(id=org.id, name=org.name, created_at=org.created_at, role=Role(role))


def list_orgs(session: Session, principal: Principal) -> list[api.Org]:
    return [_to_api(org, role) for org, role in session.execute(_visible_orgs(principal)).all()]


def whoami(session: Session, principal: Principal) -> api.Whoami:
    user = session.get_one(User, principal.user_id)
    orgs = list_orgs(session, principal)
    token_org = next((o.name for o in orgs if o.id == principal.token_org_id), None)
    return api.Whoami(
        user=api.User.model_validate(user),
        memberships=[api.Membership(org=o.name, role=o.role) for o in orgs],
        token_name=principal.token_name,
        token_org=token_org,
        default_org=orgs[0].name if orgs else None,
    )


def create_org(session: Session, principal: Principal, body: api.OrgCreate) -> api.Org:
    if principal.token_org_id is not None:
        raise Forbidden("this token is limited to one org and cannot create orgs")
    if session.scalar(select(func.count()).where(Org.name == body.name)):
        raise Conflict(f"an org named '{body.name}' already exists; choose another name")
    org = Org(name=body.name)
    session.add(org)
    session.flush()
    session.add(Membership(user_id=principal.user_id, org_id=org.id, role=Role.ADMIN))
    events.record(
        session,
        org_id=org.id,
        actor_id=principal.user_id,
        action="org.create",
        object_type="org",
        object_id=org.id,
        object_name=org.name,
    )
    return _to_api(org, Role.ADMIN)


def get_org(ctx: OrgContext) -> api.Org:
    return _to_api(ctx.org, ctx.role)


def list_members(session: Session, ctx: OrgContext) -> list[api.Member]:
    rows = session.execute(
        select(User, Membership)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.org_id == ctx.org.id)
        .order_by(Membership.created_at, User.email)
    ).all()
    return [
        api.Member(email=u.email, name=u.name, role=Role(m.role), joined_at=m.created_at)
        for u, m in rows
    ]


def add_member(session: Session, ctx: OrgContext, body: api.MemberAdd) -> api.MemberAdded:
    """Add a user to the org, creating the user (and a first login token) when new."""
    email = body.email.lower()
    user = session.scalar(select(User).where(User.email == email))
    login_token = None
    if user is None:
        user = User(email=email, name=body.name)
        session.add(user)
        session.flush()
        _, login_token = tokens.issue(session, user_id=user.id, org_id=None, name="login")
    elif session.get(Membership, (user.id, ctx.org.id)) is not None:
        raise Conflict(f"{email} is already a member of '{ctx.org.name}'")
    membership = Membership(user_id=user.id, org_id=ctx.org.id, role=body.role)
    session.add(membership)
    session.flush()
    events.record(
        session,
        org_id=ctx.org.id,
        actor_id=ctx.principal.user_id,
        action="member.add",
        object_type="user",
        object_id=user.id,
        object_name=email,
        details={"role": body.role.value},
    )
    member = api.Member(
        email=user.email, name=user.name, role=body.role, joined_at=membership.created_at
    )
    return api.MemberAdded(member=member, login_token=login_token)


def remove_member(session: Session, ctx: OrgContext, email: str) -> None:
    """Take a person out of the org: their tokens stop acting in it, and the plane signs them
    no more SSH certificates for its machines (the ones they hold end within hours)."""
    user, membership = _membership(session, ctx, email)
    if membership.role == Role.ADMIN:
        _keep_an_admin(session, ctx, email)
    session.delete(membership)
    events.record(
        session,
        org_id=ctx.org.id,
        actor_id=ctx.principal.user_id,
        action="member.remove",
        object_type="user",
        object_id=user.id,
        object_name=user.email,
    )


def set_role(session: Session, ctx: OrgContext, email: str, role: Role) -> api.Member:
    """Make a member an admin, or an admin a member (never the org's last admin)."""
    user, membership = _membership(session, ctx, email)
    if membership.role == Role.ADMIN and role != Role.ADMIN:
        _keep_an_admin(session, ctx, email)
    if membership.role != role:
        membership.role = role
        events.record(
            session,
            org_id=ctx.org.id,
            actor_id=ctx.principal.user_id,
            action="member.role",
            object_type="user",
            object_id=user.id,
            object_name=user.email,
            details={"role": role.value},
        )
    return api.Member(email=user.email, name=user.name, role=role, joined_at=membership.created_at)


def _membership(session: Session, ctx: OrgContext, email: str) -> tuple[User, Membership]:
    user = session.scalar(select(User).where(User.email == email.lower()))
    membership = session.get(Membership, (user.id, ctx.org.id)) if user else None
    if user is None or membership is None:
        raise NotFound(f"{email} is not a member of '{ctx.org.name}'")
    return user, membership


def _keep_an_admin(session: Session, ctx: OrgContext, email: str) -> None:
    admins = session.scalar(
        select(func.count())
        .select_from(Membership)
        .where(Membership.org_id == ctx.org.id, Membership.role == Role.ADMIN)
    )
    if admins == 1:
        raise Conflict(f"{email} is the last admin of '{ctx.org.name}'; make another first")
