"""The table of offers that `brev search` prints, from the offers' JSON: the full CLI passes its
models dumped (mode="json"), the fast path (brev.cli.fast.search) the plane's answer as it is,
so both print the same bytes. Imports nothing heavy."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from brev.cli.output import note, print_table

TYPE_CHECKING = False  # as in brev.cli.fast.plane: no typing at run time
if TYPE_CHECKING:
    from typing import Any

COLUMNS = ["provider", "type", "gpu", "vram", "vcpus", "ram", "region", "$/h", "spot $/h"]


def print_offers(offers: Sequence[Mapping[str, Any]]) -> None:
    if not offers:
        note("No offers match; drop a filter (--region, --max-price, --min-vram, --spot).")
        return
    # A provider that says where it has capacity now (Lambda) adds a column; "-": it cannot say.
    live = any(offer["capacity_now"] is not None for offer in offers)
    columns = [*COLUMNS, "now"] if live else COLUMNS
    print_table(columns, [_row(offer, live) for offer in offers])


def _row(offer: Mapping[str, Any], live: bool) -> list[str]:
    gpu = f"{offer['gpu_model']} x{offer['gpu_count']:g}" if offer["gpu_model"] else "cpu"
    now = {None: "-", True: "yes", False: "none"}[offer["capacity_now"]]
    return [
        offer["provider"],
        offer["instance_type"],
        gpu,
        _number(offer["gpu_memory_gib"]),
        _number(offer["vcpus"]),
        _number(offer["memory_gib"]),
        offer["region"],
        _price(offer["price_per_hour"]),
        _price(offer["spot_price_per_hour"]),
        *([now] if live else []),
    ]


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _price(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
