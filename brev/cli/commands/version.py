"""brev version."""

from __future__ import annotations

import typer

from brev import __version__
from brev.cli import panels
from brev.cli.options import JsonOutput


def version(
    json_output: JsonOutput = False,
) -> None:
    """Print the version of this CLI."""
    if json_output:
        from brev.cli.output import print_json

        print_json({"version": __version__})
    else:
        typer.echo(f"brev {__version__}")


def register(app: typer.Typer) -> None:
    app.command(rich_help_panel=panels.CONFIGURATION)(version)
