"""brev skill: the SKILL.md that teaches a coding agent to use brev (brev.cli.agent_skill)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from brev.cli import panels
from brev.cli.output import note


def skill(
    context: typer.Context,
    install: Annotated[
        Path | None,
        typer.Option(
            "--install",
            metavar="DIR",
            help="write DIR/brev/SKILL.md instead of printing it, e.g. ~/.claude/skills",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Print a SKILL.md that teaches a coding agent to find, create, use and give back a GPU."""
    from brev.cli import agent_skill

    text = agent_skill.render(context.find_root().command)
    if install is None:
        sys.stdout.write(text)
        return
    try:
        path = agent_skill.install(install, text)
    except OSError as exc:
        from brev.errors import BrevError

        raise BrevError(f"--install: cannot write {exc.filename} ({exc.strerror})") from None
    note(f"Wrote {path}.")


def register(app: typer.Typer) -> None:
    app.command(rich_help_panel=panels.CONFIGURATION)(skill)
