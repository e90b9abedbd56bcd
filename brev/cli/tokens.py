"""brev token create | ls | revoke."""

from __future__ import annotations

from typing import Annotated

import typer

from brev.cli.login_state import connect
from brev.cli.output import note, print_json, print_table, when
from brev.duration import InvalidDuration, parse_duration
from brev.errors import BrevError

app = typer.Typer(
    help="API tokens for scripts and CI jobs.", no_args_is_help=True, rich_markup_mode=None
)


@app.command("create")
def create(
    name: Annotated[str, typer.Option(help="a name to recognise the token by, e.g. ci")],
    expires: Annotated[
        str | None, typer.Option(help="lifetime such as 12h, 30d or 2w; default: never")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Create a token limited to the current org. The token is printed once, alone on stdout."""
    try:
        seconds = parse_duration(expires) if expires else None
    except InvalidDuration as exc:
        raise BrevError(f"--expires: {exc}") from None
    with connect() as client:
        created = client.create_token(name, expires_in_seconds=seconds)
    if json_output:
        print_json(created)
        return
    token = created.token
    note(
        f"Created token '{token.name}' for org '{token.org}', "
        f"expires {when(token.expires_at)}. Store it now: it is not shown again."
    )
    typer.echo(created.secret)


@app.command("ls")
def list_tokens(
    json_output: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """List tokens that work in the current org (an admin sees the whole org's)."""
    with connect() as client:
        tokens = client.tokens()
    if json_output:
        print_json(tokens)
        return
    rows = [
        [
            t.name,
            t.prefix + "…",
            t.owner,
            t.org or "(all orgs)",
            "revoked" if t.revoked_at else "active",
            when(t.expires_at),
            when(t.last_used_at),
        ]
        for t in tokens
    ]
    print_table(["name", "prefix", "owner", "org", "state", "expires", "last used"], rows)


@app.command("revoke")
def revoke(name: Annotated[str, typer.Argument(help="name of the token")]) -> None:
    """Revoke a token at once; requests with it then get 401."""
    with connect() as client:
        token = client.revoke_token(name)
    note(f"Revoked token '{token.name}' ({token.prefix}…) of {token.owner}.")
