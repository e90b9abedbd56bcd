"""The `brev` console script: builds the command tree and turns errors into one-line messages."""

from __future__ import annotations

import sys
from typing import Any, Protocol

import typer
from typer.core import TyperGroup

from brev.cli import panels
from brev.cli.commands import (
    access,
    account,
    agent,
    catalog,
    dashboard,
    editor,
    instances,
    jupyter,
    nodes,
    orgs,
    providers,
    register,
    search,
    server,
    skill,
    tokens,
    top,
    tunnels,
    version,
)
from brev.cli.commands import run as run_command
from brev.errors import BrevError


class CommandModule(Protocol):
    """A module of brev.cli.commands: it adds its commands (or its group) to the app."""

    def register(self, app: typer.Typer) -> None: ...


PANEL_ORDER = panels.ORDER
# In the order of `brev --help` within each panel (a panel's groups come after its commands).
COMMANDS: list[CommandModule] = [
    instances,
    run_command,
    search,
    top,
    nodes,
    register,
    access,
    tunnels,
    jupyter,
    editor,
    orgs,
    tokens,
    providers,
    account,
    dashboard,
    catalog,
    agent,
    version,
    skill,
    server,
]


class _PanelOrderedGroup(TyperGroup):
    """Help in plain text, one section per panel, panels in PANEL_ORDER.

    typer draws panels only through rich, whose help rendering imports rich's markdown,
    syntax and traceback machinery and doubles the time of `brev --help`; click's own
    formatter, given the panels, prints the same information at once."""

    def list_commands(self, ctx: Any) -> list[str]:
        def panel_rank(name: str) -> int:
            return PANEL_ORDER.index(_panel(self.commands[name]))

        return sorted(super().list_commands(ctx), key=panel_rank)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        commands = [(name, self.get_command(ctx, name)) for name in self.list_commands(ctx)]
        visible = [(name, command) for name, command in commands if command and not command.hidden]
        if not visible:
            return
        width = max(len(name) for name, _ in visible)
        limit = formatter.width - 6 - width
        for panel in PANEL_ORDER:
            rows = [
                (name.ljust(width), command.get_short_help_str(limit))
                for name, command in visible
                if _panel(command) == panel
            ]
            if rows:
                with formatter.section(panel):
                    formatter.write_dl(rows)


def _panel(command: Any) -> str:
    panel = getattr(command, "rich_help_panel", None)
    return panel if panel in PANEL_ORDER else panels.OTHER


app = typer.Typer(
    name="brev",
    cls=_PanelOrderedGroup,
    help="One place where a team gets GPUs: cloud instances and your own machines.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

for module in COMMANDS:
    module.register(app)


def main() -> None:
    argv = sys.argv[1:]
    if argv[:1] == ["run"]:
        argv = run_command.take_command(argv)
    try:
        app(args=argv)
    except BrevError as exc:
        report_error(exc)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
    except Exception as exc:
        # A request body the CLI builds (brev.api models) refusing a value the user typed.
        from pydantic import ValidationError

        if not isinstance(exc, ValidationError):
            raise
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors()
        )
        sys.stderr.write(f"error: invalid value: {problems}\n")
        sys.exit(1)


def report_error(exc: BrevError) -> None:
    sys.stderr.write(f"error: {_explain(exc)}\n")


def _explain(exc: BrevError) -> str:
    """The error's message, plus the next step when the error says what it is."""
    from brev import client

    if isinstance(exc, client.Unauthenticated):
        return f"{exc.message}: run `brev login --url URL --token TOKEN` with a valid token"
    if isinstance(exc, client.ServerUnreachable):
        return f"{exc.message}; is `brev server` running there?"
    if isinstance(exc, client.InvalidRequest):
        return f"invalid request: {exc.message}"
    return exc.message
