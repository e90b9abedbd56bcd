"""start, stop, delete: each records what the user wants; the reconciler makes it so."""

from __future__ import annotations

from sqlalchemy.orm import Session

from brev import api
from brev.api import InstanceStatus as S
from brev.server.db.models import Instance, utcnow
from brev.server.errors import Conflict
from brev.server.services import events, node_instances
from brev.server.services.instances import find, get_detail
from brev.server.services.scope import OrgContext


def start(session: Session, ctx: OrgContext, name: str) -> api.InstanceDetail:
    instance = find(session, ctx, name)
    _refuse_if(instance, {S.DELETING, S.FAILED}, "start")
    return _want(session, ctx, instance, S.RUNNING, "instance.start")


def stop(session: Session, ctx: OrgContext, name: str) -> api.InstanceDetail:
    instance = find(session, ctx, name)
    _refuse_if(instance, {S.DELETING, S.FAILED}, "stop")
    if instance.status in (S.PENDING, S.PROVISIONING):
        raise Conflict(f"'{name}' is still being provisioned; stop it once it runs, or delete it")
    return _want(session, ctx, instance, S.STOPPED, "instance.stop")


def delete(session: Session, ctx: OrgContext, name: str) -> api.InstanceDetail:
    """Mark for deletion. The row stays (and keeps its name) until the machine is gone."""
    instance = find(session, ctx, name)
    return _want(session, ctx, instance, S.DELETED, "instance.delete")


def set_autostop(
    session: Session, ctx: OrgContext, name: str, body: api.Autostop
) -> api.InstanceDetail:
    instance = find(session, ctx, name)
    instance.autostop_idle_seconds = body.seconds
    instance.autostop_delete = body.delete
    details = {"seconds": body.seconds, "delete": body.delete}
    events.about_instance(
        session, instance, "instance.autostop_set", details, actor_id=ctx.principal.user_id
    )
    session.flush()
    return get_detail(session, ctx, instance.name)


def _refuse_if(instance: Instance, statuses: set[S], verb: str) -> None:
    if instance.status in statuses:
        raise Conflict(f"cannot {verb} '{instance.name}': it is {instance.status}")


def _want(
    session: Session, ctx: OrgContext, instance: Instance, desired: S, action: str
) -> api.InstanceDetail:
    if instance.desired_status != desired:
        instance.desired_status = desired
        instance.next_check_at = None  # act on it at the next reconcile pass
        instance.updated_at = utcnow()
        events.about_instance(session, instance, action, actor_id=ctx.principal.user_id)
        if instance.node_id is not None:
            node_instances.apply_desired(session, instance)
        session.flush()
    # on a node, a delete is done at once: the row is deleted already
    return get_detail(session, ctx, instance.name, include_deleted=instance.deleted_at is not None)
