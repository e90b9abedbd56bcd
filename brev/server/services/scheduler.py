"""Registered nodes' GPUs as offers, and the exclusive allocation of them to instances.

A node's GPUs are what its agent last reported (so a card added later, or one lost to a driver
reinstall, changes the offer without re-registering). Allocation is a row per GPU in
`gpu_allocations`, whose primary key (node, GPU index) is the only lock: two creates that pick
the same GPU cannot both commit, whatever the number of server processes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from brev import api
from brev.catalog.gpus import model_of_device
from brev.catalog.offers import Catalog, CatalogOffer, load_catalog
from brev.server.db.models import GpuAllocation, Instance, Node, utcnow
from brev.server.errors import NoPlacement

LOCAL = "local"  # the provider name of registered nodes, in offers and placements
LOCAL_REGION = "local"
# A node is offline after this many of its agent's reports are missed (as instances).
MISSED_REPORTS = 3
DEFAULT_REPORT_INTERVAL_S = 10.0


@dataclass(frozen=True)
class NodeGpu:
    index: int
    uuid: str | None
    name: str
    model: str
    memory_mib: float | None
    unified_memory: bool


def node_gpus(node: Node, known_models: Iterable[str] | None = None) -> list[NodeGpu]:
    """The GPUs in the node's newest report."""
    known = list(known_models if known_models is not None else load_catalog().counts_by_model)
    gpus: list[NodeGpu] = []
    reported = node.hardware.get("gpus")
    for gpu in reported if isinstance(reported, list) else []:
        if not isinstance(gpu, dict) or not isinstance(gpu.get("index"), int):
            continue
        name = str(gpu.get("name") or "GPU")
        memory = gpu.get("memory_total_mib")
        gpus.append(
            NodeGpu(
                index=gpu["index"],
                uuid=str(gpu["uuid"]) if gpu.get("uuid") else None,
                name=name,
                model=model_of_device(name, known),
                memory_mib=float(memory) if isinstance(memory, int | float) else None,
                unified_memory=bool(gpu.get("unified_memory")),
            )
        )
    return sorted(gpus, key=lambda g: g.index)


def node_status(node: Node, now: datetime | None = None) -> api.NodeStatus:
    return status_by_reports(node.last_heartbeat_at, node.report_interval_seconds, now)


def status_by_reports(
    last_report_at: datetime | None, interval_s: float | None, now: datetime | None = None
) -> api.NodeStatus:
    """A node's status from when its agent last reported and how often it reports."""
    if last_report_at is None:
        return api.NodeStatus.INSTALLING
    interval = interval_s or DEFAULT_REPORT_INTERVAL_S
    silence = (now or utcnow()) - last_report_at
    if silence > timedelta(seconds=MISSED_REPORTS * interval + 2):
        return api.NodeStatus.OFFLINE
    return api.NodeStatus.ONLINE


def live_nodes(session: Session, org_id: str) -> list[Node]:
    return list(
        session.scalars(
            select(Node)
            .where(Node.org_id == org_id, Node.removed_at.is_(None))
            .order_by(Node.created_at, Node.name)
        )
    )


def allocations(session: Session, node_ids: Sequence[str]) -> dict[tuple[str, int], str]:
    """(node id, GPU index) -> the instance holding it."""
    if not node_ids:
        return {}
    rows = session.execute(
        select(GpuAllocation.node_id, GpuAllocation.gpu_index, GpuAllocation.instance_id).where(
            GpuAllocation.node_id.in_(node_ids)
        )
    )
    return {(node_id, index): instance_id for node_id, index, instance_id in rows}


def _node_offers(
    nodes: Sequence[Node], taken: Mapping[tuple[str, int], str], known: Sequence[str]
) -> list[CatalogOffer]:
    """What the nodes can give with `taken` allocated: for each node and GPU model, one offer
    per count from 1 to the number free (as the clouds sell 1, 2, 4, 8), and one CPU offer."""
    offers: list[CatalogOffer] = []
    for node in nodes:
        free: defaultdict[str, list[NodeGpu]] = defaultdict(list)
        for gpu in node_gpus(node, known):
            if (node.id, gpu.index) not in taken:
                free[gpu.model].append(gpu)
        host = node.hardware.get("host") or {}
        vcpus = node.cpu_count or host.get("cpu_count")
        memory = node.memory_bytes or host.get("memory_total_bytes")
        memory_gib = round(memory / 2**30, 1) if isinstance(memory, int) else None
        for model, gpus in sorted(free.items()):
            per_gpu = gpus[0].memory_mib
            for count in range(1, len(gpus) + 1):
                offers.append(
                    CatalogOffer(
                        provider=LOCAL,
                        instance_type=node.name,
                        gpu_model=model,
                        gpu_count=count,
                        gpu_memory_gib=round(per_gpu / 1024, 1) if per_gpu else None,
                        vcpus=vcpus,
                        memory_gib=memory_gib,
                        region=LOCAL_REGION,
                        zones=(),
                        price_per_hour=(node.price_per_hour or 0.0) * count,
                        spot_price_per_hour=None,
                        node=node.name,
                    )
                )
        offers.append(
            CatalogOffer(
                provider=LOCAL,
                instance_type=node.name,
                gpu_model=None,
                gpu_count=0,
                gpu_memory_gib=None,
                vcpus=vcpus,
                memory_gib=memory_gib,
                region=LOCAL_REGION,
                zones=(),
                price_per_hour=0.0,
                spot_price_per_hour=None,
                node=node.name,
            )
        )
    return offers


@dataclass(frozen=True)
class OrgCatalogs:
    """The shipped catalog plus the org's online nodes: `free` with what is allocated taken
    out (what a create can get now), `every` as if nothing were (what a GPU spec is checked
    against, so that 'h200:1' on a busy node is "no capacity", not "no such offer")."""

    free: Catalog
    every: Catalog


def catalogs_for(session: Session, org_id: str) -> OrgCatalogs:
    shipped = load_catalog()
    nodes = [n for n in live_nodes(session, org_id) if node_status(n) == api.NodeStatus.ONLINE]
    if not nodes:
        return OrgCatalogs(free=shipped, every=shipped)
    known = list(shipped.counts_by_model)
    taken = allocations(session, [n.id for n in nodes])
    return OrgCatalogs(
        free=Catalog.of((*_node_offers(nodes, taken, known), *shipped.offers)),
        every=Catalog.of((*_node_offers(nodes, {}, known), *shipped.offers)),
    )


def has_nodes(session: Session, org_id: str) -> bool:
    return bool(
        session.scalar(
            select(Node.id).where(Node.org_id == org_id, Node.removed_at.is_(None)).limit(1)
        )
    )


def allocate(
    session: Session, instance: Instance, node: Node, model: str | None, count: int
) -> list[GpuAllocation]:
    """Give `count` free GPUs of `model` on `node` to `instance`, lowest indices first;
    NoPlacement when too few are free.

    The no-op UPDATE locks the node's row before its allocations are read: on PostgreSQL a row
    lock that queues concurrent allocators of this node until this transaction ends, on SQLite
    the database's write lock. Each allocator so reads the allocations the previous one
    committed, and a race is never even attempted (the primary key would still refuse it)."""
    if count == 0:
        return []
    locked: CursorResult[Any] = session.execute(  # type: ignore[assignment]
        update(Node)
        .where(Node.id == node.id, Node.removed_at.is_(None))
        .values(last_report_seq=Node.last_report_seq)
    )
    if locked.rowcount == 0:  # removed since the plan was read
        raise NoPlacement(f"node '{node.name}' was removed")
    taken = allocations(session, [node.id])
    free = [g for g in node_gpus(node) if g.model == model and (node.id, g.index) not in taken]
    if len(free) < count:
        raise NoPlacement(f"node '{node.name}' has {len(free)} free {model} GPU(s), {count} wanted")
    rows = [
        GpuAllocation(node_id=node.id, gpu_index=g.index, gpu_uuid=g.uuid, instance_id=instance.id)
        for g in free[:count]
    ]
    session.add_all(rows)
    session.flush()
    return rows


def release(session: Session, instance_id: str) -> None:
    session.execute(delete(GpuAllocation).where(GpuAllocation.instance_id == instance_id))


def assigned_gpus(session: Session, instance_id: str) -> list[GpuAllocation]:
    return list(
        session.scalars(
            select(GpuAllocation)
            .where(GpuAllocation.instance_id == instance_id)
            .order_by(GpuAllocation.gpu_index)
        )
    )


def report_for_gpus(report: dict[str, Any], indices: Iterable[int]) -> dict[str, Any]:
    """A node's report narrowed to one instance's GPUs: what that instance's views show."""
    wanted = set(indices)
    gpus = [g for g in report.get("gpus") or [] if isinstance(g, dict) and g.get("index") in wanted]
    return {**report, "gpus": gpus}
