"""One report of this host: GPUs through NVML when `nvidia-ml-py` is importable, else through
`nvidia-smi`; a host with neither driver nor GPUs reports as a CPU host. Each GPU carries the
XID errors seen since the previous report (`brev.agent.xid`, kept for the process's life)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from brev.agent import nvidia_smi, xid
from brev.agent.host import meminfo, read_host
from brev.agent.report import AgentReport, GpuSample


def collect(prefer_nvml: bool = True) -> AgentReport:
    problems: list[str] = []
    host = read_host()
    source, driver, cuda = "none", None, None
    gpus: list[GpuSample] = []
    if prefer_nvml:
        try:
            from brev.agent import nvml

            gpus, driver, cuda = nvml.read_gpus()
            source = "nvml"
        except ImportError:
            pass  # nvidia-ml-py not installed: nvidia-smi says the same, slower
        except Exception as error:  # NVML present but unusable: say so, try nvidia-smi
            problems.append(f"NVML: {error}")
    if source == "none":
        try:
            reading = nvidia_smi.read_gpus()
            gpus, driver, cuda = reading.gpus, reading.driver_version, nvidia_smi.cuda_version()
            source = "nvidia-smi"
        except nvidia_smi.NoDriver as error:
            problems.append(f"no NVIDIA driver: {error}")
    gpus = [_with_unified_memory(g) for g in gpus]
    try:
        gpus, notes = xid.watcher().collect(gpus, nvml_works=source == "nvml")
        problems += notes
    except Exception as error:  # a report without XIDs beats none
        problems.append(f"XID: {error}")
    return AgentReport(
        collected_at=datetime.now(UTC).isoformat(),
        source=source,
        driver_version=driver,
        cuda_version=cuda,
        gpus=gpus,
        host=host,
        problems=problems,
    )


def _with_unified_memory(gpu: GpuSample) -> GpuSample:
    """A GPU that reports no memory of its own shares the host's (DGX Spark, GB10)."""
    if gpu.memory_total_mib is not None:
        return gpu
    memory = meminfo()
    total, available = memory.get("MemTotal"), memory.get("MemAvailable")
    if total is None:
        return gpu
    used = (total - available) if available is not None else None
    return dataclasses.replace(
        gpu,
        unified_memory=True,
        memory_total_mib=total / 2**20,
        memory_used_mib=used / 2**20 if used is not None else None,
    )
