"""What the agent reports: plain dataclasses, turned into JSON for the plane and for people."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class GpuProcess:
    pid: int
    name: str
    used_memory_mib: float | None


@dataclass(frozen=True)
class XidError:
    """A GPU fault the NVIDIA driver logged (an Xid), seen since the previous report."""

    xid: int
    message: str | None  # the kernel log's text after the number; NVML events carry none
    at: str  # ISO 8601, UTC: the kernel log's time, or when NVML handed the event over


@dataclass(frozen=True)
class GpuSample:
    index: int
    uuid: str
    name: str
    bus_id: str | None
    memory_total_mib: float | None
    memory_used_mib: float | None
    # True where GPU and CPU share the host's memory (DGX Spark, GB10): the memory figures are
    # then the host's, since the driver reports none of its own.
    unified_memory: bool
    utilization_gpu_pct: float | None
    utilization_memory_pct: float | None
    temperature_c: float | None
    power_draw_w: float | None
    power_limit_w: float | None
    mig_mode: str | None
    ecc_uncorrected: float | None = None  # volatile count since the driver loaded
    processes: list[GpuProcess] = field(default_factory=list)
    # Xids since the previous report, oldest first, at most brev.agent.xid.MAX_PER_GPU.
    xid_errors: list[XidError] = field(default_factory=list)


@dataclass(frozen=True)
class HostSample:
    hostname: str
    os: str
    arch: str
    kernel: str
    python: str
    cpu_count: int
    load_1m: float | None
    memory_total_bytes: int | None
    memory_available_bytes: int | None
    disk_total_bytes: int
    disk_free_bytes: int
    uptime_seconds: float | None
    ssh_host_keys: list[str]
    ssh_sessions: int


@dataclass(frozen=True)
class AgentReport:
    collected_at: str  # ISO 8601, UTC
    source: str  # "nvml", "nvidia-smi", or "none" (no NVIDIA driver: a CPU host)
    driver_version: str | None
    cuda_version: str | None
    gpus: list[GpuSample]
    host: HostSample
    # What could not be read, in words; a partial report beats none.
    problems: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)
