"""Instances on registered nodes: no cloud to wait for, so every change happens in the request.

An instance on a node is an allocation of GPUs plus a working directory that the node's agent
makes when the plane lists it in `assignments` (the answer to each report, and to the agent's
long-poll, which answers as soon as `assignments_changed` bumps the node's version). It is
`starting` until the agent says the directory exists, then `running`. Stopping releases its
GPUs and keeps the directory; deleting releases both. The reconciler never claims these rows.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from brev import api
from brev.api import InstanceStatus as S
from brev.server.db.models import Instance, Node, utcnow
from brev.server.errors import NoPlacement
from brev.server.services import events, scheduler, ssh_access

# session.info key: the nodes this transaction bumped, for brev.server.assignment_watch to
# wake this process's long-polls once it commits.
BUMPED = "brev.assignments_bumped"


def assignments_changed(session: Session, node_id: str) -> None:
    """What `assignments(session, node)` answers, or the node itself (removed), changes in this
    transaction: bump the node's version, which its agent's long-poll waits on. Every such
    change calls this, and nothing else bumps it.

    An UPDATE of the column, not a read-modify-write, so that concurrent transactions (other
    server replicas too) each add one. Without autoflush, and called before the change itself,
    so the node's row is locked before the instance's (as an agent's report locks them):
    the other order could deadlock against a report on PostgreSQL."""
    with session.no_autoflush:
        session.execute(
            update(Node)
            .where(Node.id == node_id)
            .values(assignments_version=Node.assignments_version + 1)
            .execution_options(synchronize_session="fetch")  # a loaded Node sees the new value
        )
    session.info.setdefault(BUMPED, set()).add(node_id)


def node_named(session: Session, org_id: str, name: str) -> Node | None:
    return session.scalar(
        select(Node).where(Node.org_id == org_id, Node.name == name, Node.removed_at.is_(None))
    )


def place(session: Session, instance: Instance, placement: api.Placement) -> None:
    """Allocate the placement's GPUs on its node to the (flushed) instance; NoPlacement if
    they went to someone else since the plan was made."""
    name = placement.node or placement.instance_type  # plans made before `node` named it so
    node = node_named(session, instance.org_id, name)
    if node is None:
        raise NoPlacement(f"node '{name}' was removed")
    scheduler.allocate(session, instance, node, placement.gpu_model, int(placement.gpu_count))
    assignments_changed(session, node.id)
    instance.node_id = node.id
    instance.status = S.STARTING
    instance.ssh_host = node.ssh_host
    instance.ssh_port = node.ssh_port


def apply_desired(session: Session, instance: Instance) -> None:
    """Make the instance what its `desired_status` says, now."""
    desired = instance.desired_status
    changes = desired == S.DELETED or (desired == S.STOPPED) != (instance.status == S.STOPPED)
    if changes and instance.node_id is not None:
        assignments_changed(session, instance.node_id)
    if desired == S.DELETED:
        scheduler.release(session, instance.id)
        instance.status = S.DELETED
        instance.deleted_at = utcnow()
        events.about_instance(session, instance, "instance.deleted", {"node_gpus": "released"})
    elif desired == S.STOPPED and instance.status != S.STOPPED:
        scheduler.release(session, instance.id)
        instance.status = S.STOPPED
        instance.idle_since = None
        events.about_instance(session, instance, "instance.stopped", {"node_gpus": "released"})
    elif desired == S.RUNNING and instance.status == S.STOPPED:
        node = session.get_one(Node, instance.node_id)
        try:
            scheduler.allocate(session, instance, node, instance.gpu_model, instance.gpu_count)
        except NoPlacement as error:
            raise NoPlacement(
                f"cannot start '{instance.name}': {error.message}; the GPUs it had went to "
                f"other instances. Delete it, or wait until they are free"
            ) from None
        instance.status = S.STARTING
        events.about_instance(session, instance, "instance.starting", {"node": node.name})


def mark_materialized(session: Session, node: Node, present: set[str]) -> None:
    """The agent says these instances' directories exist: those still starting now run."""
    starting = session.scalars(
        select(Instance).where(
            Instance.node_id == node.id,
            Instance.status == S.STARTING,
            Instance.deleted_at.is_(None),
        )
    )
    for instance in starting:
        if instance.name in present:
            instance.status = S.RUNNING
            events.about_instance(session, instance, "instance.running", {"node": node.name})


def live_on(session: Session, node_id: str) -> list[Instance]:
    return list(
        session.scalars(
            select(Instance)
            .where(Instance.node_id == node_id, Instance.deleted_at.is_(None))
            .order_by(Instance.created_at)
        )
    )


def assignments(session: Session, node: Node) -> list[api.Assignment]:
    """Every live instance on the node, with the GPUs its sessions may use (none while
    stopped: the directory stays, the GPUs went back to the pool)."""
    result = []
    for instance in live_on(session, node.id):
        gpus = scheduler.assigned_gpus(session, instance.id)
        result.append(
            api.Assignment(
                instance=instance.name,
                gpu_indices=[g.gpu_index for g in gpus],
                gpu_uuids=[g.gpu_uuid or "" for g in gpus],
                principal=ssh_access.instance_principal(instance.id),
                active=instance.status != S.STOPPED,
            )
        )
    return result
