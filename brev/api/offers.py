"""Offers (/orgs/{org}/offers, what `brev search` lists) and the catalog's refresh."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from brev.api.base import Count, _Model


class OfferSort(StrEnum):
    PRICE = "price"
    VRAM = "vram"
    GPUS = "gpus"


class Offer(_Model):
    """An instance type in a region that an org can get, with its price."""

    provider: str
    instance_type: str
    gpu_model: str | None = Field(description="e.g. 'A100-80GB'; null for a CPU-only offer")
    gpu_count: Count = Field(description="GPUs per instance (a fraction on some clouds)")
    gpu_memory_gib: float | None = Field(description="memory of one GPU")
    vcpus: Count | None
    memory_gib: float | None
    region: str
    zones: list[str] = Field(description="zones with this type; empty where zones do not apply")
    price_per_hour: float | None = Field(description="on-demand USD per hour; null: not sold")
    spot_price_per_hour: float | None = Field(description="lowest spot USD per hour; null: none")
    node: str | None = Field(None, description="a registered node's name: the offer is its GPUs")
    capacity_now: bool | None = Field(
        None,
        description="whether the provider has capacity for this type in this region right now, "
        "where it says and the org has it configured (Lambda); null: not known (AWS, GCP)",
    )


class CatalogSkip(_Model):
    region: str
    reason: str


class CatalogRefresh(_Model):
    """What a catalog refresh did for one provider."""

    provider: str
    rows: int = Field(description="offers of this provider in the catalog after the refresh")
    regions: list[str] = Field(description="regions refreshed from the provider's API")
    skipped: list[CatalogSkip] = Field(
        description="regions not refreshed, and why: their offers stay as they were"
    )
    unpriced: int = Field(0, description="offers the API lists with no known price: left out")
    error: str | None = Field(None, description="why nothing was refreshed; null otherwise")
