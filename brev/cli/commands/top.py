"""brev top: what the GPUs are doing now, refreshed, like nvidia-smi -l but for the team."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from brev.cli import panels
from brev.cli.gpus import print_gpu_table
from brev.cli.login_state import connect
from brev.cli.options import duration, json_flag
from brev.cli.output import age, note, print_json, print_table

if TYPE_CHECKING:
    from brev import api
    from brev.client import BrevClient

# Home the cursor and clear the screen: each refresh redraws in place on a terminal.
CLEAR = "\x1b[H\x1b[2J"


def top(
    name: Annotated[str | None, typer.Argument(help="instance name; default: all running")] = None,
    interval: Annotated[str, typer.Option(help="time between refreshes, e.g. 2s")] = "2s",
    json_output: Annotated[bool, json_flag("print one snapshot as JSON")] = False,
    iterations: Annotated[
        int | None, typer.Option(hidden=True, min=1, help="stop after this many refreshes")
    ] = None,
) -> None:
    """Watch GPU utilization, memory, power and temperature, refreshed until Ctrl-C."""
    seconds = duration("--interval", interval)
    with connect() as client:
        if json_output:
            print_json(_instance_snapshot(client, name) if name else _fleet_snapshot(client))
            return
        draw: Callable[[], None] = (
            (lambda: _draw_instance(client, name)) if name else (lambda: _draw_fleet(client))
        )
        # Ctrl-C is how one leaves top: not an error.
        with contextlib.suppress(KeyboardInterrupt):
            _refresh(draw, seconds, iterations)


def _refresh(draw: Callable[[], None], seconds: int, iterations: int | None) -> None:
    terminal = sys.stdout.isatty()
    done = 0
    while True:
        if terminal:
            sys.stdout.write(CLEAR)
        elif done:
            sys.stdout.write("\n")  # in a pipe: one block per refresh, a blank line between
        sys.stdout.write(f"{datetime.now().strftime('%H:%M:%S')}\n")
        draw()
        sys.stdout.flush()
        done += 1
        if iterations is not None and done >= iterations:
            return
        time.sleep(seconds)


# -- one instance ---------------------------------------------------------------------------


def _draw_instance(client: BrevClient, name: str) -> None:
    instance = client.instance(name)
    gpus = instance.telemetry.get("gpus") or []
    sys.stdout.write(f"{instance.name}: {instance.status}, health {instance.health}; ")
    sys.stdout.write(f"{_report_age(instance)}\n")
    sys.stdout.flush()  # before print_gpu_table, which may write through rich
    if gpus:
        print_gpu_table(gpus)
    else:
        sys.stdout.write("no GPU in the last report\n")


def _report_age(instance: api.InstanceDetail) -> str:
    if instance.last_heartbeat_at is None:
        return "no agent report yet"
    return f"last report {age(instance.last_heartbeat_at)} ago"


def _instance_snapshot(client: BrevClient, name: str) -> dict[str, Any]:
    instance = client.instance(name)
    return {
        "name": instance.name,
        "status": instance.status,
        "health": instance.health,
        "last_report_at": _iso(instance.last_heartbeat_at),
        "gpus": instance.telemetry.get("gpus") or [],
    }


# -- every running instance ------------------------------------------------------------------


def _fleet(client: BrevClient) -> list[dict[str, Any]]:
    """One summary per running instance. The list has no telemetry, so each running instance
    costs a request: fine for a team's tens of machines, at a 2 s pace."""
    summaries = []
    for listed in client.instances():
        if listed.status != "running":
            continue
        instance = client.instance(listed.name)
        gpus = [g for g in instance.telemetry.get("gpus") or [] if isinstance(g, dict)]
        summaries.append(
            {
                "name": instance.name,
                "health": instance.health,
                "gpus": len(gpus),
                "utilization_pct": _average(g.get("utilization_gpu_pct") for g in gpus),
                "memory_used_mib": _total(g.get("memory_used_mib") for g in gpus),
                "memory_total_mib": _total(g.get("memory_total_mib") for g in gpus),
                "last_report_at": _iso(instance.last_heartbeat_at),
            }
        )
    return summaries


def _fleet_snapshot(client: BrevClient) -> dict[str, Any]:
    return {"instances": _fleet(client)}


def _draw_fleet(client: BrevClient) -> None:
    rows = [
        [
            s["name"],
            s["health"],
            str(s["gpus"]),
            "-" if s["utilization_pct"] is None else f"{s['utilization_pct']:.0f}%",
            _memory(s["memory_used_mib"], s["memory_total_mib"]),
        ]
        for s in _fleet(client)
    ]
    if not rows:
        note("No running instance.")
        return
    print_table(["name", "health", "gpus", "avg util", "memory"], rows)


def _numbers(values: Any) -> list[float]:
    return [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]


def _average(values: Any) -> float | None:
    numbers = _numbers(values)
    return sum(numbers) / len(numbers) if numbers else None


def _total(values: Any) -> float | None:
    numbers = _numbers(values)
    return sum(numbers) if numbers else None


def _memory(used: float | None, total: float | None) -> str:
    if used is None:
        return "-"
    shown = f"{used / 1024:.1f}"
    return f"{shown}/{total / 1024:.1f} GiB" if total else f"{shown} GiB"


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def register(app: typer.Typer) -> None:
    app.command(rich_help_panel=panels.INSTANCES)(top)
