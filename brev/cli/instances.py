"""Instance commands: ls (create, start, stop, delete and show arrive with the providers)."""

from __future__ import annotations

from typing import Annotated

import typer

from brev.cli.login_state import connect
from brev.cli.output import age, note, print_json, print_table

PANEL = "Instances"


def ls(
    json_output: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """List the current org's instances."""
    with connect() as client:
        instances = client.instances()
    if json_output:
        print_json(instances)
        return
    if not instances:
        note(f"No instances in org '{client.org}'. Create one with `brev create a100`.")
        return
    rows = [
        [
            i.name,
            i.status.value,
            i.health.value,
            f"{i.gpu_model or i.gpu_spec} x{i.gpu_count}" if i.gpu_count else "cpu",
            "/".join(p for p in (i.provider, i.node or i.region) if p) or "-",
            f"{i.price_per_hour:.2f}" if i.price_per_hour is not None else "-",
            age(i.created_at),
        ]
        for i in instances
    ]
    print_table(["name", "status", "health", "gpu", "provider", "$/h", "age"], rows)


def register(app: typer.Typer) -> None:
    app.command(rich_help_panel=PANEL)(ls)
