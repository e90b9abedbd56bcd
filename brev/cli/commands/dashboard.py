"""brev dashboard: open the web dashboard, already signed in."""

from __future__ import annotations

from typing import Annotated

import typer

from brev.cli import panels
from brev.cli.login_state import connect
from brev.cli.options import JsonOutput
from brev.cli.output import note, print_json


def dashboard(
    no_browser: Annotated[
        bool, typer.Option("--no-browser", help="print the sign-in link instead of opening it")
    ] = False,
    json_output: JsonOutput = False,
) -> None:
    """Open the dashboard in your browser, signed in as you.

    The link carries a single-use code that works for two minutes; the page trades it for a
    browser session and drops it from the address bar. Over SSH, use --no-browser and open
    the printed link on your own machine (with the plane's port forwarded)."""
    with connect() as client:
        link = client.create_login_link()
        # The plane names itself by its public URL, when it has one; the CLI reached it here.
        url = f"{client.url}/#login={link.code}"
    if json_output:
        print_json({"url": url, "expires_at": link.expires_at.isoformat()})
        return
    opened = False
    if not no_browser:
        import webbrowser

        opened = webbrowser.open(url)
    if opened:
        note("opened the dashboard in your browser (the link works once, for 2 minutes)")
    else:
        typer.echo(url)
        note("open this link to sign in; it works once, for 2 minutes")


def register(app: typer.Typer) -> None:
    app.command(rich_help_panel=panels.ORGANIZATION)(dashboard)
