"""The fleet overview: every GPU of an org (cloud instances' and registered nodes'), what each
is doing by its newest agent report, what the org pays now, and what it spent this week.

Spend is brev's own reckoning, not a cloud bill: each instance's price per hour times the
time it spent `running` within the last 7 days, read from its status events
(`instance.running` starts a stretch; stopping, stopped, deleting, deleted or failed ends it;
an instance still running counts up to now). Clouds also bill boot and shutdown minutes, so
a bill comes out somewhat higher.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from brev import api
from brev.api.fleet import FleetGpu, FleetOverview, GpuSource
from brev.catalog.offers import load_catalog
from brev.server.db.models import Event, Instance, utcnow
from brev.server.services import run_tokens, scheduler
from brev.server.services.agents import IDLE_UTILIZATION_PCT
from brev.server.services.scope import OrgContext

SPEND_WINDOW = timedelta(days=7)
# The idle window of an instance without autostop: long enough to not flag a pause.
DEFAULT_IDLE_WINDOW = timedelta(minutes=10)
S = api.InstanceStatus
# Instances whose GPUs the overview shows: those that hold (or are about to hold) a machine.
HOLDING = (S.PENDING, S.PROVISIONING, S.STARTING, S.RUNNING, S.STOPPING)
RUN_STARTS = frozenset({"instance.running"})
RUN_ENDS = frozenset(
    {"instance.stopping", "instance.stopped", "instance.deleted", "instance.failed"}
)


def overview(session: Session, ctx: OrgContext, now: datetime | None = None) -> FleetOverview:
    now = now or utcnow()
    holding = list(
        session.scalars(
            select(Instance)
            .where(*run_tokens.visible(ctx), Instance.deleted_at.is_(None))
            .where(Instance.status.in_(HOLDING))
            .order_by(Instance.created_at, Instance.name)
        )
    )
    gpus = [*_cloud_gpus(holding, now), *_node_gpus(session, ctx, holding, now)]
    running = [i for i in holding if i.status == S.RUNNING]
    return FleetOverview(
        gpus=gpus,
        cost_per_hour=round(sum(i.price_per_hour or 0.0 for i in running), 4),
        spend_7d=round(_spend(session, ctx, now), 2),
        idle_gpus=sum(1 for g in gpus if g.idle),
        idle_threshold_pct=IDLE_UTILIZATION_PCT,
    )


def _readings(telemetry: dict[str, Any]) -> dict[int, dict[str, Any]]:
    gpus = telemetry.get("gpus")
    return {
        g["index"]: g
        for g in (gpus if isinstance(gpus, list) else [])
        if isinstance(g, dict) and isinstance(g.get("index"), int)
    }


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _idle(instance: Instance, utilization: float | None, now: datetime) -> bool:
    if instance.status != S.RUNNING or instance.idle_since is None or utilization is None:
        return False
    window = (
        timedelta(seconds=instance.autostop_idle_seconds)
        if instance.autostop_idle_seconds
        else DEFAULT_IDLE_WINDOW
    )
    return utilization < IDLE_UTILIZATION_PCT and now - instance.idle_since >= window


def _gpu(
    instance: Instance | None,
    reading: dict[str, Any],
    *,
    source: GpuSource,
    node: str | None,
    index: int,
    model: str | None,
    status: str,
    now: datetime,
) -> FleetGpu:
    utilization = _number(reading.get("utilization_gpu_pct"))
    idle = instance is not None and _idle(instance, utilization, now)
    return FleetGpu(
        source=source,
        instance=instance.name if instance else None,
        node=node,
        index=index,
        model=model,
        utilization_pct=utilization,
        memory_used_mib=_number(reading.get("memory_used_mib")),
        memory_total_mib=_number(reading.get("memory_total_mib")),
        status=status,
        idle=idle,
        idle_since=instance.idle_since if instance is not None and idle else None,
    )


def _cloud_gpus(holding: Iterable[Instance], now: datetime) -> list[FleetGpu]:
    gpus: list[FleetGpu] = []
    for instance in holding:
        if instance.node_id is not None:
            continue  # shown with its node
        readings = _readings(instance.telemetry or {})
        for index in range(int(instance.gpu_count or 0)):
            reading = readings.get(index, {})
            gpus.append(
                _gpu(
                    instance,
                    reading,
                    source=GpuSource.INSTANCE,
                    node=None,
                    index=index,
                    model=instance.gpu_model or reading.get("name"),
                    status=instance.status,
                    now=now,
                )
            )
    return gpus


def _node_gpus(
    session: Session, ctx: OrgContext, holding: list[Instance], now: datetime
) -> list[FleetGpu]:
    if run_tokens.is_run(ctx.principal):
        return []  # a CI token sees its own instances, not the org's machines
    nodes = scheduler.live_nodes(session, ctx.org.id)
    held = scheduler.allocations(session, [n.id for n in nodes])
    by_id = {i.id: i for i in holding}
    known = list(load_catalog().counts_by_model)
    gpus: list[FleetGpu] = []
    for node in nodes:
        readings = _readings(node.hardware or {})
        node_status = scheduler.node_status(node, now)
        for gpu in scheduler.node_gpus(node, known):
            instance = by_id.get(held.get((node.id, gpu.index), ""))
            gpus.append(
                _gpu(
                    instance,
                    readings.get(gpu.index, {}),
                    source=GpuSource.NODE,
                    node=node.name,
                    index=gpu.index,
                    model=gpu.model or gpu.name,
                    status=instance.status if instance else node_status,
                    now=now,
                )
            )
    return gpus


def _spend(session: Session, ctx: OrgContext, now: datetime) -> float:
    start = now - SPEND_WINDOW
    instances = {
        i.id: i
        for i in session.scalars(
            select(Instance).where(
                *run_tokens.visible(ctx),
                or_(Instance.deleted_at.is_(None), Instance.deleted_at >= start),
                Instance.price_per_hour.is_not(None),
            )
        )
    }
    if not instances:
        return 0.0
    changes: dict[str, list[tuple[datetime, bool]]] = defaultdict(list)
    rows = session.execute(
        select(Event.object_id, Event.action, Event.created_at)
        .where(
            Event.org_id == ctx.org.id,
            Event.object_type == "instance",
            Event.action.in_(RUN_STARTS | RUN_ENDS),
            Event.created_at >= start,
        )
        .order_by(Event.id)
    )
    for object_id, action, at in rows:
        if object_id in instances:
            changes[object_id].append((at, action in RUN_STARTS))
    total = 0.0
    for instance_id, instance in instances.items():
        stretch = changes.get(instance_id, [])
        # Running when the window opened: its first change in the window ends a run, or it
        # changed nothing in the window and runs now.
        running_at_start = not stretch[0][1] if stretch else instance.status == S.RUNNING
        # Nothing ran before it existed (a row written without its events, say).
        hours = _running_hours(stretch, max(start, instance.created_at), now, running_at_start)
        total += hours * (instance.price_per_hour or 0.0)
    return total


def _running_hours(
    changes: list[tuple[datetime, bool]], start: datetime, now: datetime, running_at_start: bool
) -> float:
    """Hours within [start, now] between each run start and the end that follows it."""
    seconds = 0.0
    since: datetime | None = start if running_at_start else None
    for at, starts in changes:
        if starts and since is None:
            since = at
        elif not starts and since is not None:
            seconds += max(0.0, (min(at, now) - max(since, start)).total_seconds())
            since = None
    if since is not None:
        seconds += max(0.0, (now - max(since, start)).total_seconds())
    return seconds / 3600
