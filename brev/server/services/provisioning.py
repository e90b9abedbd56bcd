"""`brev create`: from a GPU spec to an ordered plan of placements, and the instance row that
the reconciler then drives. Nothing here calls a cloud; the request returns at once."""

from __future__ import annotations

import os
import re

from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from brev import api
from brev.catalog.gpus import GpuSpecError, gpu_family, parse_gpu_spec
from brev.catalog.offers import OfferQuery, UnknownProvider, check_providers, find_offers
from brev.server.db.models import Instance
from brev.server.errors import Conflict, InvalidInput
from brev.server.services import events, provider_configs
from brev.server.services.instances import get_detail
from brev.server.services.names import generate_name
from brev.server.services.scope import OrgContext

# How many placements (offer and zone) one create may try before it gives up.
MAX_PLACEMENTS = int(os.environ.get("BREV_MAX_PLACEMENTS", "12"))


def plan(session: Session, ctx: OrgContext, body: api.InstanceCreate) -> api.InstancePlan:
    """The placements a create would try, cheapest first, on providers the org has set up."""
    try:
        spec = parse_gpu_spec(body.gpu)
    except GpuSpecError as error:
        raise InvalidInput("gpu", str(error)) from None
    configured = set(provider_configs.configured(session, ctx.org.id))
    wanted = configured
    if body.providers:
        try:
            asked = set(check_providers(body.providers))
        except UnknownProvider as error:
            raise InvalidInput("providers", str(error)) from None
        without = sorted(asked - configured)
        if without:
            raise InvalidInput(
                "providers",
                f"org '{ctx.org.name}' has no credentials for {', '.join(without)}: "
                f"run `brev provider add {without[0]}`",
            )
        wanted = asked
    if not wanted:
        raise InvalidInput(
            "providers",
            f"org '{ctx.org.name}' has no cloud credentials yet: run `brev provider add aws` "
            f"or `brev provider add gcp --project P`",
        )
    offers = find_offers(
        OfferQuery(
            gpu=spec,
            providers=frozenset(wanted),
            region=body.region,
            max_price=body.max_price,
            spot=body.spot,
        )
    )
    placements: list[api.Placement] = []
    for offer in offers:
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
                )
            )
    if not placements:
        where = f" in {body.region}" if body.region else ""
        cap = f" under ${body.max_price}/h" if body.max_price else ""
        raise InvalidInput(
            "gpu",
            f"no {'spot ' if body.spot else ''}offer for {spec} on {', '.join(sorted(wanted))}"
            f"{where}{cap}; see `brev search {spec}`",
        )
    return api.InstancePlan(gpu=str(spec), placements=placements[:MAX_PLACEMENTS])


def create(
    session: Session, ctx: OrgContext, body: api.InstanceCreate
) -> tuple[api.InstanceDetail, bool]:
    """The new instance (pending) and True; or, for a repeated idempotency key, the first
    instance and False."""
    if body.idempotency_key:
        existing = session.scalar(
            select(Instance).where(
                Instance.org_id == ctx.org.id, Instance.idempotency_key == body.idempotency_key
            )
        )
        if existing is not None:
            return get_detail(session, ctx, existing.name, include_deleted=True), False
    chosen = plan(session, ctx, body)
    first = chosen.placements[0]
    name = body.name or _generated_name(session, ctx, first.gpu_model)
    if session.scalar(_live_named(ctx, name)) is not None:
        raise Conflict(f"an instance named '{name}' already exists in org '{ctx.org.name}'")
    instance = Instance(
        org_id=ctx.org.id,
        name=name,
        status=api.InstanceStatus.PENDING,
        desired_status=api.InstanceStatus.RUNNING,
        gpu_spec=None if chosen.gpu == "any" else chosen.gpu,
        gpu_model=first.gpu_model,
        gpu_count=int(first.gpu_count),
        provider=first.provider,
        region=first.region,
        zone=first.zone,
        instance_type=first.instance_type,
        spot=body.spot,
        disk_gb=body.disk_gb,
        image=body.image,
        startup_script=body.startup_script,
        price_per_hour=first.price_per_hour,
        plan=[p.model_dump(mode="json") for p in chosen.placements],
        autostop_idle_seconds=body.autostop_seconds,
        autostop_delete=body.autostop_delete,
        created_by_id=ctx.principal.user_id,
    )
    if body.idempotency_key:
        instance.idempotency_key = body.idempotency_key
    session.add(instance)
    try:
        session.flush()
    except IntegrityError:
        raise Conflict(
            f"an instance named '{name}' already exists in org '{ctx.org.name}'"
        ) from None
    details = {"gpu": chosen.gpu, "placements": len(chosen.placements)}
    events.about_instance(
        session, instance, "instance.create", details, actor_id=ctx.principal.user_id
    )
    return get_detail(session, ctx, name), True


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
