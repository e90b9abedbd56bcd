"""Build the offer catalog that ships inside the package from the per-zone source CSVs.

    .venv/bin/python scripts/build_catalog.py [SOURCE_DIR] [--out DIR]

SOURCE_DIR (default: ../shared/catalog beside the repository) holds aws.csv, gcp.csv and
lambda.csv with one row per zone. The output (default: brev/catalog/data/) holds one CSV per
provider with one row per (instance type, GPU, region), the zones in a space-separated
`zones` column, and the "Build" section of SOURCE.md, which is rewritten on every run while
the hand-written provenance above it is kept.

Rules (SOURCE.md of the output repeats them):
- on-demand price: the same in every zone of a region in the source; should zones ever
  disagree, the highest one is kept, so a search never promises a price too low;
- spot price: the lowest over the region's zones; empty when no zone has one;
- GCP rows without an instance type are dropped: they price N1-attachable GPUs alone, without
  the host VM they need, so their price is not what an instance costs;
- a (type, region) with neither an on-demand nor a spot price in any zone is dropped;
- Azure is not built: the catalog covers AWS, GCP and Lambda.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from brev.catalog.offers import COLUMNS

REPOSITORY = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPOSITORY.parent / "shared" / "catalog"
DEFAULT_OUT = REPOSITORY / "brev" / "catalog" / "data"
PROVIDERS = ("aws", "gcp", "lambda")

SOURCE_COLUMNS = [
    "provider",
    "instance_type",
    "gpu",
    "gpu_count",
    "gpu_memory_gib",
    "vcpus",
    "memory_gib",
    "price_hour",
    "spot_price_hour",
    "region",
    "zone",
]
# What stays the same across the zones of one (type, GPU, region); checked, not assumed.
SHAPE_COLUMNS = ("gpu_count", "gpu_memory_gib", "vcpus", "memory_gib")
# The shipped files' columns are what the loader reads: one list, owned by the loader.
OUTPUT_COLUMNS = COLUMNS

BUILD_BEGIN = "<!-- build_catalog.py: begin (generated, do not edit by hand) -->"
BUILD_END = "<!-- build_catalog.py: end -->"

GroupKey = tuple[str, str, str, str]  # provider, instance_type, gpu, region


@dataclass
class ProviderReport:
    provider: str
    source_rows: int = 0
    output_rows: int = 0
    dropped_without_type: int = 0
    dropped_without_price: list[str] = field(default_factory=list)
    regions_with_differing_prices: list[str] = field(default_factory=list)


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as source:
        reader = csv.DictReader(source)
        if reader.fieldnames != SOURCE_COLUMNS:
            raise SystemExit(f"{path}: columns {reader.fieldnames}, expected {SOURCE_COLUMNS}")
        return list(reader)


def format_price(price: float | None) -> str:
    # repr keeps every digit the source had and no trailing zeros: 4.68 stays 4.68.
    return "" if price is None else repr(price)


def collapse(
    provider: str, rows: list[dict[str, str]]
) -> tuple[list[dict[str, str]], ProviderReport]:
    """One row per (type, GPU, region) out of one row per zone."""
    report = ProviderReport(provider, source_rows=len(rows))
    groups: dict[GroupKey, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        if row["provider"] != provider:
            raise SystemExit(f"{provider}.csv has a row of provider {row['provider']!r}")
        if not row["instance_type"]:
            report.dropped_without_type += 1
            continue
        key = (provider, row["instance_type"], row["gpu"], row["region"])
        groups[key].append(row)

    collapsed = []
    for key, zone_rows in sorted(groups.items()):
        _, instance_type, _, region = key
        shapes = {tuple(row[column] for column in SHAPE_COLUMNS) for row in zone_rows}
        if len(shapes) > 1:
            raise SystemExit(f"{provider} {instance_type} {region}: zones disagree on {shapes}")
        prices = {float(row["price_hour"]) for row in zone_rows if row["price_hour"]}
        spot_prices = [float(row["spot_price_hour"]) for row in zone_rows if row["spot_price_hour"]]
        if not prices and not spot_prices:
            report.dropped_without_price.append(f"{instance_type} {region}")
            continue
        if len(prices) > 1:
            report.regions_with_differing_prices.append(f"{instance_type} {region}")
        zones = sorted({row["zone"] for row in zone_rows if row["zone"]})
        output = {column: zone_rows[0][column] for column in OUTPUT_COLUMNS if column != "zones"}
        output["price_hour"] = format_price(max(prices) if prices else None)
        output["spot_price_hour"] = format_price(min(spot_prices) if spot_prices else None)
        output["zones"] = " ".join(zones)
        collapsed.append(output)
    report.output_rows = len(collapsed)
    return collapsed, report


def write_rows(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="") as output:
        writer = csv.DictWriter(output, fieldnames=OUTPUT_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def build_section(reports: list[ProviderReport]) -> str:
    lines = [
        BUILD_BEGIN,
        "## Build: what `scripts/build_catalog.py` did",
        "",
        "| file | source rows (zones) | shipped rows (regions) | dropped |",
        "| --- | ---: | ---: | --- |",
    ]
    for report in reports:
        dropped = []
        if report.dropped_without_type:
            dropped.append(f"{report.dropped_without_type} without instance type (GPU-only price)")
        if report.dropped_without_price:
            dropped.append(f"no price in any zone: {', '.join(report.dropped_without_price)}")
        lines.append(
            f"| {report.provider}.csv | {report.source_rows} | {report.output_rows} | "
            f"{'; '.join(dropped) or '-'} |"
        )
    differing = [entry for report in reports for entry in report.regions_with_differing_prices]
    lines += [
        "",
        "Regions whose zones disagree on the on-demand price (the highest was kept): "
        f"{', '.join(differing) or 'none'}.",
        BUILD_END,
    ]
    return "\n".join(lines) + "\n"


def write_source_notes(path: Path, section: str) -> None:
    """Replace the generated section of SOURCE.md; keep the hand-written provenance."""
    text = path.read_text() if path.exists() else "# Offer catalog: where the data comes from\n"
    if BUILD_BEGIN in text and BUILD_END in text:
        before, _, rest = text.partition(BUILD_BEGIN)
        _, _, after = rest.partition(BUILD_END)
        text = before + section.rstrip("\n") + after
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "source", nargs="?", type=Path, default=DEFAULT_SOURCE, help="folder of per-zone CSVs"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the catalog goes")
    args = parser.parse_args()
    source: Path = args.source
    out: Path = args.out
    missing = [name for name in PROVIDERS if not (source / f"{name}.csv").is_file()]
    if missing:
        sys.exit(f"{source}: no {', '.join(f'{name}.csv' for name in missing)}")

    out.mkdir(parents=True, exist_ok=True)
    reports = []
    for provider in PROVIDERS:
        rows, report = collapse(provider, read_rows(source / f"{provider}.csv"))
        write_rows(out / f"{provider}.csv", rows)
        reports.append(report)
        print(
            f"{provider}: {report.source_rows} zone rows -> {report.output_rows} offers "
            f"({report.dropped_without_type} without instance type dropped, "
            f"{len(report.dropped_without_price)} without any price dropped, "
            f"{len(report.regions_with_differing_prices)} regions with differing prices)"
        )
    write_source_notes(out / "SOURCE.md", build_section(reports))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
