"""How long an instance lives: its TTL (`brev ttl`, `brev create --ttl`) and the lease of a
`brev run` (renewed by the running CLI). `reconciler/expiry.py` deletes what outlived either."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session

from brev import api
from brev.api import InstanceStatus as S
from brev.server.db.models import Instance, utcnow
from brev.server.errors import Conflict
from brev.server.services import events, run_tokens
from brev.server.services.instances import find, get_detail
from brev.server.services.scope import OrgContext


def set_ttl(session: Session, ctx: OrgContext, name: str, body: api.Ttl) -> api.InstanceDetail:
    """Delete the instance `body.seconds` from now; None: never (for a TTL)."""
    instance = find(session, ctx, name)
    _refuse_if_deleting(instance, "set the TTL of")
    now = utcnow()
    expires_at = now + timedelta(seconds=body.seconds) if body.seconds is not None else None
    run_tokens.check_expiry(ctx, instance, expires_at)
    instance.expires_at = expires_at
    instance.updated_at = now
    until = expires_at.isoformat() if expires_at else None
    details = {"seconds": body.seconds, "expires_at": until}
    events.about_instance(
        session, instance, "instance.ttl_set", details, actor_id=ctx.principal.user_id
    )
    session.flush()
    return get_detail(session, ctx, instance.name)


def renew_lease(session: Session, ctx: OrgContext, name: str) -> api.Lease:
    """The run's lease runs `run_lease_seconds` again from now.

    No event: the CLI renews about every minute, and the log would be mostly renewals. A
    lapsed lease is not revived: the reconciler is deleting that instance (or about to)."""
    instance = find(session, ctx, name)
    # Read again under a row lock (PostgreSQL): an expiry pass deleting it right now finishes
    # first, and this renewal then sees the deletion instead of overwriting it.
    session.refresh(instance, with_for_update=True)
    if instance.run_lease_seconds is None:
        raise Conflict(
            f"'{name}' has no run lease: only instances created with run_lease_seconds "
            f"(`brev run`, or any run-scoped token) have one"
        )
    _refuse_if_deleting(instance, "renew the lease of")
    now = utcnow()
    if instance.run_lease_until is not None and instance.run_lease_until <= now:
        raise Conflict(
            f"the lease of '{name}' lapsed at {instance.run_lease_until:%Y-%m-%d %H:%M:%S} UTC "
            f"(no renewal for {instance.run_lease_seconds} s): it is being deleted"
        )
    instance.run_lease_until = now + timedelta(seconds=instance.run_lease_seconds)
    return api.Lease(instance=instance.name, run_lease_until=instance.run_lease_until)


def release_lease(session: Session, ctx: OrgContext, name: str) -> api.InstanceDetail:
    """`brev run --keep`: the instance outlives the run, so no lease; its TTL still holds."""
    instance = find(session, ctx, name)
    _refuse_if_deleting(instance, "release the lease of")
    if instance.run_lease_seconds is not None:
        instance.run_lease_seconds = None
        instance.run_lease_until = None
        instance.updated_at = utcnow()
        events.about_instance(
            session, instance, "instance.lease_released", actor_id=ctx.principal.user_id
        )
        session.flush()
    return get_detail(session, ctx, instance.name)


def _refuse_if_deleting(instance: Instance, verb: str) -> None:
    if instance.desired_status == S.DELETED or instance.status == S.DELETING:
        raise Conflict(f"cannot {verb} '{instance.name}': it is being deleted")
