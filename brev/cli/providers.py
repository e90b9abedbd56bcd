"""brev provider add | ls | rm: an org's cloud credentials.

The CLI reads the credentials where the cloud's own tools keep them and sends them to the
plane, which checks them with the provider and stores them encrypted. They are never printed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from brev.cli.login_state import connect
from brev.cli.output import age, note, print_json, print_table
from brev.errors import BrevError

app = typer.Typer(
    help="Cloud credentials of the current org.", no_args_is_help=True, rich_markup_mode=None
)
add_app = typer.Typer(
    help="Add (or replace) credentials for a provider.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(add_app, name="add")

EndpointOption = Annotated[
    str | None,
    typer.Option(help="an API endpoint other than the cloud's own (tests, mirrors)", hidden=True),
]


@add_app.command("aws")
def add_aws(
    profile: Annotated[str | None, typer.Option(help="profile in ~/.aws/credentials")] = None,
    endpoint_url: EndpointOption = None,
) -> None:
    """AWS access keys.

    From --profile, else AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, else the default profile.
    """
    config = _aws_keys(profile)
    if endpoint_url:
        config["endpoint_url"] = endpoint_url
    _add("aws", config)


@add_app.command("gcp")
def add_gcp(
    project: Annotated[str, typer.Option(help="GCP project id")],
    credentials_file: Annotated[
        Path | None,
        typer.Option(help="service-account JSON key; default: $GOOGLE_APPLICATION_CREDENTIALS"),
    ] = None,
    endpoint_url: EndpointOption = None,
) -> None:
    """GCP: a project and a service-account key."""
    import json

    config = {"project": project}
    path = credentials_file or (
        Path(os.environ["GOOGLE_APPLICATION_CREDENTIALS"])
        if os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
        else None
    )
    if path is not None:
        try:
            text = path.read_text()
            json.loads(text)
        except OSError as exc:
            raise BrevError(f"cannot read {path} ({exc.strerror})") from None
        except ValueError:
            raise BrevError(f"{path} is not a JSON service-account key") from None
        config["credentials_json"] = text
    elif not endpoint_url:
        raise BrevError(
            "no GCP credentials: pass --credentials-file KEY.json "
            "or set GOOGLE_APPLICATION_CREDENTIALS"
        )
    if endpoint_url:
        config["endpoint_url"] = endpoint_url
    _add("gcp", config)


def _add(provider: str, config: dict[str, str]) -> None:
    with connect() as client:
        added = client.add_provider(provider, config)
    note(f"Added {provider} credentials to org '{client.org}': {added.identity}.")


def _aws_keys(profile: str | None) -> dict[str, str]:
    if (
        profile is None
        and os.environ.get("AWS_ACCESS_KEY_ID")
        and os.environ.get("AWS_SECRET_ACCESS_KEY")
    ):
        keys = {
            "access_key_id": os.environ["AWS_ACCESS_KEY_ID"],
            "secret_access_key": os.environ["AWS_SECRET_ACCESS_KEY"],
        }
        if os.environ.get("AWS_SESSION_TOKEN"):
            keys["session_token"] = os.environ["AWS_SESSION_TOKEN"]
        return keys
    name = profile or os.environ.get("AWS_PROFILE") or "default"
    path = Path(os.environ.get("AWS_SHARED_CREDENTIALS_FILE", Path.home() / ".aws" / "credentials"))
    import configparser  # here: only `provider add aws` reads ~/.aws

    parser = configparser.ConfigParser()
    parser.read(path)
    if not parser.has_section(name):
        raise BrevError(
            f"no AWS credentials: profile '{name}' is not in {path}, and AWS_ACCESS_KEY_ID / "
            f"AWS_SECRET_ACCESS_KEY are not set"
        )
    section = parser[name]
    if not section.get("aws_access_key_id") or not section.get("aws_secret_access_key"):
        raise BrevError(
            f"profile '{name}' in {path} has no aws_access_key_id / aws_secret_access_key"
        )
    keys = {
        "access_key_id": section["aws_access_key_id"],
        "secret_access_key": section["aws_secret_access_key"],
    }
    if section.get("aws_session_token"):
        keys["session_token"] = section["aws_session_token"]
    return keys


@app.command("ls")
def list_providers(
    json_output: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Providers this org has credentials for (who they are, never the secrets)."""
    with connect() as client:
        configs = client.providers()
    if json_output:
        print_json(configs)
        return
    print_table(
        ["provider", "identity", "added by", "age"],
        [[c.provider, c.identity, c.added_by, age(c.created_at)] for c in configs],
    )


@app.command("rm")
def remove(provider: Annotated[str, typer.Argument(help="aws, gcp, ...")]) -> None:
    """Remove a provider's credentials (refused while instances run there)."""
    with connect() as client:
        client.remove_provider(provider)
    note(f"Removed {provider} credentials from org '{client.org}'.")
