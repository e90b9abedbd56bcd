"""A placement, from the plan to the provider: one type (`api.Placement`), one way onto an
instance's row, one conversion to what a provider takes.

Plans are stored as JSON on the row (`instances.plan`); `parse_plan` reads them back typed.
Plans written before placements had `node` named the node in `instance_type` only: read so.
"""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from brev import api
from brev.providers import base
from brev.server.db.models import Instance
from brev.server.services.scheduler import LOCAL

_PLAN = TypeAdapter(list[api.Placement])


def parse_plan(rows: list[dict[str, Any]]) -> tuple[api.Placement, ...]:
    plan = _PLAN.validate_python(rows)
    return tuple(
        p.model_copy(update={"node": p.instance_type})
        if p.provider == LOCAL and p.node is None
        else p
        for p in plan
    )


def dump_plan(plan: list[api.Placement]) -> list[dict[str, Any]]:
    return [p.model_dump(mode="json") for p in plan]


def columns(placement: api.Placement) -> dict[str, Any]:
    """What an instance's row says of the placement it is on (or trying)."""
    return {
        "provider": placement.provider,
        "region": placement.region,
        "zone": placement.zone,
        "instance_type": placement.instance_type,
        "gpu_model": placement.gpu_model,
        "gpu_count": int(placement.gpu_count),
        "price_per_hour": placement.price_per_hour,
    }


def apply(instance: Instance, placement: api.Placement) -> None:
    for column, value in columns(placement).items():
        setattr(instance, column, value)


def where(placement: api.Placement) -> dict[str, Any]:
    """How events name a placement (the attempts table reads these keys)."""
    return {
        "provider": placement.provider,
        "instance_type": placement.instance_type,
        "region": placement.region,
        "zone": placement.zone,
    }


def for_provider(placement: api.Placement) -> base.Placement:
    """What the provider's `create` takes."""
    return base.Placement(
        instance_type=placement.instance_type,
        region=placement.region,
        zone=placement.zone,
        spot=placement.spot,
        gpu_model=placement.gpu_model,
        gpu_count=int(placement.gpu_count),
        price_per_hour=placement.price_per_hour,
    )
