from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from brev import api
from brev.server.deps import DbSession, InOrg
from brev.server.openapi_errors import ORG_ROUTES
from brev.server.services import live_capacity, offers

router = APIRouter(tags=["offers"], responses=ORG_ROUTES)


@router.get("/orgs/{org}/offers")
def list_offers(
    request: Request,
    session: DbSession,
    ctx: InOrg,
    gpu: Annotated[
        str | None,
        Query(description="GPU spec: a100, A100:8, a100-80gb, any, any:8, cpu; absent: any GPU"),
    ] = None,
    provider: Annotated[
        str | None,
        Query(description="comma-separated providers: aws, gcp, lambda, local (registered nodes)"),
    ] = None,
    region: Annotated[str | None, Query(description="exact region, e.g. us-east-1")] = None,
    max_price: Annotated[
        float | None, Query(gt=0, description="USD per hour (the spot price with spot=true)")
    ] = None,
    min_vram: Annotated[float | None, Query(ge=0, description="GiB of memory per GPU")] = None,
    spot: Annotated[bool, Query(description="only offers with a spot price, by it")] = False,
    sort: api.OfferSort = api.OfferSort.PRICE,
) -> list[api.Offer]:
    found = offers.list_offers(
        session,
        ctx,
        gpu=gpu,
        providers=provider,
        region=region,
        max_price=max_price,
        min_vram_gib=min_vram,
        spot=spot,
        sort=sort,
    )
    live_capacity.mark(session, ctx.org.id, found, request.app.state.reconciler.provider_for_org)
    return found
