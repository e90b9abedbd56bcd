"""brev server: run the control plane."""

from __future__ import annotations

from typing import Annotated

import typer

from brev.cli import panels


def server(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on", min=1, max=65535)] = 8080,
    database_url: Annotated[
        str | None,
        typer.Option(
            help="SQLAlchemy URL; default: $BREV_DATABASE_URL, else SQLite in $BREV_HOME/brev.db",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run the control plane: API and dashboard.

    Migrates the database first; on an empty one, creates the first admin and its token.
    """
    from brev.errors import BrevError
    from brev.server.main import serve
    from brev.server.settings import ServerSettings

    try:
        settings = ServerSettings.load(host=host, port=port, database_url=database_url)
    except ValueError as exc:  # a BREV_* variable that is not a number, or not one of its kind
        raise BrevError(f"invalid server setting: {exc}") from None
    serve(settings)


def register(app: typer.Typer) -> None:
    app.command(rich_help_panel=panels.CONTROL_PLANE)(server)
