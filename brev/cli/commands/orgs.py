"""brev org ls | create | use | members | invite | remove."""

from __future__ import annotations

from typing import Annotated

import typer

from brev.cli import panels
from brev.cli.login_state import connect, current_login, use_org
from brev.cli.options import JsonOutput
from brev.cli.output import age, note, print_json, print_table
from brev.errors import BrevError

group = typer.Typer(
    help="Orgs: who shares instances, nodes and tokens.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@group.command("ls")
def list_orgs(json_output: JsonOutput = False) -> None:
    """List your orgs; `*` marks the one in use."""
    current = current_login().org
    with connect() as client:
        orgs = client.orgs()
    if json_output:
        print_json(orgs)
        return
    rows = [
        ["*" if o.name == current else "", o.name, o.role.value, age(o.created_at)] for o in orgs
    ]
    print_table(["", "name", "role", "age"], rows)


@group.command("create")
def create_org(
    name: Annotated[str, typer.Argument(help="org name")], json_output: JsonOutput = False
) -> None:
    """Create an org; you become its admin."""
    with connect() as client:
        org = client.create_org(name)
    if json_output:
        print_json(org)
        return
    note(f"Created org '{org.name}'. Switch to it with `brev org use {org.name}`.")


@group.command("use")
def use(
    name: Annotated[str, typer.Argument(help="org name")], json_output: JsonOutput = False
) -> None:
    """Make NAME the org that later commands act in."""
    with connect() as client:
        orgs = {o.name: o for o in client.orgs()}
    if name not in orgs:
        raise BrevError(f"org '{name}' not found; yours: {', '.join(orgs) or 'none'}")
    use_org(name)
    if json_output:
        print_json(orgs[name])
        return
    note(f"Now using org '{name}'.")


@group.command("members")
def members(json_output: JsonOutput = False) -> None:
    """List the members of the current org."""
    with connect() as client:
        people = client.members()
    if json_output:
        print_json(people)
        return
    print_table(
        ["email", "name", "role", "joined"],
        [[m.email, m.name, m.role.value, age(m.joined_at)] for m in people],
    )


@group.command("invite")
def invite(
    email: Annotated[str, typer.Argument(help="the person's email")],
    role: Annotated[str, typer.Option(help="admin or member")] = "member",
    name: Annotated[str, typer.Option(help="display name")] = "",
    json_output: JsonOutput = False,
) -> None:
    """Add a person to the current org.

    A new user gets a login token, printed once on stdout.
    """
    with connect() as client:
        added = client.add_member(email, role=role, name=name)
    if json_output:
        print_json(added)
        return
    note(f"Added {added.member.email} to org as {added.member.role.value}.")
    if added.login_token:
        note("Their login token, shown once; hand it over privately:")
        typer.echo(added.login_token)


@group.command("remove")
def remove(
    email: Annotated[str, typer.Argument(help="the person's email")],
    json_output: JsonOutput = False,
) -> None:
    """Take a person out of the current org (admins); no new SSH certificates for them."""
    with connect() as client:
        client.remove_member(email)
    if json_output:
        print_json({"org": client.org, "removed": email})
        return
    note(f"Removed {email} from org '{client.org}'.")


def register(app: typer.Typer) -> None:
    app.add_typer(group, name="org", rich_help_panel=panels.ORGANIZATION)
