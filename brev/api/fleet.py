"""The dashboard's fleet overview: every GPU of an org, cloud and owned, in one answer."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from brev.api.base import _Model


class GpuSource(StrEnum):
    INSTANCE = "instance"  # a cloud instance's GPU
    NODE = "node"  # a GPU of a registered node, free or held by an instance


class FleetGpu(_Model):
    source: GpuSource
    instance: str | None = Field(description="the instance using it; null: a free node GPU")
    node: str | None = Field(description="the node it is in; null for a cloud GPU")
    index: int
    model: str | None = Field(description="as the driver or the catalog names it")
    utilization_pct: float | None = Field(description="from the newest report; null: none yet")
    memory_used_mib: float | None
    memory_total_mib: float | None
    status: str = Field(description="the instance's status, or the node's when free")
    idle: bool = Field(description="under idle_threshold_pct for the instance's autostop window")
    idle_since: datetime | None


class FleetOverview(_Model):
    gpus: list[FleetGpu]
    cost_per_hour: float = Field(description="USD per hour of the instances running now")
    spend_7d: float = Field(description="USD of running time over the last 7 days")
    idle_gpus: int
    idle_threshold_pct: float
