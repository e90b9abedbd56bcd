"""The GPU table that `brev show` and `brev agent collect` print, like nvidia-smi's."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from brev.cli.output import print_table

TYPE_CHECKING = False  # as in brev.cli.output: no typing at run time
if TYPE_CHECKING:
    from typing import Any


def print_gpu_table(gpus: Sequence[Mapping[str, Any]]) -> None:
    """`gpus`: GpuSample records as JSON (brev.agent.report), as the agent reports them."""
    print_table(
        ["gpu", "name", "util", "memory", "temp", "power", "processes"],
        [
            [
                str(g.get("index", "")),
                str(g.get("name", "")),
                _unit(g.get("utilization_gpu_pct"), "%"),
                _memory(g.get("memory_used_mib"), g.get("memory_total_mib"))
                + (" (unified)" if g.get("unified_memory") else ""),
                _unit(g.get("temperature_c"), "C"),
                _power(g.get("power_draw_w"), g.get("power_limit_w")),
                ", ".join(_process(p) for p in g.get("processes") or []) or "-",
            ]
            for g in gpus
        ],
    )


def _unit(value: float | None, unit: str) -> str:
    return "-" if value is None else f"{value:.0f}{unit}"


def _memory(used: float | None, total: float | None) -> str:
    if total is None:
        return "-"
    return f"{(used or 0) / 1024:.1f}/{total / 1024:.1f} GiB"


def _power(draw: float | None, limit: float | None) -> str:
    if draw is None:
        return "-"
    return f"{draw:.0f}/{limit:.0f}W" if limit is not None else f"{draw:.0f}W"


def _process(process: Mapping[str, Any]) -> str:
    name = str(process.get("name") or "?").rsplit("/", 1)[-1]
    return f"{name}[{process.get('pid')}]"
