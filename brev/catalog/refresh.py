"""Refresh a provider's part of the catalog from its own API (`brev catalog refresh`).

Each refresher takes an org's provider config and the shipped offers of that provider, asks the
API what it can answer, and merges the answer into the shipped rows:

- AWS (EC2 API): instance types with their GPUs, vCPUs and memory; the zones (AZ IDs) that
  offer each type; the current Linux spot price, lowest over the region's zones. On-demand
  prices are not in the EC2 API (the Pricing API is another service): a type and region keeps
  its shipped on-demand price, and one the shipped data lacks has none.
- GCP (Compute API): the machine types of the shipped families (a2, a3, a4, g2) with their
  GPUs and zones (in brev/catalog/refresh_gcp.py). Prices are not in the Compute API:
  shipped prices are kept.

An offer the API lists that ends with no price at all is left out (counted as `unpriced`), as
scripts/build_catalog.py does. A region whose calls fail is reported and keeps the offers it had
(`combine`). The control plane writes the combined catalog of a provider as an overlay
(`write_offers`), which brev.catalog.offers prefers to the shipped file.
"""

from __future__ import annotations

import csv
import logging
import os
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from brev.catalog.offers import COLUMNS, CatalogOffer

log = logging.getLogger("brev.catalog")

AWS_WORKERS = 8  # regions asked at once
FILTER_VALUES = 100  # instance types per EC2 filter
NO_GPU_TYPES = "the API listed no GPU instance types"


@dataclass(frozen=True)
class RefreshResult:
    provider: str
    offers: list[CatalogOffer]  # of the refreshed regions (`combine` adds the others)
    regions: list[str]  # refreshed from the API
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (region, why): kept as they were
    unpriced: int = 0  # offers the API lists without any known price, left out
    error: str | None = None  # nothing was refreshed, and why


@dataclass(frozen=True)
class LiveType:
    """What an API says about one instance type in one region."""

    instance_type: str
    region: str
    gpu_name: str  # the provider's name; used only for a type the shipped data lacks
    gpu_count: float
    gpu_memory_gib: float | None
    vcpus: float | None
    memory_gib: float | None
    zones: tuple[str, ...]
    spot_price: float | None = None


Refresher = Callable[[Mapping[str, Any], Sequence[CatalogOffer]], RefreshResult]


def write_offers(path: Path, offers: Iterable[CatalogOffer]) -> None:
    """Write a catalog file atomically: a reader sees the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as output:
            writer = csv.writer(output, lineterminator="\n")
            writer.writerow(COLUMNS)
            writer.writerows(_row(offer) for offer in offers)
            output.flush()
            os.fsync(output.fileno())
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _row(o: CatalogOffer) -> list[str]:
    numbers = (o.gpu_count, o.gpu_memory_gib, o.vcpus, o.memory_gib)
    prices = (o.price_per_hour, o.spot_price_per_hour)
    return [
        o.provider,
        o.instance_type,
        o.gpu_model or "",
        *map(_number, numbers),
        *map(_number, prices),
        o.region,
        " ".join(o.zones),
    ]


def _number(value: float | None) -> str:
    if value is None:
        return ""
    text = repr(float(value))  # every digit, as scripts/build_catalog.py writes them
    return text.removesuffix(".0")


def combine(current: Iterable[CatalogOffer], result: RefreshResult) -> list[CatalogOffer]:
    """A provider's catalog after a refresh: the refreshed regions' offers, and the offers it
    had (`current`: the overlay, else the shipped rows) for every other region."""
    refreshed = set(result.regions)
    kept = [o for o in current if o.provider == result.provider and o.region not in refreshed]
    return sorted([*kept, *result.offers], key=_order)


def _order(o: CatalogOffer) -> tuple[str, str, str]:
    return (o.instance_type, o.gpu_model or "", o.region)


def merge(
    provider: str, shipped: Sequence[CatalogOffer], live: Iterable[LiveType], *, live_spot: bool
) -> tuple[list[CatalogOffer], int]:
    """Offers of what the API listed, priced from the shipped rows (with `live_spot`, the spot
    price from the API); and the number left out for want of any price."""
    by_key = {(o.instance_type, o.region): o for o in shipped}
    model_of = {o.instance_type: o.gpu_model for o in shipped if o.gpu_model}
    memory_of = {o.gpu_model: o.gpu_memory_gib for o in shipped if o.gpu_model}
    offers: list[CatalogOffer] = []
    unpriced = 0
    for item in live:
        base = by_key.get((item.instance_type, item.region))
        model = model_of.get(item.instance_type) or gpu_model_name(
            item.gpu_name, item.gpu_memory_gib, memory_of
        )
        memory = item.gpu_memory_gib
        if memory is None:
            memory = base.gpu_memory_gib if base else memory_of.get(model)
        price = base.price_per_hour if base else None
        spot = item.spot_price if live_spot else (base.spot_price_per_hour if base else None)
        if price is None and spot is None:
            unpriced += 1
            continue
        offers.append(
            CatalogOffer(
                provider,
                item.instance_type,
                model,
                item.gpu_count,
                memory,
                item.vcpus,
                item.memory_gib,
                item.region,
                tuple(sorted(item.zones)),
                price,
                spot,
            )
        )
    return sorted(offers, key=_order), unpriced


def gpu_model_name(name: str, memory_gib: float | None, known: Iterable[str]) -> str:
    """The catalog's name for a GPU the shipped data has no type of: 'A100' with 80 GiB is
    'A100-80GB', GCP's 'nvidia-h100-80gb' is 'H100', an unknown model is its own name."""
    models = set(known)
    text = name.strip().upper().replace(" ", "-")
    for prefix in ("NVIDIA-", "TESLA-"):
        text = text.removeprefix(prefix)
    sized = f"{text}-{round(memory_gib)}GB" if memory_gib else None
    family = text.split("-", 1)[0]
    return next((n for n in (sized, text, family) if n in models), text)


# -- AWS ---------------------------------------------------------------------------------------


def refresh_aws(config: Mapping[str, Any], shipped: Sequence[CatalogOffer]) -> RefreshResult:
    families = sorted({o.instance_type.split(".", 1)[0] for o in shipped})
    regions = sorted({o.region for o in shipped})
    live: list[LiveType] = []
    refreshed: list[str] = []
    skipped: list[tuple[str, str]] = []
    with ThreadPoolExecutor(max_workers=AWS_WORKERS) as pool:
        # Clients are made here, one thread, one session: a session is not thread-safe, and it
        # loads EC2's large service model once instead of once per region.
        session = _aws_session(config)
        asked = {
            region: pool.submit(_aws_types, _ec2_client(session, config, region), region, families)
            for region in regions
        }
        for region, asking in asked.items():
            try:
                answer = asking.result()
            except Exception as error:
                from brev.providers.aws import translate

                log.warning("catalog refresh: skipping AWS %s", region, exc_info=True)
                skipped.append((region, translate(error).message))
                continue
            if not answer:
                skipped.append((region, NO_GPU_TYPES))
                continue
            refreshed.append(region)
            live += answer
    offers, unpriced = merge("aws", shipped, live, live_spot=True)
    return RefreshResult("aws", offers, refreshed, skipped, unpriced)


def _aws_session(config: Mapping[str, Any]) -> Any:
    import boto3

    return boto3.session.Session(
        aws_access_key_id=config.get("access_key_id"),
        aws_secret_access_key=config.get("secret_access_key"),
        aws_session_token=config.get("session_token"),
    )


def _ec2_client(session: Any, config: Mapping[str, Any], region: str) -> Any:
    from botocore.config import Config

    retries = {"mode": "standard", "total_max_attempts": 3}
    options = Config(retries=retries, connect_timeout=5, read_timeout=30)
    endpoint = config.get("endpoint_url")
    return session.client("ec2", region_name=region, endpoint_url=endpoint, config=options)


def _aws_types(ec2: Any, region: str, families: list[str]) -> list[LiveType]:
    shapes: dict[str, dict[str, Any]] = {}
    patterns = [f"{family}.*" for family in families]
    for chunk in _chunks(patterns):
        filters = [{"Name": "instance-type", "Values": chunk}]
        for page in ec2.get_paginator("describe_instance_types").paginate(Filters=filters):
            for item in page["InstanceTypes"]:
                if item.get("GpuInfo", {}).get("Gpus"):
                    shapes[item["InstanceType"]] = item
    zones: defaultdict[str, set[str]] = defaultdict(set)
    for chunk in _chunks(sorted(shapes)):
        pages = ec2.get_paginator("describe_instance_type_offerings").paginate(
            LocationType="availability-zone-id",
            Filters=[{"Name": "instance-type", "Values": chunk}],
        )
        for page in pages:
            for offering in page["InstanceTypeOfferings"]:
                zones[offering["InstanceType"]].add(offering["Location"])
    spot = _spot_prices(ec2, sorted(zones))
    return [_aws_type(shapes[name], region, zones[name], spot.get(name)) for name in sorted(zones)]


def _spot_prices(ec2: Any, instance_types: list[str]) -> dict[str, float]:
    """The lowest over the zones of each zone's latest Linux spot price."""
    latest: dict[tuple[str, str], tuple[datetime, float]] = {}
    now = datetime.now(UTC)
    for chunk in _chunks(instance_types):
        pages = ec2.get_paginator("describe_spot_price_history").paginate(
            InstanceTypes=chunk, ProductDescriptions=["Linux/UNIX"], StartTime=now
        )
        for page in pages:
            for price in page["SpotPriceHistory"]:
                if not price.get("ProductDescription", "").startswith("Linux/UNIX"):
                    continue
                key = (price["InstanceType"], price["AvailabilityZone"])
                seen = (price["Timestamp"], float(price["SpotPrice"]))
                if key not in latest or seen[0] > latest[key][0]:
                    latest[key] = seen
    lowest: dict[str, float] = {}
    for (name, _), (_, value) in latest.items():
        lowest[name] = min(value, lowest.get(name, value))
    return lowest


def _aws_type(
    item: Mapping[str, Any], region: str, zones: set[str], spot: float | None
) -> LiveType:
    gpus = item["GpuInfo"]["Gpus"]
    memory = gpus[0].get("MemoryInfo", {}).get("SizeInMiB")
    return LiveType(
        instance_type=item["InstanceType"],
        region=region,
        gpu_name=str(gpus[0].get("Name", "")),
        gpu_count=float(sum(gpu.get("Count", 0) for gpu in gpus)),
        gpu_memory_gib=round(memory / 1024, 2) if memory else None,
        vcpus=as_float(item.get("VCpuInfo", {}).get("DefaultVCpus")),
        memory_gib=gib(item.get("MemoryInfo", {}).get("SizeInMiB")),
        zones=tuple(zones),
        spot_price=spot,
    )


def _chunks(values: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(values), FILTER_VALUES):
        yield values[start : start + FILTER_VALUES]


def as_float(value: Any) -> float | None:
    return None if value is None else float(value)


def gib(mib: Any) -> float | None:
    return None if mib is None else round(float(mib) / 1024, 2)


# -- GCP ---------------------------------------------------------------------------------------


def refresh_gcp(config: Mapping[str, Any], shipped: Sequence[CatalogOffer]) -> RefreshResult:
    from brev.catalog.refresh_gcp import refresh  # beside this module: GCP's half

    return refresh(config, shipped)


REFRESHERS: dict[str, Refresher] = {"aws": refresh_aws, "gcp": refresh_gcp}
