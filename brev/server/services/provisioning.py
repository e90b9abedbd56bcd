"""`brev create`: from a GPU spec to an ordered plan of placements, and the instance row that
the reconciler then drives. Nothing here calls a cloud; the request returns at once."""

from __future__ import annotations

import os
import re
from datetime import timedelta

from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from brev import api
from brev.catalog.gpus import GpuSpec, GpuSpecError, gpu_family, parse_gpu_spec
from brev.catalog.offers import OfferQuery, UnknownProvider, check_providers, find_offers
from brev.server.db.models import Instance, utcnow
from brev.server.errors import Conflict, InvalidInput, NoPlacement
from brev.server.services import (
    events,
    node_instances,
    placements,
    provider_configs,
    run_tokens,
    scheduler,
)
from brev.server.services.instances import get_detail
from brev.server.services.names import generate_name
from brev.server.services.scope import OrgContext

# How many placements (offer and zone) one create may try before it gives up.
MAX_PLACEMENTS = int(os.environ.get("BREV_MAX_PLACEMENTS", "12"))


def plan(session: Session, ctx: OrgContext, body: api.InstanceCreate) -> api.InstancePlan:
    """The placements a create would try: free GPUs of the org's registered nodes first (it
    owns them), then the clouds it has credentials for, cheapest first; for a run token, only
    those within its limits."""
    run_tokens.check_max_price(ctx, body)
    catalogs = scheduler.catalogs_for(session, ctx.org.id)
    try:
        spec = parse_gpu_spec(body.gpu, catalogs.every)
    except GpuSpecError as error:
        raise InvalidInput("gpu", str(error)) from None
    wanted = _wanted_providers(session, ctx, body)
    offers = find_offers(
        OfferQuery(
            gpu=spec,
            providers=frozenset(wanted),
            region=body.region,
            max_price=body.max_price,
            spot=body.spot,
        ),
        catalogs.free,
    )
    if body.node:
        offers = [o for o in offers if o.node == body.node]
    placements: list[api.Placement] = []
    for offer in sorted(offers, key=lambda o: o.provider != scheduler.LOCAL):  # stable
        price = offer.price(body.spot)
        if price is None:
            continue
        for zone in offer.zones or (None,):
            placements.append(
                api.Placement(
                    provider=offer.provider,
                    instance_type=offer.instance_type,
                    region=offer.region,
                    zone=zone,
                    spot=body.spot,
                    gpu_model=offer.gpu_model,
                    gpu_count=offer.gpu_count,
                    price_per_hour=price,
                    node=offer.node,
                )
            )
    if not placements:
        if scheduler.LOCAL in wanted and _nodes_have(session, ctx, spec):
            raise _no_capacity(spec, wanted)
        where = f" in {body.region}" if body.region else ""
        cap = f" under ${body.max_price}/h" if body.max_price else ""
        raise InvalidInput(
            "gpu",
            f"no {'spot ' if body.spot else ''}offer for {spec} on {', '.join(sorted(wanted))}"
            f"{where}{cap}; see `brev search {spec}`",
        )
    placements = run_tokens.limit_plan(ctx, spec, placements)
    return api.InstancePlan(gpu=str(spec), placements=placements[:MAX_PLACEMENTS])


def _wanted_providers(session: Session, ctx: OrgContext, body: api.InstanceCreate) -> set[str]:
    """The providers a create may use: those asked for, else every one set up (nodes count)."""
    has_nodes = scheduler.has_nodes(session, ctx.org.id)
    no_nodes = (
        f"org '{ctx.org.name}' has no registered node: add one with `brev nodes add` "
        f"or run `brev register` on it"
    )
    if body.node:
        if node_instances.node_named(session, ctx.org.id, body.node) is None:
            raise InvalidInput(
                "node", f"no node '{body.node}' in org '{ctx.org.name}'; see `brev nodes ls`"
            )
        return {scheduler.LOCAL}
    configured = set(provider_configs.configured(session, ctx.org.id))
    if body.providers:
        asked_local = scheduler.LOCAL in {p.strip().lower() for p in body.providers}
        if asked_local and not has_nodes:
            raise InvalidInput("providers", no_nodes)
        others = [p for p in body.providers if p.strip().lower() != scheduler.LOCAL]
        try:
            asked = set(check_providers(others)) if others else set()
        except UnknownProvider as error:
            raise InvalidInput("providers", str(error)) from None
        without = sorted(asked - configured)
        if without:
            raise InvalidInput(
                "providers",
                f"org '{ctx.org.name}' has no credentials for {', '.join(without)}: "
                f"run `brev provider add {without[0]}`",
            )
        return asked | ({scheduler.LOCAL} if asked_local else set())
    wanted = configured | ({scheduler.LOCAL} if has_nodes else set())
    if not wanted:
        raise InvalidInput(
            "providers",
            f"org '{ctx.org.name}' has no cloud credentials and no registered node yet: run "
            f"`brev provider add aws`, `brev provider add gcp --project P` or `brev nodes add`",
        )
    return wanted


def _nodes_have(session: Session, ctx: OrgContext, spec: GpuSpec) -> bool:
    """Whether some node of the org has GPUs meeting the spec, free or not."""
    for node in scheduler.live_nodes(session, ctx.org.id):
        if spec.cpu_only:
            return True
        models = [g.model for g in scheduler.node_gpus(node)]
        for model in set(models):
            named = spec.models is None or model in spec.models
            if named and (spec.count is None or models.count(model) >= spec.count):
                return True
    return False


def _no_capacity(spec: GpuSpec, wanted: set[str]) -> NoPlacement:
    clouds = sorted(wanted - {scheduler.LOCAL})
    hint = (
        f"nothing matched on {', '.join(clouds)} either"
        if clouds
        else "add cloud credentials (`brev provider add aws`) to rent one instead"
    )
    return NoPlacement(
        f"no capacity: no free {spec} on this org's online nodes (see `brev nodes ls`); "
        f"delete or stop an instance that holds one, or {hint}"
    )


def create(
    session: Session, ctx: OrgContext, body: api.InstanceCreate, *, default_lease_seconds: int
) -> tuple[api.InstanceDetail, bool]:
    """The new instance (pending) and True; or, for a repeated idempotency key, the first
    instance and False. `default_lease_seconds`: the lease of a run token's instance when the
    body names none."""
    if body.idempotency_key:
        existing = session.scalar(
            select(Instance).where(
                *run_tokens.visible(ctx), Instance.idempotency_key == body.idempotency_key
            )
        )
        if existing is not None:
            return get_detail(session, ctx, existing.name, include_deleted=True), False
    body = run_tokens.limit_create(ctx, body, default_lease_seconds)
    chosen = plan(session, ctx, body)
    local = [p for p in chosen.placements if p.provider == scheduler.LOCAL]
    first = chosen.placements[0]
    name = body.name or _generated_name(session, ctx, first.gpu_model)
    if session.scalar(_live_named(ctx, name)) is not None:
        raise Conflict(f"an instance named '{name}' already exists in org '{ctx.org.name}'")
    now = utcnow()
    instance = Instance(
        org_id=ctx.org.id,
        name=name,
        created_at=now,  # the TTL counts from it: expires_at - created_at is the TTL
        status=api.InstanceStatus.PENDING,
        desired_status=api.InstanceStatus.RUNNING,
        gpu_spec=None if chosen.gpu == "any" else chosen.gpu,
        spot=body.spot,
        disk_gb=body.disk_gb,
        image=body.image,
        startup_script=body.startup_script,
        plan=placements.dump_plan(chosen.placements),
        autostop_idle_seconds=body.autostop_seconds,
        autostop_delete=body.autostop_delete,
        created_by_id=ctx.principal.user_id,
        created_by_token_id=ctx.principal.token_id,
    )
    placements.apply(instance, first)
    if body.ttl_seconds is not None:
        instance.expires_at = now + timedelta(seconds=body.ttl_seconds)
    if body.run_lease_seconds is not None:
        instance.run_lease_seconds = body.run_lease_seconds
        instance.run_lease_until = now + timedelta(seconds=body.run_lease_seconds)
    if body.idempotency_key:
        instance.idempotency_key = body.idempotency_key
    session.add(instance)
    try:
        session.flush()
    except IntegrityError:
        raise Conflict(
            f"an instance named '{name}' already exists in org '{ctx.org.name}'"
        ) from None
    if local:
        _place_on_node(session, instance, local, chosen.placements[len(local) :])
    details: dict[str, object] = {"gpu": chosen.gpu, "placements": len(chosen.placements)}
    if body.ttl_seconds is not None:
        details["ttl_seconds"] = body.ttl_seconds
    if body.run_lease_seconds is not None:
        details["run_lease_seconds"] = body.run_lease_seconds
    events.about_instance(
        session, instance, "instance.create", details, actor_id=ctx.principal.user_id
    )
    return get_detail(session, ctx, name), True


def _place_on_node(
    session: Session,
    instance: Instance,
    local: list[api.Placement],
    clouds: list[api.Placement],
) -> None:
    """Take GPUs on the first node that still has them; else go on with the clouds' plan, or
    fail with NoPlacement (other creates got the GPUs since the plan was read)."""
    for placement in local:
        try:
            node_instances.place(session, instance, placement)
        except NoPlacement:
            continue
        instance.plan = placements.dump_plan([placement])
        return
    if not clouds:
        raise NoPlacement(
            f"no capacity: every free {instance.gpu_spec or 'GPU'} on this org's nodes was "
            f"just taken by other creates; see `brev nodes ls`"
        )
    instance.plan = placements.dump_plan(clouds)
    placements.apply(instance, clouds[0])


def _live_named(ctx: OrgContext, name: str) -> Select[str]:
    return select(Instance.id).where(
        Instance.org_id == ctx.org.id, Instance.name == name, Instance.deleted_at.is_(None)
    )


def _generated_name(session: Session, ctx: OrgContext, gpu_model: str | None) -> str:
    prefix = re.sub(r"[^a-z0-9]", "", gpu_family(gpu_model).lower()) if gpu_model else "cpu"
    taken = set(
        session.scalars(
            select(Instance.name).where(
                Instance.org_id == ctx.org.id, Instance.deleted_at.is_(None)
            )
        )
    )
    return generate_name(prefix or "gpu", taken)
