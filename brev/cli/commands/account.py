"""login, logout, whoami."""

from __future__ import annotations

from typing import Annotated

import typer

from brev.cli import panels, prompts
from brev.cli.login_state import Login, connect, current_login, forget_login, save_login
from brev.cli.options import JsonOutput
from brev.cli.output import note, print_json, print_table
from brev.errors import BrevError


def login(
    url: Annotated[str, typer.Option(help="URL of the control plane, e.g. http://127.0.0.1:8080")],
    token: Annotated[
        str | None, typer.Option(help="an API token; asked for when omitted on a terminal")
    ] = None,
    org: Annotated[str | None, typer.Option(help="org to use; default: your first org")] = None,
    json_output: JsonOutput = False,
) -> None:
    """Log in to a control plane.

    Checks the token, then stores the URL, token and org in $BREV_HOME/credentials.json.
    --json prints what `brev whoami --json` prints.
    """
    if token is None:
        token = prompts.secret("Token", without_terminal="no token given: pass --token TOKEN")
    candidate = Login(url=url.rstrip("/"), token=token.strip())
    with connect(candidate) as client:
        me = client.whoami()
        memberships = [m.org for m in me.memberships]
        if org is not None and org not in memberships:
            raise BrevError(f"org '{org}' not found; yours: {', '.join(memberships) or 'none'}")
        chosen = org or me.default_org
        save_login(Login(url=candidate.url, token=candidate.token, org=chosen))
        note(
            f"Logged in to {candidate.url} as {me.user.email}"
            + (f" (org: {chosen})" if chosen else "")
        )
        if chosen:
            from brev.cli.ssh_access import refresh_quietly

            client.org = chosen
            refresh_quietly(client)  # makes the SSH key, writes ssh_config
    if json_output:
        print_json({**me.model_dump(mode="json"), "url": candidate.url, "org": chosen})


def logout() -> None:
    """Forget the stored login.

    The token itself stays valid until it is revoked (`brev token revoke`).
    """
    forgotten = forget_login()
    note(f"Logged out of {forgotten.url}." if forgotten.url else "Not logged in.")


def whoami(
    json_output: JsonOutput = False,
) -> None:
    """Show who you are logged in as, where, and in which org."""
    login = current_login()
    with connect(login) as client:
        me = client.whoami()
    if json_output:
        print_json({**me.model_dump(mode="json"), "url": login.url, "org": login.org})
        return
    print_table(
        ["user", "org", "role", "token", "url"],
        [
            [
                me.user.email,
                login.org or "-",
                next((m.role.value for m in me.memberships if m.org == login.org), "-"),
                me.token_name,
                login.url or "-",
            ]
        ],
    )


def register(app: typer.Typer) -> None:
    app.command(rich_help_panel=panels.CONFIGURATION)(login)
    app.command(rich_help_panel=panels.CONFIGURATION)(logout)
    app.command(rich_help_panel=panels.CONFIGURATION)(whoami)
