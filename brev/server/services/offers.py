"""Offers: what an org can get, from the shipped catalog (brev.catalog)."""

from __future__ import annotations

from pydantic import TypeAdapter

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
from brev.server.services.scope import OrgContext

_AS_API = TypeAdapter(list[api.Offer])


def list_offers(
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

    Every org sees the same catalog today; `ctx` is where an org's enabled providers will
    narrow it. `providers` is comma-separated as in the query string ('aws,gcp').
    """
    try:
        spec = parse_gpu_spec(gpu)
    except GpuSpecError as exc:
        raise InvalidInput("gpu", str(exc)) from None
    try:
        wanted = check_providers(providers.split(",")) if providers else None
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
    return _AS_API.validate_python(find_offers(query), from_attributes=True)
