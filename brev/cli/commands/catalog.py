"""brev catalog refresh: update the control plane's offer catalog from the providers' APIs.

The CLI never talks to a cloud: the plane refreshes with the current org's stored credentials
and keeps the result for every `brev search` and `brev create` after.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from brev.cli import panels
from brev.cli.login_state import connect
from brev.cli.options import JsonOutput
from brev.cli.output import note, print_json, print_table

if TYPE_CHECKING:
    from brev import api

group = typer.Typer(
    help="The offer catalog that search and create read.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@group.command("refresh")
def refresh(
    json_output: JsonOutput = False,
) -> None:
    """Update the catalog from the APIs of the providers this org has credentials for.

    Admins only. Zones, GPU shapes and AWS spot prices come from the APIs; on-demand prices
    stay those shipped with brev. A region that fails keeps its offers and is named on stderr.
    Exit 1 when a provider refreshed nothing; without credentials nothing changes (exit 0).
    """
    with connect() as client:
        results = client.refresh_catalog()
    if json_output:
        print_json(results)
    elif not results:
        note(
            f"No credentials to refresh with in org '{client.org}': run `brev provider add aws` "
            "(or gcp) first. The shipped catalog stays in use."
        )
    else:
        print_table(["provider", "rows", "regions", "skipped"], [_row(r) for r in results])
    if not json_output:
        for result in results:
            for skip in result.skipped:
                note(f"{result.provider} {skip.region}: skipped ({skip.reason})")
            if result.error:
                note(f"{result.provider}: not refreshed ({result.error})")
    if any(not r.regions for r in results):
        raise typer.Exit(1)


def _row(result: api.CatalogRefresh) -> list[str]:
    return [result.provider, str(result.rows), str(len(result.regions)), str(len(result.skipped))]


def register(app: typer.Typer) -> None:
    app.add_typer(group, name="catalog", rich_help_panel=panels.CONFIGURATION)
