"""brev ls (the full CLI's path; brev.cli.listing has the fast one and the table)."""

from __future__ import annotations

from typing import Annotated

import typer

from brev.cli.login_state import connect

PANEL = "Instances"


def ls(
    json_output: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """List the current org's instances."""
    from brev.cli.listing import print_instances

    with connect() as client:
        instances = client.instances()
    print_instances([i.model_dump(mode="json") for i in instances], client.org, json_output)


def register(app: typer.Typer) -> None:
    app.command(rich_help_panel=PANEL)(ls)
