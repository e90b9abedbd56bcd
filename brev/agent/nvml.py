"""GPUs through NVML (`nvidia-ml-py`, imported as `pynvml`): no process to start per sample.

Importing this module raises ImportError where nvidia-ml-py is not installed; the collector
then uses nvidia-smi. A value NVML does not support on a GPU is None, as with nvidia-smi.
`XidEvents` watches the GPUs' XID errors for `brev.agent.xid`.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any, TypeVar

import pynvml  # type: ignore[import-not-found, unused-ignore]

from brev.agent.host import process_name
from brev.agent.report import GpuProcess, GpuSample

T = TypeVar("T")


def _maybe(read: Callable[[], T]) -> T | None:
    try:
        return read()
    except pynvml.NVMLError:
        return None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_gpus() -> tuple[list[GpuSample], str | None, str | None]:
    pynvml.nvmlInit()
    try:
        driver = _maybe(lambda: _text(pynvml.nvmlSystemGetDriverVersion()))
        cuda_raw = _maybe(pynvml.nvmlSystemGetCudaDriverVersion_v2)
        cuda = f"{cuda_raw // 1000}.{cuda_raw % 1000 // 10}" if cuda_raw else None
        gpus = [_sample(index) for index in range(pynvml.nvmlDeviceGetCount())]
        return gpus, driver, cuda
    finally:
        pynvml.nvmlShutdown()


def _memory(handle: Any) -> Any:
    """v2 where the driver has it: v1 counts the driver's reserved memory as used (615 MiB on
    an idle H200 that nvidia-smi shows as 0 MiB used)."""
    version = getattr(pynvml, "nvmlMemory_v2", None)
    if version is not None:
        try:
            return pynvml.nvmlDeviceGetMemoryInfo(handle, version=version)
        except (pynvml.NVMLError, TypeError):
            pass
    return pynvml.nvmlDeviceGetMemoryInfo(handle)


def _sample(index: int) -> GpuSample:
    handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    memory = _maybe(lambda: _memory(handle))
    rates = _maybe(lambda: pynvml.nvmlDeviceGetUtilizationRates(handle))
    power = _maybe(lambda: pynvml.nvmlDeviceGetPowerUsage(handle))
    limit = _maybe(lambda: pynvml.nvmlDeviceGetEnforcedPowerLimit(handle))
    mig = _maybe(lambda: pynvml.nvmlDeviceGetMigMode(handle))
    ecc = _maybe(
        lambda: pynvml.nvmlDeviceGetTotalEccErrors(
            handle, pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, pynvml.NVML_VOLATILE_ECC
        )
    )
    processes = _maybe(lambda: pynvml.nvmlDeviceGetComputeRunningProcesses(handle)) or []
    return GpuSample(
        index=index,
        uuid=_text(pynvml.nvmlDeviceGetUUID(handle)),
        name=_text(pynvml.nvmlDeviceGetName(handle)),
        bus_id=_maybe(lambda: _text(pynvml.nvmlDeviceGetPciInfo(handle).busId)),
        memory_total_mib=memory.total / 2**20 if memory else None,
        memory_used_mib=memory.used / 2**20 if memory else None,
        unified_memory=False,
        utilization_gpu_pct=float(rates.gpu) if rates else None,
        utilization_memory_pct=float(rates.memory) if rates else None,
        temperature_c=_maybe(lambda: float(pynvml.nvmlDeviceGetTemperature(handle, 0))),
        power_draw_w=power / 1000 if power is not None else None,
        power_limit_w=limit / 1000 if limit is not None else None,
        mig_mode=("Enabled" if mig[0] else "Disabled") if mig else None,
        ecc_uncorrected=float(ecc) if ecc is not None else None,
        processes=[
            GpuProcess(
                pid=p.pid,
                name=process_name(p.pid),  # NVML has pids only
                used_memory_mib=p.usedGpuMemory / 2**20 if p.usedGpuMemory else None,
            )
            for p in processes
        ],
    )


def _handle_key(handle: Any) -> Any:
    """Something equal for two handles of one GPU: a ctypes pointer's address (an event's
    `device` is a new pointer object to the same device), else the handle itself."""
    if isinstance(handle, ctypes._Pointer | ctypes.c_void_p):
        return ctypes.cast(handle, ctypes.c_void_p).value
    return handle


class XidEvents:
    """One NVML event set for the agent's life, registered for XID errors on every GPU that
    accepts it. It holds an NVML reference of its own, so that read_gpus' init and shutdown
    around each sample leave the set valid. Raises NVMLError when NVML cannot make the set."""

    def __init__(self) -> None:
        pynvml.nvmlInit()
        self._open = True
        self._set: Any = None
        self.uuids: dict[Any, str] = {}  # handle key -> UUID, for the GPUs registered
        self.refused: list[str] = []  # in words, the GPUs that would not register
        try:
            self._set = pynvml.nvmlEventSetCreate()
            for index in range(pynvml.nvmlDeviceGetCount()):
                handle = pynvml.nvmlDeviceGetHandleByIndex(index)
                uuid = _text(pynvml.nvmlDeviceGetUUID(handle))
                try:
                    pynvml.nvmlDeviceRegisterEvents(
                        handle, pynvml.nvmlEventTypeXidCriticalError, self._set
                    )
                except pynvml.NVMLError as error:  # NOT_SUPPORTED: some GPUs, vGPUs, MIG
                    self.refused.append(f"GPU {index} ({uuid}) has no XID events in NVML: {error}")
                    continue
                self.uuids[_handle_key(handle)] = uuid
        except BaseException:
            self.close()
            raise

    def drain(self, limit: int) -> tuple[list[tuple[str | None, int]], str | None]:
        """(UUID, XID) of each event waiting, without waiting for more (timeout 0 ms), and what
        stopped the drain other than there being no more. The UUID is None for an event of a
        GPU that cannot be named (lost before it registered)."""
        events: list[tuple[str | None, int]] = []
        for _ in range(limit):
            try:
                data = pynvml.nvmlEventSetWait(self._set, 0)
            except pynvml.NVMLError as error:
                if getattr(error, "value", None) == pynvml.NVML_ERROR_TIMEOUT:
                    return events, None  # no more events
                return events, str(error)  # e.g. GPU is lost: the next collection tries again
            if not int(data.eventType) & pynvml.nvmlEventTypeXidCriticalError:
                continue
            events.append((self._uuid_of(data.device), int(data.eventData)))
        return events, None

    def _uuid_of(self, handle: Any) -> str | None:
        uuid = self.uuids.get(_handle_key(handle))
        if uuid is None:  # a GPU that fell off the bus may not answer this
            uuid = _maybe(lambda: _text(pynvml.nvmlDeviceGetUUID(handle)))
        return uuid

    def close(self) -> None:
        if self._set is not None:
            _maybe(lambda: pynvml.nvmlEventSetFree(self._set))
            self._set = None
        if self._open:
            self._open = False
            _maybe(pynvml.nvmlShutdown)
