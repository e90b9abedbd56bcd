"""Registered nodes as the org sees them: list, show, remove, and `brev register`'s half."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from brev import api
from brev.api import InstanceStatus as S
from brev.catalog.offers import load_catalog
from brev.server.db.models import Node, User, utcnow
from brev.server.errors import Conflict, NotFound
from brev.server.services import events, node_instances, scheduler, tokens
from brev.server.services.scope import OrgContext
from brev.ssh.ca import normalized_host_keys


def find(session: Session, ctx: OrgContext, name: str) -> Node:
    node = node_instances.node_named(session, ctx.org.id, name)
    if node is None:
        raise NotFound(f"node '{name}' not found in org '{ctx.org.name}'; see `brev nodes ls`")
    return node


def list_nodes(session: Session, ctx: OrgContext) -> list[api.Node]:
    nodes = scheduler.live_nodes(session, ctx.org.id)
    return [api.Node(**_summary(session, ctx, n)) for n in nodes]


def get_detail(session: Session, ctx: OrgContext, name: str) -> api.NodeDetail:
    node = find(session, ctx, name)
    return api.NodeDetail(
        **_summary(session, ctx, node),
        host_keys=[k for k in (node.host_keys or "").splitlines() if k.strip()],
        node_home=node.node_home,
        install_mode=node.install_mode,
        python=node.python,
        telemetry=node.hardware,
        events=events.for_object(session, ctx, node.id),
    )


def _summary(session: Session, ctx: OrgContext, node: Node) -> dict[str, Any]:
    live = node_instances.live_on(session, node.id)
    holder = {i.id: i.name for i in live}
    taken = scheduler.allocations(session, [node.id])
    gpus = [
        api.NodeGpu(
            index=g.index,
            uuid=g.uuid,
            model=g.model,
            name=g.name,
            memory_mib=g.memory_mib,
            unified_memory=g.unified_memory,
            instance=holder.get(taken.get((node.id, g.index), "")),
        )
        for g in scheduler.node_gpus(node, load_catalog().counts_by_model)
    ]
    creator = session.get_one(User, node.created_by_id)
    report = node.hardware
    return {
        "id": node.id,
        "name": node.name,
        "org": ctx.org.name,
        "status": scheduler.node_status(node),
        "ssh_host": node.ssh_host,
        "ssh_port": node.ssh_port,
        "ssh_user": node.ssh_user,
        "os": node.os,
        "arch": node.arch,
        "cpu_count": node.cpu_count,
        "memory_bytes": node.memory_bytes,
        "driver_version": report.get("driver_version"),
        "cuda_version": report.get("cuda_version"),
        "price_per_hour": node.price_per_hour,
        "gpus": gpus,
        "instances": [i.name for i in live],
        "last_heartbeat_at": node.last_heartbeat_at,
        "created_by": creator.email,
        "created_at": node.created_at,
    }


def create_row(
    session: Session,
    ctx: OrgContext,
    *,
    name: str,
    facts: dict[str, Any],
    host_keys: list[str],
    price_per_hour: float | None,
    ssh: tuple[str, int, str | None] | None,
) -> tuple[Node, str]:
    """The node (installing: no report yet) and its agent token's secret."""
    if node_instances.node_named(session, ctx.org.id, name) is not None:
        raise Conflict(f"a node named '{name}' already exists in org '{ctx.org.name}'")
    host, port, user = ssh or (None, 22, None)
    node = Node(
        org_id=ctx.org.id,
        name=name,
        ssh_host=host,
        ssh_port=port,
        ssh_user=user,
        host_keys="\n".join(normalized_host_keys(host_keys)) or None,
        status="installing",
        price_per_hour=price_per_hour,
        os=str(facts.get("os") or "")[:100] or None,
        arch=str(facts.get("arch") or "")[:32] or None,
        node_home=str(facts.get("node_home") or "")[:255] or None,
        python=str(facts.get("python") or "")[:255] or None,
        install_mode="systemd" if facts.get("systemd") else "supervised",
        created_by_id=ctx.principal.user_id,
    )
    session.add(node)
    try:
        session.flush()
    except IntegrityError:
        raise Conflict(f"a node named '{name}' already exists in org '{ctx.org.name}'") from None
    token, secret = tokens.issue(
        session, user_id=ctx.principal.user_id, org_id=ctx.org.id, name=f"agent-node-{node.id}"
    )
    token.kind = "agent"
    token.node_id = node.id
    _event(session, ctx, node, "node.add", {"host": host, "port": port, "user": user})
    return node, secret


def forget(session: Session, node_id: str) -> None:
    """Undo create_row for a node whose install failed: as if it had never been added. Its
    token stays valid: an agent left running on the machine (an uninstall that could not run) is
    then answered 410 `node_removed`, and uninstalls itself, instead of retrying for ever on a
    401."""
    node = session.get(Node, node_id)
    if node is None:
        return
    node.removed_at = utcnow()
    node_instances.assignments_changed(session, node.id)  # a long-polling agent hears 410 now
    events.record(
        session,
        org_id=node.org_id,
        actor_id=None,
        action="node.install_failed",
        object_type="node",
        object_id=node.id,
        object_name=node.name,
    )


def remove(session: Session, ctx: OrgContext, name: str, *, force: bool) -> api.NodeDetail:
    """Remove the node; its agent uninstalls itself when the plane answers it 410 (its
    long-poll, at once; or its next report). Refused while instances live on it, unless
    forced: then they are deleted."""
    node = find(session, ctx, name)
    detail = get_detail(session, ctx, name)
    live = node_instances.live_on(session, node.id)
    if live and not force:
        names = ", ".join(i.name for i in live)
        raise Conflict(
            f"node '{name}' hosts {len(live)} instance(s) ({names}); delete them first, "
            f"or remove it with --force (which deletes them)"
        )
    for instance in live:
        instance.desired_status = S.DELETED
        events.about_instance(
            session,
            instance,
            "instance.delete",
            {"reason": f"node '{name}' removed"},
            actor_id=ctx.principal.user_id,
        )
        node_instances.apply_desired(session, instance)
    node.removed_at = utcnow()
    node_instances.assignments_changed(session, node.id)  # a long-polling agent hears 410 now
    _event(session, ctx, node, "node.remove", {"force": force, "instances": len(live)})
    return detail


def _event(
    session: Session, ctx: OrgContext, node: Node, action: str, details: dict[str, Any]
) -> None:
    events.record(
        session,
        org_id=ctx.org.id,
        actor_id=ctx.principal.user_id,
        action=action,
        object_type="node",
        object_id=node.id,
        object_name=node.name,
        details=details,
    )
