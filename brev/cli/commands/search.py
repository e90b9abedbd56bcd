"""`brev search`: GPU offers of the catalog, filtered and sorted by the control plane."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from brev.cli import panels
from brev.cli.login_state import connect
from brev.cli.options import JsonOutput
from brev.cli.output import note, print_json, print_table

if TYPE_CHECKING:
    from brev import api

COLUMNS = ["provider", "type", "gpu", "vram", "vcpus", "ram", "region", "$/h", "spot $/h"]


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
    if not offers:
        note("No offers match; drop a filter (--region, --max-price, --min-vram, --spot).")
        return
    # A provider that says where it has capacity now (Lambda) adds a column; "-": it cannot say.
    live = any(offer.capacity_now is not None for offer in offers)
    columns = [*COLUMNS, "now"] if live else COLUMNS
    print_table(columns, [_row(offer, live) for offer in offers])


def _row(offer: api.Offer, live: bool) -> list[str]:
    gpu = f"{offer.gpu_model} x{offer.gpu_count:g}" if offer.gpu_model else "cpu"
    now = {None: "-", True: "yes", False: "none"}[offer.capacity_now]
    return [
        offer.provider,
        offer.instance_type,
        gpu,
        _number(offer.gpu_memory_gib),
        _number(offer.vcpus),
        _number(offer.memory_gib),
        offer.region,
        _price(offer.price_per_hour),
        _price(offer.spot_price_per_hour),
        *([now] if live else []),
    ]


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _price(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def register(app: typer.Typer) -> None:
    app.command(rich_help_panel=panels.INSTANCES)(search)
