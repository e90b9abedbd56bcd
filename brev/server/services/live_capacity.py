"""Where an org's providers have capacity right now, for the offers that `brev search` shows.

Only a provider that says (providers.base.LiveCapacity: Lambda) and that the org has configured
is asked; its client is the reconciler's cached one, so its answer is shared with the plan's
check before each launch (Lambda's is reused for 30 s)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from sqlalchemy.orm import Session

from brev import api
from brev.providers.base import LiveCapacity, Provider, ProviderError
from brev.server.services import provider_configs

log = logging.getLogger("brev.server")

ProviderClient = Callable[[str, str], Provider]  # (org id, provider name) -> its client


def mark(
    session: Session, org_id: str, offers: list[api.Offer], client_for: ProviderClient
) -> None:
    """Set capacity_now on the offers of providers that can say; the rest stay null."""
    configured = set(provider_configs.configured(session, org_id))
    wanted = {offer.provider for offer in offers} & configured
    capacity: dict[str, Mapping[str, frozenset[str]]] = {}
    for name in sorted(wanted):
        provider = client_for(org_id, name)
        if not isinstance(provider, LiveCapacity):
            continue
        try:
            capacity[name] = provider.regions_with_capacity()
        except ProviderError as exc:  # unknown, not none: the offers stay as the catalog says
            log.warning("capacity of %s not known now: %s", name, exc)
    for offer in offers:
        regions = capacity.get(offer.provider)
        if regions is not None:
            offer.capacity_now = offer.region in regions.get(offer.instance_type, frozenset())
