"""The GCP half of brev.catalog.refresh: machine types of the shipped families, from the
Compute API's machineTypes.aggregatedList (one paged call for every zone).

google-cloud-compute costs about 2 s to import, so it is imported inside functions only. The
API says which types exist in which zones, with their GPUs, vCPUs and memory; it has no prices
and no GPU memory, which are kept from the shipped rows.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from brev.catalog.offers import CatalogOffer
from brev.catalog.refresh import NO_GPU_TYPES, LiveType, RefreshResult, as_float, gib, merge
from brev.providers.base import ProviderError


def refresh(config: Mapping[str, Any], shipped: Sequence[CatalogOffer]) -> RefreshResult:
    from brev.providers.gcp import region_of

    families = sorted({o.instance_type.split("-", 1)[0] for o in shipped})
    found: dict[tuple[str, str], list[tuple[str, Any]]] = defaultdict(list)
    unreachable: dict[str, str] = {}
    try:
        for zone, scoped in _gcp_machine_types(config, families):
            region = region_of(zone)
            if scoped.warning.code == "UNREACHABLE":
                unreachable[region] = f"zone {zone} unreachable: {scoped.warning.message}"
            for machine in scoped.machine_types:
                if machine.name.split("-", 1)[0] in families and machine.accelerators:
                    found[(machine.name, region)].append((zone, machine))
    except ProviderError as error:
        return RefreshResult("gcp", [], [], error=error.message)
    answered = {region for _, region in found} - set(unreachable)
    if not answered:
        return RefreshResult("gcp", [], [], error=NO_GPU_TYPES)
    live = [
        _gcp_type(name, region, zones)
        for (name, region), zones in sorted(found.items())
        if region in answered
    ]
    skipped = sorted(unreachable.items()) + [
        (region, NO_GPU_TYPES)
        for region in sorted({o.region for o in shipped} - answered)
        if region not in unreachable
    ]
    offers, unpriced = merge("gcp", shipped, live, live_spot=False)
    return RefreshResult("gcp", offers, sorted(answered), skipped, unpriced)


def _gcp_machine_types(config: Mapping[str, Any], families: list[str]) -> Iterator[tuple[str, Any]]:
    """(zone, MachineTypesScopedList) of every zone, for machine types of these families."""
    from google.cloud import compute_v1

    from brev.providers.gcp import GcpProvider
    from brev.providers.gcp_errors import translated

    provider = GcpProvider(config)
    with translated("list GCP machine types"):
        credentials, _ = provider._credentials()
        endpoint = config.get("endpoint_url")
        client = compute_v1.MachineTypesClient(
            credentials=credentials,
            client_options={"api_endpoint": endpoint} if endpoint else None,
        )
        request = compute_v1.AggregatedListMachineTypesRequest(
            project=provider.project, filter=f'name eq "({"|".join(families)})-.*"'
        )
        # Pages are fetched while iterating, so the loop stays inside the translation.
        for scope, scoped in client.aggregated_list(request=request, retry=None, timeout=60.0):
            yield scope.rpartition("/")[2], scoped


def _gcp_type(name: str, region: str, found: list[Any]) -> LiveType:
    _, first = found[0]
    accelerators = first.accelerators
    return LiveType(
        instance_type=name,
        region=region,
        gpu_name=str(accelerators[0].guest_accelerator_type),
        gpu_count=float(sum(a.guest_accelerator_count for a in accelerators)),
        gpu_memory_gib=None,  # not in the Compute API: the shipped value is kept
        vcpus=as_float(first.guest_cpus),
        memory_gib=gib(first.memory_mb),
        zones=tuple(zone for zone, _ in found),
    )
