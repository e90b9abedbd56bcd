"""brev provider add | ls | rm: an org's cloud credentials.

Each provider (built in or a plug-in) declares its config keys; `brev provider add NAME` takes
each as `--KEY VALUE`, else from the key's environment variable, reads files where the key
says so, and runs the provider's own discovery (AWS profiles) where this CLI has the provider
installed. The plane checks them with the provider and stores them encrypted; they are never
printed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from brev import api
from brev.cli import panels
from brev.cli.login_state import connect
from brev.cli.options import JsonOutput
from brev.cli.output import age, note, print_json, print_table
from brev.errors import BrevError

group = typer.Typer(
    help="Cloud credentials of the current org.", no_args_is_help=True, rich_markup_mode=None
)


@group.command(
    "add",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    epilog="Examples: brev provider add aws --profile work | "
    "brev provider add gcp --project P --credentials-file key.json | "
    "brev provider add lambda (reads LAMBDA_API_KEY)",
)
def add(
    context: typer.Context,
    provider: Annotated[
        str, typer.Argument(help="aws, gcp, lambda, or a plug-in (brev provider ls --available)")
    ],
    json_output: JsonOutput = False,
) -> None:
    """Add (or replace) a provider's credentials; its options are its config keys."""
    with connect() as client:
        kind = _kind(client.provider_kinds(), provider)
        values = _discovered(provider, _collected(kind, context.args))
        missing = [k for k in kind.config_keys if k.required and not values.get(k.name)]
        if missing:
            wanted = ", ".join(k.option + (f" (or {k.env})" if k.env else "") for k in missing)
            raise BrevError(f"{kind.display_name} needs {wanted}")
        sent = {k.name for k in kind.config_keys if not k.local}
        config = {key: value for key, value in values.items() if key in sent}
        added = client.add_provider(provider, config)
    if json_output:
        print_json(added)
        return
    note(f"Added {provider} credentials to org '{client.org}': {added.identity}.")


def _kind(kinds: list[api.ProviderKind], name: str) -> api.ProviderKind:
    for kind in kinds:
        if kind.name == name:
            return kind
    known = ", ".join(k.name for k in kinds)
    raise BrevError(f"unknown provider '{name}'; the plane has: {known}")


def _collected(kind: api.ProviderKind, words: list[str]) -> dict[str, str]:
    """`--option VALUE` / `--option=VALUE` words by key name, then the keys' variables."""
    by_option = {key.option: key for key in kind.config_keys}
    given: dict[str, str] = {}
    rest = list(words)
    while rest:
        word = rest.pop(0)
        option, equals, value = word.partition("=")
        key = by_option.get(option)
        if key is None:
            options = " ".join(sorted(by_option)) or "none"
            raise BrevError(f"{kind.display_name} takes no {option}; its options: {options}")
        if not equals:
            if not rest or rest[0].startswith("--"):
                raise BrevError(f"{option} needs a value")
            value = rest.pop(0)
        given[key.name] = value
    values: dict[str, str] = {}
    for key in kind.config_keys:
        found = given.get(key.name) or (os.environ.get(key.env) if key.env else None)
        if found:
            values[key.name] = _read(found) if key.from_file else found
    return values


def _read(path_text: str) -> str:
    path = Path(path_text).expanduser()
    try:
        return path.read_text()
    except OSError as exc:
        raise BrevError(f"cannot read {path} ({exc.strerror})") from None


def _discovered(provider: str, values: dict[str, str]) -> dict[str, str]:
    """The provider's own discovery, where this CLI has it installed; `values` otherwise."""
    from brev.providers import registry
    from brev.providers.base import ProviderError

    try:
        discover = registry.info(provider).discover
    except registry.UnknownProvider:
        return values  # a plug-in only the plane has: what the keys' options gave
    if discover is None:
        return values
    try:
        return discover(dict(values))
    except ProviderError as error:
        raise BrevError(error.message) from None


@group.command("ls")
def list_providers(
    json_output: JsonOutput = False,
    available: Annotated[
        bool, typer.Option("--available", help="the providers the plane has, and their options")
    ] = False,
) -> None:
    """Providers this org has credentials for (who they are, never the secrets)."""
    if available:
        _list_kinds(json_output)
        return
    with connect() as client:
        configs = client.providers()
    if json_output:
        print_json(configs)
        return
    print_table(
        ["provider", "identity", "added by", "age"],
        [[c.provider, c.identity, c.added_by, age(c.created_at)] for c in configs],
    )


def _list_kinds(json_output: bool) -> None:
    with connect() as client:
        kinds = client.provider_kinds()
    if json_output:
        print_json(kinds)
        return
    print_table(
        ["provider", "name", "installed", "options"],
        [
            [
                k.name,
                k.display_name,
                "yes" if k.installed else f"no: pip install 'brev[{k.extra}]'",
                " ".join(o.option + ("" if o.required else "?") for o in k.config_keys),
            ]
            for k in kinds
        ],
    )


@group.command("rm")
def remove(
    provider: Annotated[str, typer.Argument(help="aws, gcp, ...")],
    json_output: JsonOutput = False,
) -> None:
    """Remove a provider's credentials (refused while instances run there)."""
    with connect() as client:
        client.remove_provider(provider)
    if json_output:
        print_json({"org": client.org, "removed": provider})
        return
    note(f"Removed {provider} credentials from org '{client.org}'.")


def register(app: typer.Typer) -> None:
    app.add_typer(group, name="provider", rich_help_panel=panels.ORGANIZATION)
