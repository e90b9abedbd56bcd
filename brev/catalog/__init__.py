"""The offer catalog: which GPU instance types AWS, GCP and Lambda sell, where, at what price.

The data ships with the package (brev/catalog/data, provenance in its SOURCE.md) and loads on
first use. Nothing here imports pydantic or the server, so the CLI may use it too.
"""

from __future__ import annotations

from brev.catalog.gpus import (
    ANY_GPU,
    CPU_ONLY,
    GpuSpec,
    GpuSpecError,
    ImpossibleCount,
    UnknownGpu,
    parse_gpu_spec,
)
from brev.catalog.offers import (
    SORT_KEYS,
    Catalog,
    CatalogOffer,
    OfferQuery,
    UnknownProvider,
    check_providers,
    find_offers,
    load_catalog,
)

__all__ = [
    "ANY_GPU",
    "CPU_ONLY",
    "SORT_KEYS",
    "Catalog",
    "CatalogOffer",
    "GpuSpec",
    "GpuSpecError",
    "ImpossibleCount",
    "OfferQuery",
    "UnknownGpu",
    "UnknownProvider",
    "check_providers",
    "find_offers",
    "load_catalog",
    "parse_gpu_spec",
]
