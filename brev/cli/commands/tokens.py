"""brev token create | ls | revoke."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from brev.cli import panels
from brev.cli.login_state import connect
from brev.cli.options import JsonOutput, optional_duration
from brev.cli.output import note, print_json, print_table, when
from brev.duration import format_duration_exact
from brev.errors import BrevError

if TYPE_CHECKING:
    from brev import api

group = typer.Typer(
    help="API tokens for scripts and CI jobs.", no_args_is_help=True, rich_markup_mode=None
)


@group.command("create")
def create(
    name: Annotated[str, typer.Option(help="a name to recognise the token by, e.g. ci")],
    expires: Annotated[
        str | None, typer.Option(help="lifetime such as 12h, 30d or 2w; default: never")
    ] = None,
    scope: Annotated[
        str | None,
        typer.Option(help="run: for CI's `brev run` (offers, and only its own instances)"),
    ] = None,
    max_price: Annotated[
        float | None, typer.Option(help="run scope: USD per hour per instance at most", min=0.01)
    ] = None,
    max_gpus: Annotated[
        int | None, typer.Option(help="run scope: GPUs per instance at most", min=0)
    ] = None,
    max_ttl: Annotated[
        str | None,
        typer.Option(help="run scope: its instances are deleted this long after creation, e.g. 2h"),
    ] = None,
    json_output: JsonOutput = False,
) -> None:
    """Create a token limited to the current org. The token is printed once, alone on stdout.

    With --scope run it may only read offers, create instances within its limits and act on
    the instances it created: what a CI job's `brev run` needs, and nothing else."""
    seconds = optional_duration("--expires", expires)
    if scope is not None and scope.strip().lower() != "run":
        raise BrevError(f"--scope: unknown scope {scope!r}; the only scope is run")
    limits = {"--max-price": max_price, "--max-gpus": max_gpus, "--max-ttl": max_ttl}
    given = [flag for flag, value in limits.items() if value is not None]
    if given and scope is None:
        raise BrevError(f"{given[0]}: limits apply to run-scoped tokens only: add --scope run")
    ttl_seconds = optional_duration("--max-ttl", max_ttl)
    with connect() as client:
        created = client.create_token(
            name,
            expires_in_seconds=seconds,
            scope="run" if scope else None,
            max_price_per_hour=max_price,
            max_gpus=max_gpus,
            max_ttl_seconds=ttl_seconds,
        )
    if json_output:
        print_json(created)
        return
    token = created.token
    kind = "run-scoped token" if token.scope else "token"
    note(
        f"Created {kind} '{token.name}' for org '{token.org}'{_limits(token)}, "
        f"expires {when(token.expires_at)}. Store it now: it is not shown again."
    )
    typer.echo(created.secret)


def _limits(token: api.Token) -> str:
    parts = []
    if token.max_price_per_hour is not None:
        parts.append(f"${token.max_price_per_hour:.2f}/h")
    if token.max_gpus is not None:
        parts.append(f"{token.max_gpus} GPUs")
    if token.max_ttl_seconds is not None:
        parts.append(f"TTL {format_duration_exact(token.max_ttl_seconds)}")
    return f" (at most {', '.join(parts)})" if parts else ""


@group.command("ls")
def list_tokens(
    json_output: JsonOutput = False,
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
            t.scope or "all",
            when(t.expires_at),
            when(t.last_used_at),
        ]
        for t in tokens
    ]
    print_table(["name", "prefix", "owner", "org", "state", "scope", "expires", "last used"], rows)


@group.command("revoke")
def revoke(
    name: Annotated[str, typer.Argument(help="name of the token")],
    json_output: JsonOutput = False,
) -> None:
    """Revoke a token at once; requests with it then get 401."""
    with connect() as client:
        token = client.revoke_token(name)
    if json_output:
        print_json(token)
        return
    note(f"Revoked token '{token.name}' ({token.prefix}…) of {token.owner}.")


def register(app: typer.Typer) -> None:
    app.add_typer(group, name="token", rich_help_panel=panels.ORGANIZATION)
