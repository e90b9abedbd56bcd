"""A node agent's reports: the node's hardware and health, its instances' views of their own
GPUs, and, in the answer, what the agent must host (`assignments`, also what its long-poll
answers)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from brev import api
from brev.server.auth import Principal
from brev.server.db.models import Instance, Node, utcnow
from brev.server.errors import NodeRemoved, NotFound
from brev.server.services import (
    agents,
    events,
    gpu_metrics,
    node_instances,
    report_seq,
    scheduler,
    ssh_access,
)


def live_node(session: Session, node_id: str | None) -> Node:
    """The node an agent token is for; NodeRemoved (410) once it was removed."""
    node = session.get(Node, node_id) if node_id else None
    if node is None:
        raise NotFound("this agent's node no longer exists")
    if node.removed_at is not None:
        raise NodeRemoved(f"node '{node.name}' was removed from the plane: uninstall the agent")
    return node


def watched(session: Session, node: Node) -> api.AssignmentsWatch:
    """The answer to the node agent's long-poll (brev.server.assignment_watch)."""
    # Read before the assignments (in this transaction): a version never claims more than
    # the list it comes with, so an agent that drops older versions drops nothing newer.
    version = node.assignments_version
    return api.AssignmentsWatch(
        version=version,
        assignments=node_instances.assignments(session, node),
        node_principals=[ssh_access.node_principal(node.id)],
    )


def accept(session: Session, agent: Principal, body: api.AgentReports) -> api.AgentReportsAccepted:
    node = live_node(session, agent.token_node_id)
    version = node.assignments_version  # as in watched(): read before the assignments
    fresh = report_seq.unseen(body.reports, node.last_report_seq)
    if fresh:
        node.last_report_seq = fresh[-1].seq
        _record_node(session, node, fresh[-1].report, body.interval_seconds)
    return api.AgentReportsAccepted(
        accepted=len(fresh),
        last_seq=node.last_report_seq,
        assignments=node_instances.assignments(session, node),
        node_principals=[ssh_access.node_principal(node.id)],
        assignments_version=version,
    )


def _record_node(
    session: Session, node: Node, report: dict[str, object], interval_s: float
) -> None:
    first = node.last_heartbeat_at is None
    node.hardware = report
    node.last_heartbeat_at = utcnow()
    node.report_interval_seconds = interval_s
    host = report.get("host")
    if isinstance(host, dict):
        node.os = str(host.get("os") or "")[:100] or node.os
        node.arch = str(host.get("arch") or "")[:32] or node.arch
        cpus, memory = host.get("cpu_count"), host.get("memory_total_bytes")
        node.cpu_count = cpus if isinstance(cpus, int) else node.cpu_count
        node.memory_bytes = memory if isinstance(memory, int) else node.memory_bytes
    if first:
        gpus = len(report.get("gpus") or [])  # type: ignore[arg-type]
        events.record(
            session,
            org_id=node.org_id,
            actor_id=None,
            action="node.online",
            object_type="node",
            object_id=node.id,
            object_name=node.name,
            details={"gpus": gpus},
        )
    present = report.get("instances")
    if isinstance(present, list):
        node_instances.mark_materialized(session, node, {str(n) for n in present})
    for instance in node_instances.live_on(session, node.id):
        _record_instance(session, instance, report, interval_s)


def _record_instance(
    session: Session, instance: Instance, report: dict[str, object], interval_s: float
) -> None:
    """The node's report, narrowed to the instance's GPUs, is the instance's report: health,
    GPU tables, metrics, autostop and fault events work as for a cloud instance."""
    indices = [g.gpu_index for g in scheduler.assigned_gpus(session, instance.id)]
    own = scheduler.report_for_gpus(dict(report), indices)
    agents.record_report(session, instance, own, interval_s)
    if instance.status == api.InstanceStatus.RUNNING:
        gpu_metrics.record(session, instance.id, own)
