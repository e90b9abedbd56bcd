"""GPUs as `nvidia-smi` reports them, parsed by header name, not by position.

Real output varies by GPU and driver (see shared/fixtures/nvidia-smi): `[N/A]` and
`[Not Supported]` values, units in headers (`memory.total [MiB]`), renamed columns (asking
for `clocks.sm` returns `clocks.current.sm [MHz]`), fields an older driver refuses (exit 2),
and no binary at all on a host without a driver. Every one of those yields a sample with
`None` where the value was not given, never an exception.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from brev.agent.report import GpuProcess, GpuSample

FIELDS = (
    "index,uuid,name,pci.bus_id,driver_version,memory.total,memory.used,utilization.gpu,"
    "utilization.memory,temperature.gpu,power.draw,power.limit,mig.mode.current,"
    "ecc.errors.uncorrected.volatile.total"
)
# What every driver since the 2010s answers: asked for when the full list is refused.
BASIC_FIELDS = "index,uuid,name,memory.total,memory.used,utilization.gpu"
APP_FIELDS = "gpu_uuid,pid,process_name,used_memory"
TIMEOUT_S = 15
_MISSING = {"", "[n/a]", "n/a", "[not supported]", "not supported", "[unknown error]"}
# nvidia-smi answers some fields under another name than the one asked for.
_ALIASES = {
    "used_gpu_memory": "used_memory",
    "clocks.current.sm": "clocks.sm",
    "clocks.current.memory": "clocks.mem",
}


class NoDriver(Exception):
    """No nvidia-smi, or it cannot talk to a driver: a CPU host."""


@dataclass(frozen=True)
class SmiReading:
    gpus: list[GpuSample]
    driver_version: str | None


def _run(*args: str) -> str:
    binary = shutil.which("nvidia-smi")
    if binary is None:
        raise NoDriver("nvidia-smi not found")
    try:
        done = subprocess.run(
            [binary, *args], capture_output=True, text=True, timeout=TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        raise NoDriver(f"nvidia-smi did not answer in {TIMEOUT_S} s") from None
    if done.returncode == 2:
        raise ValueError(done.stderr.strip() or done.stdout.strip())
    if done.returncode != 0:
        lines = (done.stdout + done.stderr).strip().splitlines()
        raise NoDriver(lines[0] if lines else f"nvidia-smi exited {done.returncode}")
    return done.stdout


def header_name(header: str) -> str:
    """`memory.total [MiB]` -> `memory.total`; renamed columns back to the asked-for name."""
    name = re.sub(r"\s*\[.*?\]\s*$", "", header.strip()).strip()
    return _ALIASES.get(name, name)


def parse_csv(text: str, names: Sequence[str] | None = None) -> list[dict[str, str | None]]:
    """Rows of `--format=csv[,nounits]` output keyed by field name: from its header line, or
    from `names` (the fields asked for) when it was asked for with `noheader`."""
    rows = list(csv.reader(io.StringIO(text.strip()), skipinitialspace=True))
    if names is None:
        if not rows:
            return []
        names, rows = [header_name(h) for h in rows[0]], rows[1:]
    return [
        {name: _value(cell) for name, cell in zip(names, row, strict=False)}
        for row in rows
        if any(cell.strip() for cell in row)
    ]


def _value(cell: str) -> str | None:
    return None if cell.strip().lower() in _MISSING else cell.strip()


def number(value: str | None) -> float | None:
    """`143771`, `78.05`, also `143771 MiB` or `78.05 W` if units were left in."""
    if value is None:
        return None
    match = re.match(r"^\s*(-?\d+(?:\.\d+)?)", value)
    return float(match.group(1)) if match else None


def _sample(row: Mapping[str, str | None], processes: list[GpuProcess]) -> GpuSample:
    return GpuSample(
        index=int(number(row.get("index")) or 0),
        uuid=row.get("uuid") or "",
        name=row.get("name") or "unknown GPU",
        bus_id=row.get("pci.bus_id"),
        memory_total_mib=number(row.get("memory.total")),
        memory_used_mib=number(row.get("memory.used")),
        unified_memory=False,
        utilization_gpu_pct=number(row.get("utilization.gpu")),
        utilization_memory_pct=number(row.get("utilization.memory")),
        temperature_c=number(row.get("temperature.gpu")),
        power_draw_w=number(row.get("power.draw")),
        power_limit_w=number(row.get("power.limit")),
        mig_mode=row.get("mig.mode.current"),
        ecc_uncorrected=number(row.get("ecc.errors.uncorrected.volatile.total")),
        processes=processes,
    )


def read_gpus() -> SmiReading:
    """Every GPU with its processes. NoDriver when this host has no working NVIDIA driver."""
    try:
        rows = parse_csv(_run(f"--query-gpu={FIELDS}", "--format=csv,nounits"))
    except ValueError:  # an older driver refused a field: ask for what every driver knows
        try:
            rows = parse_csv(_run(f"--query-gpu={BASIC_FIELDS}", "--format=csv,nounits"))
        except ValueError as error:
            # Refused even those: a broken nvidia-smi. A report saying so, never a crashed agent.
            raise NoDriver(f"nvidia-smi refused every query: {error}") from None
    processes: dict[str, list[GpuProcess]] = {}
    try:
        apps = parse_csv(_run(f"--query-compute-apps={APP_FIELDS}", "--format=csv,nounits"))
    except (ValueError, NoDriver):
        apps = []
    for app in apps:
        pid = number(app.get("pid"))
        if app.get("gpu_uuid") and pid is not None:
            processes.setdefault(str(app["gpu_uuid"]), []).append(
                GpuProcess(
                    pid=int(pid),
                    name=app.get("process_name") or "",
                    used_memory_mib=number(app.get("used_memory")),
                )
            )
    gpus = [_sample(row, processes.get(row.get("uuid") or "", [])) for row in rows]
    driver = next((r.get("driver_version") for r in rows if r.get("driver_version")), None)
    return SmiReading(gpus=gpus, driver_version=driver)


def cuda_version() -> str | None:
    """The CUDA version the driver supports, from `nvidia-smi -q` (not a --query-gpu field)."""
    try:
        return cuda_version_in(_run("-q"))
    except (ValueError, NoDriver):
        return None


def cuda_version_in(text: str) -> str | None:
    """From `nvidia-smi -q` (`CUDA Version : 13.0`) or its table (`CUDA Version: 13.0 |`)."""
    match = re.search(r"CUDA Version\s*:\s*([0-9][0-9.]*)", text)
    return match.group(1) if match else None
