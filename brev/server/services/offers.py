"""Offers: what an org can get, from the shipped catalog (brev.catalog)."""

from __future__ import annotations

from pydantic import TypeAdapter
from sqlalchemy.orm import Session

from brev import api
from brev.catalog import (
    GpuSpecError,
    OfferQuery,
    UnknownProvider,
    check_providers,
    find_offers,
    parse_gpu_spec,
)
from brev.server.errors import InvalidInput
from brev.server.services import scheduler
from brev.server.services.scope import OrgContext

_AS_API = TypeAdapter(list[api.Offer])


def list_offers(
    session: Session,
    ctx: OrgContext,
    *,
    gpu: str | None = None,
    providers: str | None = None,
    region: str | None = None,
    max_price: float | None = None,
    min_vram_gib: float | None = None,
    spot: bool = False,
    sort: api.OfferSort = api.OfferSort.PRICE,
) -> list[api.Offer]:
    """The catalog's offers that meet every filter, in `sort` order.

    Every org sees the clouds' whole catalog, and the free GPUs of its own online nodes
    (provider 'local'). `providers` is comma-separated as in the query string ('aws,gcp').
    """
    catalogs = scheduler.catalogs_for(session, ctx.org.id)
    try:
        spec = parse_gpu_spec(gpu, catalogs.every)
    except GpuSpecError as exc:
        raise InvalidInput("gpu", str(exc)) from None
    try:
        wanted = _providers(providers.split(",")) if providers else None
    except UnknownProvider as exc:
        raise InvalidInput("provider", str(exc)) from None
    query = OfferQuery(
        gpu=spec,
        # A list of only commas ('provider=,') names no provider: no filter, like an absent one.
        providers=wanted or None,
        region=region.strip() if region and region.strip() else None,
        max_price=max_price,
        min_vram_gib=min_vram_gib,
        spot=spot,
        sort=sort.value,
    )
    # The catalog's dataclasses carry the API's field names, so one validation call converts
    # the whole list (1,400 offers in a few ms).
    return _AS_API.validate_python(find_offers(query, catalogs.free), from_attributes=True)


def _providers(names: list[str]) -> frozenset[str]:
    """The names checked against the shipped catalog; 'local' (nodes) is always a provider,
    with or without nodes online."""
    local = {n for n in names if n.strip().lower() == scheduler.LOCAL}
    others = [n for n in names if n not in local]
    checked = check_providers(others) if others else frozenset()
    return checked | ({scheduler.LOCAL} if local else set())
