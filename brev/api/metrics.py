"""GPU metrics of an instance over time: /orgs/{org}/instances/{name}/metrics."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from brev.api.base import _Model


class GpuPoint(_Model):
    """One GPU at one moment: a raw sample, or the aggregate of a minute starting at `at`."""

    at: datetime
    utilization_pct: float | None = Field(description="a minute: average")
    memory_used_mib: float | None = Field(description="a minute: maximum")
    power_w: float | None = Field(description="a minute: average")
    temperature_c: float | None = Field(description="a minute: maximum")
    resolution: Literal["raw", "minute"] = Field(
        description="raw: one agent sample (kept an hour); minute: aggregate (kept 7 days)"
    )


class GpuSeries(_Model):
    gpu_index: int
    points: list[GpuPoint] = Field(description="oldest first")
