"""`brev search`: GPU offers of the catalog, filtered and sorted by the control plane."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from brev.cli import panels
from brev.cli.login_state import connect
from brev.cli.offers_table import print_offers
from brev.cli.options import JsonOutput
from brev.cli.output import print_json


class Sort(StrEnum):
    """The values of brev.api.OfferSort, repeated here so the CLI need not import pydantic."""

    PRICE = "price"
    VRAM = "vram"
    GPUS = "gpus"


def _positive(value: float | None) -> float | None:
    if value is not None and value <= 0:
        raise typer.BadParameter("must be greater than 0")
    return value


def search(
    gpu_spec: Annotated[
        str | None,
        typer.Argument(
            metavar="[GPU_SPEC]",
            help="a100, A100:8, a100-80gb, h100:8, l4, any, any:8 or cpu; default: any GPU",
            show_default=False,
        ),
    ] = None,
    provider: Annotated[
        str | None, typer.Option(help="only these providers, comma-separated: aws,gcp,lambda")
    ] = None,
    region: Annotated[str | None, typer.Option(help="only this region, e.g. us-east-1")] = None,
    max_price: Annotated[
        float | None,
        typer.Option(callback=_positive, help="at most this many USD per hour (spot with --spot)"),
    ] = None,
    min_vram: Annotated[
        float | None, typer.Option(min=0, help="at least this many GiB of memory per GPU")
    ] = None,
    spot: Annotated[
        bool, typer.Option("--spot", help="only offers with a spot price, priced by it")
    ] = False,
    sort: Annotated[Sort, typer.Option(help="cheapest first, most GPU memory or most GPUs")] = (
        Sort.PRICE
    ),
    json_output: JsonOutput = False,
) -> None:
    """Find instance types to run on: GPU, memory, CPUs, region and price per hour."""
    providers = [name.strip() for name in provider.split(",")] if provider else None
    with connect() as client:
        offers = client.offers(
            gpu_spec,
            providers=providers,
            region=region,
            max_price=max_price,
            min_vram=min_vram,
            spot=spot,
            sort=sort.value,
        )
    if json_output:
        print_json(offers)
        return
    print_offers([offer.model_dump(mode="json") for offer in offers])


def register(app: typer.Typer) -> None:
    app.command(rich_help_panel=panels.INSTANCES)(search)
