"""An agent's report as the plane reads it (brev.agent.report.AgentReport as JSON): the types
of every field the plane, its reconciler or the dashboard read, checked before a report is
stored, so that a stored report can never fail a later read. Fields the plane does not read,
and fields of a newer agent, pass as they are; every field may be absent (an older agent)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class _Shape(BaseModel):
    # strict: a number must be a number ("5" is refused, not read as 5); extra: a newer
    # agent's fields are kept; finite numbers only, as everywhere in the API.
    model_config = ConfigDict(strict=True, extra="allow", allow_inf_nan=False)


class ReportedGpu(_Shape):
    index: int | None = None
    uuid: str | None = None
    name: str | None = None
    bus_id: str | None = None
    memory_total_mib: float | None = None
    memory_used_mib: float | None = None
    unified_memory: bool | None = None
    utilization_gpu_pct: float | None = None
    utilization_memory_pct: float | None = None
    temperature_c: float | None = None
    power_draw_w: float | None = None
    power_limit_w: float | None = None
    mig_mode: str | None = None
    ecc_uncorrected: float | None = None
    processes: list[dict[str, Any]] | None = None
    xid_errors: list[Any] | None = None  # entries the plane cannot read are skipped


class ReportedHost(_Shape):
    hostname: str | None = None
    os: str | None = None
    arch: str | None = None
    kernel: str | None = None
    python: str | None = None
    cpu_count: int | None = None
    load_1m: float | None = None
    memory_total_bytes: int | None = None
    memory_available_bytes: int | None = None
    disk_total_bytes: int | None = None
    disk_free_bytes: int | None = None
    uptime_seconds: float | None = None
    ssh_host_keys: list[str] | None = None
    ssh_sessions: int | None = None


class ReportShape(_Shape):
    collected_at: str | None = None
    source: str | None = None
    driver_version: str | None = None
    cuda_version: str | None = None
    gpus: list[ReportedGpu] | None = None
    host: ReportedHost | None = None
    problems: list[str] | None = None
    instances: list[str] | None = None  # a node's agent: the instances it hosts
