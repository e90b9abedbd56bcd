"""The offer catalog (brev/catalog/data/*.csv, or a refreshed overlay) and the search over it.

The catalog is read on first use, never at import, and kept for the life of the process (until
`reload_catalog`): about 1,400 rows, a few milliseconds with the csv module. A search filters
and sorts every row; there are too few rows for an index to pay off.

A control plane may keep a refreshed copy of a provider's file (`brev catalog refresh`, written
by brev.catalog.refresh) in an overlay folder, `$BREV_HOME/catalog`, set with `use_overlay`.
An overlay file that is present and readable replaces that provider's shipped file; one that is
corrupt is logged and ignored, so the shipped data always remains to fall back on.
"""

from __future__ import annotations

import csv
import functools
import logging
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from brev.catalog.gpus import ANY_GPU, GpuSpec

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

SORT_KEYS = ("price", "vram", "gpus")
log = logging.getLogger("brev.catalog")


class UnknownProvider(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class CatalogOffer:
    """One instance type in one region. Field names are those of `brev.api.Offer`."""

    provider: str
    instance_type: str
    gpu_model: str | None
    gpu_count: float
    gpu_memory_gib: float | None  # of one GPU
    vcpus: float | None
    memory_gib: float | None
    region: str
    zones: tuple[str, ...]
    price_per_hour: float | None  # on-demand; None: not sold on demand
    spot_price_per_hour: float | None  # the lowest over the region's zones; None: no spot
    node: str | None = None  # a registered node's GPUs (provider "local"): the node's name

    def price(self, spot: bool) -> float | None:
        return self.spot_price_per_hour if spot else self.price_per_hour


@dataclass(frozen=True)
class Catalog:
    offers: tuple[CatalogOffer, ...]
    # Every GPU model with the GPU counts its offers come in: what a GPU spec is checked against.
    counts_by_model: Mapping[str, frozenset[float]]
    providers: frozenset[str]

    @classmethod
    def of(cls, offers: Iterable[CatalogOffer]) -> Catalog:
        offers = tuple(offers)
        counts: defaultdict[str, set[float]] = defaultdict(set)
        for offer in offers:
            if offer.gpu_model is not None:
                counts[offer.gpu_model].add(offer.gpu_count)
        return cls(
            offers=offers,
            counts_by_model={model: frozenset(c) for model, c in counts.items()},
            providers=frozenset(offer.provider for offer in offers),
        )


@dataclass(frozen=True)
class OfferQuery:
    """A search. Every filter left at its default lets every offer through."""

    gpu: GpuSpec = ANY_GPU
    providers: frozenset[str] | None = None
    region: str | None = None  # exact, e.g. 'us-east-1'
    max_price: float | None = None  # USD per hour; the spot price when `spot`
    min_vram_gib: float | None = None  # memory of one GPU
    spot: bool = False  # only offers with a spot price, priced and sorted by it
    sort: str = "price"  # one of SORT_KEYS


# The columns of the shipped files (scripts/build_catalog.py writes them in this order);
# checked, so a reordered file fails loudly instead of mixing up prices and memory.
COLUMNS = [
    "provider",
    "instance_type",
    "gpu",
    "gpu_count",
    "gpu_memory_gib",
    "vcpus",
    "memory_gib",
    "price_hour",
    "spot_price_hour",
    "region",
    "zones",
]
# Beside this module, not through importlib.resources: the package is always installed as
# files, and importing plus resolving importlib.resources costs about 10 ms, as much as the load.
DATA_DIR = Path(__file__).parent / "data"


def _number(text: str) -> float | None:
    return float(text) if text else None


def _read_offers(path: Path) -> list[CatalogOffer]:
    with path.open(newline="", encoding="utf-8") as source:
        # csv.reader and unpacking: DictReader builds a dict per row, twice the time.
        rows = csv.reader(source)
        if next(rows, None) != COLUMNS:
            raise ValueError(f"{path}: not a catalog file (expected columns {COLUMNS})")
        return [
            CatalogOffer(
                provider,
                instance_type,
                gpu or None,
                float(gpu_count),
                _number(gpu_memory),
                _number(vcpus),
                _number(memory),
                region,
                tuple(zones.split()),
                _number(price),
                _number(spot_price),
            )
            for (
                provider,
                instance_type,
                gpu,
                gpu_count,
                gpu_memory,
                vcpus,
                memory,
                price,
                spot_price,
                region,
                zones,
            ) in rows
        ]


# Where refreshed provider files live; None (the default, and the CLI's): shipped data only.
_overlay_dir: Path | None = None


def use_overlay(directory: Path | None) -> None:
    """Read refreshed provider files from `directory` (a server: $BREV_HOME/catalog) from now on;
    None: the shipped files only. The catalog is read again on its next use."""
    global _overlay_dir
    _overlay_dir = directory
    reload_catalog()


def overlay_dir() -> Path | None:
    return _overlay_dir


def reload_catalog() -> None:
    """Forget the loaded catalog (after a refresh wrote an overlay): the next use reads it again."""
    load_catalog.cache_clear()


def shipped_offers(provider: str) -> list[CatalogOffer]:
    """The offers of one provider's shipped file, whatever any overlay says."""
    return _read_offers(DATA_DIR / f"{provider}.csv")


@functools.cache
def load_catalog() -> Catalog:
    """Every offer of the CSVs shipped in brev/catalog/data (built by scripts/build_catalog.py),
    each provider's file replaced by its overlay where `use_overlay` set one that is usable."""
    offers: list[CatalogOffer] = []
    shipped = sorted(DATA_DIR.glob("*.csv"))
    for path in shipped:
        offers += _overlaid(path)
    offers += _plugin_offers(exclude={path.stem for path in shipped})
    return Catalog.of(offers)


def _plugin_offers(exclude: set[str]) -> list[CatalogOffer]:
    """The offers file each installed plug-in provider declares (`offers_file`), in the
    shipped files' format; one that cannot be read is logged and left out."""
    from brev.providers import registry  # here: loading entry points is for the plane only

    offers: list[CatalogOffer] = []
    for name in registry.provider_names():
        if name in exclude:
            continue
        try:
            path = registry.info(name).offers_file
            if path is None:
                continue
            found = _read_offers(Path(path))
            wrong = {offer.provider for offer in found} - {name}
            if wrong:
                raise ValueError(f"rows of provider {wrong}")
            offers += found
        except Exception as exc:  # a broken plug-in must not take the catalog down with it
            log.warning("ignoring the offers of provider plug-in %s (%s)", name, exc)
    return offers


def _overlaid(shipped: Path) -> list[CatalogOffer]:
    directory = _overlay_dir
    if directory is not None:
        overlay = directory / shipped.name
        try:
            offers = _read_offers(overlay)
            wrong = {offer.provider for offer in offers} - {shipped.stem}
            if not offers or wrong:
                raise ValueError("no offers" if not offers else f"rows of provider {wrong}")
            return offers
        except FileNotFoundError:
            pass
        except (OSError, ValueError, csv.Error) as exc:  # UnicodeDecodeError is a ValueError
            log.warning(
                "ignoring the refreshed catalog %s (%s); using the shipped one", overlay, exc
            )
    return _read_offers(shipped)


def check_providers(names: Iterable[str], catalog: Catalog | None = None) -> frozenset[str]:
    """The names, lower-cased, if the catalog knows each; UnknownProvider otherwise."""
    known = (catalog if catalog is not None else load_catalog()).providers
    wanted = frozenset(name.strip().lower() for name in names if name.strip())
    unknown = sorted(wanted - known)
    if unknown:
        listed = ", ".join(f"'{name}'" for name in unknown)
        noun = "provider" if len(unknown) == 1 else "providers"
        raise UnknownProvider(f"unknown {noun} {listed}; known: {', '.join(sorted(known))}")
    return wanted


def _missing_last(value: float | None) -> float:
    return math.inf if value is None else value


def _sort_key(sort: str, spot: bool) -> Callable[[CatalogOffer], tuple[object, ...]]:
    """Ties go to the cheaper offer, then provider, type and region, so the order is stable."""

    def by_price(offer: CatalogOffer) -> tuple[object, ...]:
        price = _missing_last(offer.price(spot))
        return (price, offer.provider, offer.instance_type, offer.region)

    if sort == "price":
        return by_price
    if sort == "vram":
        # Negated so that more memory comes first; unknown memory sorts after every known one.
        return lambda offer: (_missing_last(_negated(offer.gpu_memory_gib)), *by_price(offer))
    if sort == "gpus":
        return lambda offer: (-offer.gpu_count, *by_price(offer))
    raise ValueError(f"unknown sort {sort!r}; use one of {', '.join(SORT_KEYS)}")


def _negated(value: float | None) -> float | None:
    return None if value is None else -value


def find_offers(query: OfferQuery, catalog: Catalog | None = None) -> list[CatalogOffer]:
    """The offers that meet every filter of the query, in its sort order.

    `cpu` (query.gpu.cpu_only) asks for offers without GPUs; the shipped catalog has only GPU
    instance types, so it finds nothing.
    """
    sort_key = _sort_key(query.sort, query.spot)  # a bad sort fails before any work
    if catalog is None:
        catalog = load_catalog()
    spec, spot = query.gpu, query.spot
    found = []
    for offer in catalog.offers:
        if not spec.matches(offer.gpu_model, offer.gpu_count):
            continue
        if query.providers is not None and offer.provider not in query.providers:
            continue
        if query.region is not None and offer.region != query.region:
            continue
        price = offer.price(spot)
        if spot and price is None:
            continue
        if query.max_price is not None and (price is None or price > query.max_price):
            continue
        if query.min_vram_gib is not None and (
            offer.gpu_memory_gib is None or offer.gpu_memory_gib < query.min_vram_gib
        ):
            continue
        found.append(offer)
    found.sort(key=sort_key)
    return found
