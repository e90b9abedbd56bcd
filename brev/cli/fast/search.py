"""`brev search` without typer, httpx and pydantic: the command line read by hand, the offers
asked on the standard library (brev.cli.fast.plane), the table (brev.cli.offers_table) or JSON
that `brev search` prints for them. Only the flags of `brev search --help`, each at most once,
with a value click would take as it is; anything else goes to the full CLI.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from brev.cli.fast.plane import get_org_json, prints_alike, write_json

# brev.api.Offer's fields in its order: an answer with others (a plane of another release)
# goes to the full CLI, whose models decide what it prints.
OFFER_FIELDS = (
    "provider",
    "instance_type",
    "gpu_model",
    "gpu_count",
    "gpu_memory_gib",
    "vcpus",
    "memory_gib",
    "region",
    "zones",
    "price_per_hour",
    "spot_price_per_hour",
    "node",
    "capacity_now",
)
SORTS = ("price", "vram", "gpus")
_VALUE_OPTIONS = ("--provider", "--region", "--max-price", "--min-vram", "--sort")


def parse(args: Sequence[str]) -> tuple[dict[str, str], bool] | None:
    """The query BrevClient.offers sends for `brev search ARGS`, and whether --json was given;
    None for a command line the full CLI should read."""
    given: dict[str, str] = {}
    gpu: str | None = None
    flags: set[str] = set()
    words = iter(args)
    for word in words:
        name, equals, value = word.partition("=")
        if name in _VALUE_OPTIONS:
            if not equals:
                value = next(words, "")
            if name in given or not value or value.startswith("-"):
                return None
            given[name] = value
        elif word in ("--json", "--spot") and word not in flags:
            flags.add(word)
        elif gpu is None and word and not word.startswith("-"):
            gpu = word
        else:
            return None
    sort = given.get("--sort", "price")
    if sort not in SORTS:
        return None
    query = {"spot": "true" if "--spot" in flags else "false", "sort": sort}
    if gpu is not None:
        query["gpu"] = gpu
    if "--region" in given:
        query["region"] = given["--region"]
    for option, key, lowest_ok in (
        ("--max-price", "max_price", False),
        ("--min-vram", "min_vram", True),
    ):
        if option in given:
            number = _number_option(given[option], lowest_ok)
            if number is None:
                return None
            query[key] = number
    if "--provider" in given:
        query["provider"] = ",".join(name.strip() for name in given["--provider"].split(","))
    return query, "--json" in flags


def _number_option(text: str, zero_ok: bool) -> str | None:
    """A float option as httpx sends it; None where click or the option's check would refuse
    it (not a number, not above zero, or below zero where zero is allowed)."""
    try:
        number = float(text)
    except ValueError:
        return None
    if not math.isfinite(number) or number < 0 or (number == 0 and not zero_ok):
        return None
    return str(number)


def fast_search(args: Sequence[str]) -> bool:
    """Print the offers for `brev search ARGS`; False when the full CLI should."""
    parsed = parse(args)
    if parsed is None:
        return False
    query, json_output = parsed
    answer = get_org_json("/offers", query)
    if answer is None:
        return False
    offers = answer[1]
    if not isinstance(offers, list) or not all(
        isinstance(offer, dict) and tuple(offer) == OFFER_FIELDS for offer in offers
    ):
        return False
    if json_output:
        if not prints_alike(offers):
            return False
        write_json(offers)
        return True
    from brev.cli.offers_table import print_offers

    print_offers(offers)
    return True
