"""The offer catalog: GPU specs, suggestions, filters and sorts, the shipped data, its build."""

from __future__ import annotations

import csv
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from brev.catalog import (
    ANY_GPU,
    CPU_ONLY,
    Catalog,
    CatalogOffer,
    GpuSpecError,
    ImpossibleCount,
    OfferQuery,
    UnknownGpu,
    UnknownProvider,
    check_providers,
    find_offers,
    load_catalog,
    parse_gpu_spec,
)
from brev.catalog.offers import COLUMNS, DATA_DIR

REPOSITORY = Path(__file__).resolve().parents[1]
BUILD_SCRIPT = REPOSITORY / "scripts" / "build_catalog.py"
SHARED_CATALOG = REPOSITORY.parent / "shared" / "catalog"


def offer(
    instance_type: str,
    gpu_model: str | None = "A100",
    gpu_count: float = 1,
    *,
    provider: str = "aws",
    region: str = "us-east-1",
    vram: float | None = 40,
    price: float | None = 1.0,
    spot: float | None = None,
) -> CatalogOffer:
    return CatalogOffer(
        provider=provider,
        instance_type=instance_type,
        gpu_model=gpu_model,
        gpu_count=gpu_count,
        gpu_memory_gib=vram,
        vcpus=8,
        memory_gib=64,
        region=region,
        zones=(),
        price_per_hour=price,
        spot_price_per_hour=spot,
    )


def types(offers: Iterable[CatalogOffer]) -> list[str]:
    return [o.instance_type for o in offers]


# -- GPU specs ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "models", "count"),
    [
        ("a100", {"A100", "A100-80GB"}, None),
        ("A100:8", {"A100", "A100-80GB"}, 8),
        ("h100:8", {"H100"}, 8),
        ("a100-80gb", {"A100-80GB"}, None),
        ("A100-80GB:8", {"A100-80GB"}, 8),
        ("l4", {"L4"}, None),  # the L4 family is not L40S
        ("a10", {"A10"}, None),  # nor is A10G an A10
        ("t4", {"T4"}, None),
        ("radeon", {"RADEON-PRO-V520"}, None),
        ("  H100 : 2 ", {"H100"}, 2),
    ],
)
def test_gpu_specs_name_a_family_or_one_model(
    text: str, models: set[str], count: int | None
) -> None:
    spec = parse_gpu_spec(text)
    assert spec.models == frozenset(models)
    assert spec.count == count
    assert not spec.cpu_only


@pytest.mark.parametrize("text", [None, "", "  ", "any", "ANY", "Any"])
def test_no_spec_and_any_mean_any_gpu(text: str | None) -> None:
    assert parse_gpu_spec(text) == ANY_GPU
    assert ANY_GPU.matches("H100", 8) and not ANY_GPU.matches(None, 0)


def test_any_takes_a_count_and_cpu_means_no_gpu() -> None:
    assert parse_gpu_spec("any:8").count == 8
    assert parse_gpu_spec("any:8").models is None
    assert parse_gpu_spec("CPU") == CPU_ONLY
    assert CPU_ONLY.matches(None, 0) and not CPU_ONLY.matches("T4", 1)


def test_specs_print_canonically() -> None:
    assert str(parse_gpu_spec("a100-80gb:8")) == "A100-80GB:8"
    assert str(parse_gpu_spec("h100")) == "H100"
    assert str(parse_gpu_spec("any:2")) == "any:2"
    assert str(parse_gpu_spec("cpu")) == "cpu"


@pytest.mark.parametrize("count", ["0", "-1", "x", "1.5", "", "8x", "٣"])
def test_counts_are_positive_whole_numbers(count: str) -> None:
    with pytest.raises(GpuSpecError, match="use a positive whole number, as in a100:8"):
        parse_gpu_spec(f"a100:{count}")


@pytest.mark.parametrize(("text", "problem"), [(":8", "no GPU name"), ("cpu:2", "no count")])
def test_other_malformed_specs_say_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(GpuSpecError, match=problem):
        parse_gpu_spec(text)


def test_an_unknown_gpu_suggests_close_names() -> None:
    with pytest.raises(UnknownGpu) as raised:
        parse_gpu_spec("a10O")
    # O is folded onto 0 when comparing, so the A100 the person most likely meant comes first.
    assert str(raised.value) == "unknown GPU 'a10O'; did you mean A100, A10 or A10G?"
    assert isinstance(raised.value, ValueError)
    # The count is not part of the name the message quotes.
    with pytest.raises(UnknownGpu, match=r"^unknown GPU 'h10'; did you mean H100\b"):
        parse_gpu_spec("h10:8")
    with pytest.raises(UnknownGpu, match=r"^unknown GPU 'v1OO'; did you mean V100\b"):
        parse_gpu_spec("v1OO:8")


def test_an_unknown_gpu_with_nothing_close_lists_known_ones() -> None:
    with pytest.raises(UnknownGpu) as raised:
        parse_gpu_spec("quantum")
    message = str(raised.value)
    assert message.startswith("unknown GPU 'quantum'; known GPUs: A10, A100, ")
    assert message.endswith(" more")
    assert raised.value.suggestions == []


def test_a_count_no_offer_has_is_impossible() -> None:
    with pytest.raises(ImpossibleCount) as raised:
        parse_gpu_spec("h100:3")
    assert str(raised.value) == "no offer has 3 \u00d7 H100; available: 1, 2, 4, 8"
    with pytest.raises(ImpossibleCount, match=r"^no offer has 3 \u00d7 A100-80GB; available: "):
        parse_gpu_spec("a100-80gb:3")
    with pytest.raises(ImpossibleCount, match=r"^no offer has 32 GPUs; available: 1, 2, 4, 8, 16$"):
        parse_gpu_spec("any:32")


def test_specs_are_checked_against_the_catalog_given() -> None:
    tiny = Catalog.of([offer("x1", "MI300X", 8)])
    assert parse_gpu_spec("mi300x:8", tiny).models == frozenset({"MI300X"})
    with pytest.raises(UnknownGpu, match=r"^unknown GPU 'b200'; known GPUs: MI300X$"):
        parse_gpu_spec("b200", tiny)
    with pytest.raises(ImpossibleCount, match=r"available: 8$"):
        parse_gpu_spec("mi300x:1", tiny)


# -- filters and sorts over a small catalog -------------------------------------------------

SMALL = Catalog.of(
    [
        offer("a-cheap", "A100", 1, price=1.0, spot=0.9),
        offer("a-80", "A100-80GB", 8, provider="gcp", region="us-central1", vram=80, price=9.0),
        offer("h-spot-only", "H100", 8, vram=80, price=None, spot=20.0),
        offer("h-big", "H100", 8, provider="lambda", region="us-west-1", vram=80, price=24.0),
        offer("l4", "L4", 1, provider="gcp", region="us-central1", vram=22.35, price=0.7, spot=0.2),
        offer("t4-no-vram", "T4", 4, vram=None, price=3.0, spot=1.5),
    ]
)


def search(**filters: Any) -> list[str]:
    return types(find_offers(OfferQuery(**filters), SMALL))


def test_no_filter_finds_everything_cheapest_first_unpriced_last() -> None:
    assert search() == ["l4", "a-cheap", "t4-no-vram", "a-80", "h-big", "h-spot-only"]


def test_gpu_spec_filters_models_and_counts() -> None:
    assert search(gpu=parse_gpu_spec("a100", SMALL)) == ["a-cheap", "a-80"]
    assert search(gpu=parse_gpu_spec("a100:8", SMALL)) == ["a-80"]
    assert search(gpu=parse_gpu_spec("any:8", SMALL)) == ["a-80", "h-big", "h-spot-only"]


def test_cpu_finds_nothing_in_a_catalog_of_gpu_types() -> None:
    assert search(gpu=CPU_ONLY) == []
    assert find_offers(OfferQuery(gpu=parse_gpu_spec("cpu"))) == []


def test_provider_and_region_filters_are_exact() -> None:
    assert search(providers=frozenset({"gcp"})) == ["l4", "a-80"]
    assert search(providers=frozenset({"gcp", "lambda"})) == ["l4", "a-80", "h-big"]
    assert search(region="us-central1") == ["l4", "a-80"]
    assert search(region="us-central") == []


def test_max_price_uses_the_on_demand_price_or_the_spot_one() -> None:
    assert search(max_price=1.0) == ["l4", "a-cheap"]
    assert search(max_price=1.0, spot=True) == ["l4", "a-cheap"]
    assert search(max_price=1.5, spot=True) == ["l4", "a-cheap", "t4-no-vram"]
    assert "h-spot-only" not in search(max_price=100.0)  # no on-demand price: never "cheap"


def test_spot_keeps_offers_with_a_spot_price_sorted_by_it() -> None:
    assert search(spot=True) == ["l4", "a-cheap", "t4-no-vram", "h-spot-only"]


def test_min_vram_is_per_gpu_and_skips_unknown_memory() -> None:
    assert search(min_vram_gib=80) == ["a-80", "h-big", "h-spot-only"]
    assert search(min_vram_gib=0) == ["l4", "a-cheap", "a-80", "h-big", "h-spot-only"]


def test_sort_by_vram_and_gpus_breaks_ties_by_price() -> None:
    assert search(sort="vram") == ["a-80", "h-big", "h-spot-only", "a-cheap", "l4", "t4-no-vram"]
    assert search(sort="gpus") == ["a-80", "h-big", "h-spot-only", "t4-no-vram", "l4", "a-cheap"]


def test_equal_prices_sort_by_provider_type_and_region() -> None:
    tied = Catalog.of(
        [
            offer("b", region="us-west-2"),
            offer("b", region="us-east-1"),
            offer("a", provider="gcp"),
            offer("a"),
        ]
    )
    found = find_offers(OfferQuery(), tied)
    assert [(o.provider, o.instance_type, o.region) for o in found] == [
        ("aws", "a", "us-east-1"),
        ("aws", "b", "us-east-1"),
        ("aws", "b", "us-west-2"),
        ("gcp", "a", "us-east-1"),
    ]


def test_an_unknown_sort_is_refused() -> None:
    with pytest.raises(ValueError, match="use one of price, vram, gpus"):
        find_offers(OfferQuery(sort="cheapest"), SMALL)


def test_providers_are_checked_and_lower_cased() -> None:
    assert check_providers(["AWS", " gcp", ""]) == {"aws", "gcp"}
    with pytest.raises(UnknownProvider) as raised:
        check_providers(["aws", "azure"])
    assert str(raised.value) == "unknown provider 'azure'; known: aws, gcp, lambda"


# -- the shipped catalog ------------------------------------------------------------------


def test_every_shipped_offer_is_usable() -> None:
    catalog = load_catalog()
    assert catalog.providers == {"aws", "gcp", "lambda"}
    for item in catalog.offers:
        assert item.gpu_count > 0 and item.gpu_model, item
        assert item.region and item.instance_type, item
        assert item.price_per_hour is not None or item.spot_price_per_hour is not None, item
        assert item.gpu_memory_gib is None or item.gpu_memory_gib > 0, item
    # Zones are collapsed: one row per (provider, type, GPU, region).
    keys = [(o.provider, o.instance_type, o.gpu_model, o.region) for o in catalog.offers]
    assert len(keys) == len(set(keys))
    assert all(o.zones for o in catalog.offers if o.provider != "lambda")


def test_every_csv_row_is_loaded_once() -> None:
    rows = 0
    for path in DATA_DIR.glob("*.csv"):
        with path.open(newline="") as source:
            reader = csv.reader(source)
            assert next(reader) == COLUMNS
            rows += sum(1 for _ in reader)
    assert rows > 1000
    assert len(load_catalog().offers) == rows
    assert load_catalog() is load_catalog()


def test_the_whole_catalog_is_one_query_away() -> None:
    assert len(find_offers(OfferQuery())) == len(load_catalog().offers)
    found = find_offers(OfferQuery(gpu=parse_gpu_spec("a100-80gb:8"), sort="price"))
    assert found and all(o.gpu_model == "A100-80GB" and o.gpu_count == 8 for o in found)
    assert {o.provider for o in found} == {"aws", "gcp", "lambda"}


def test_the_data_keeps_its_provenance() -> None:
    notes = (DATA_DIR / "SOURCE.md").read_text()
    for fact in [
        "2c3d7ea7d76bf84cf80d382e946c1609571485fd",  # the AWS snapshot
        "62ff0a987e0c257a89235415d2877812fb1aaf29",  # the GCP and Lambda snapshot
        "scripts/build_catalog.py",
        "Known oddities",
        "<!-- build_catalog.py: end -->",
    ]:
        assert fact in notes


def test_the_catalog_loads_on_first_use_and_the_cli_never_imports_it() -> None:
    probe = (
        "import sys, brev.cli.main; cli_imported_it = 'brev.catalog' in sys.modules; "
        "import brev.catalog; "
        "print(cli_imported_it, brev.catalog.load_catalog.cache_info().currsize)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "0"]


# -- scripts/build_catalog.py -------------------------------------------------------------

SOURCE_HEADER = (
    "provider,instance_type,gpu,gpu_count,gpu_memory_gib,vcpus,memory_gib,"
    "price_hour,spot_price_hour,region,zone\n"
)


def build(source: Path, out: Path) -> str:
    done = subprocess.run(
        [sys.executable, str(BUILD_SCRIPT), str(source), "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_build_collapses_zones_and_drops_what_cannot_be_priced(tmp_path: Path) -> None:
    source, out = tmp_path / "source", tmp_path / "out"
    source.mkdir()
    (source / "aws.csv").write_text(
        SOURCE_HEADER
        + "aws,g5.xlarge,A10G,1,22.35,4,16,1.006,0.5,us-east-1,use1-az2\n"
        + "aws,g5.xlarge,A10G,1,22.35,4,16,1.006,0.4,us-east-1,use1-az1\n"
        + "aws,g5.xlarge,A10G,1,22.35,4,16,1.1,,us-east-1,use1-az3\n"
        + "aws,p5e.48xlarge,H200,8,141,192,2048,,,eu-west-2,euw2-az1\n"
    )
    (source / "gcp.csv").write_text(
        SOURCE_HEADER
        + "gcp,,T4,1,16,,,0.35,0.14,us-central1,us-central1-a\n"
        + "gcp,g2-standard-4,L4,1,24,4,16,0.7,,us-central1,us-central1-a\n"
    )
    (source / "lambda.csv").write_text(
        SOURCE_HEADER + "lambda,gpu_1x_a10,A10,1,24,30,200,1.29,,us-east-1,\n"
    )
    (source / "azure.csv").write_text(SOURCE_HEADER + "azure,NC,V100,1,,6,112,3,1,eastus,\n")
    out.mkdir()
    (out / "SOURCE.md").write_text("# Provenance\n\nhand-written\n")

    report = build(source, out)

    assert "gcp: 2 zone rows -> 1 offers (1 without instance type dropped" in report
    built_files = sorted(path.name for path in out.iterdir())
    assert built_files == ["SOURCE.md", "aws.csv", "gcp.csv", "lambda.csv"]  # no azure.csv
    with (out / "aws.csv").open(newline="") as built:
        rows = list(csv.DictReader(built))
    assert rows == [
        {
            **dict.fromkeys(COLUMNS, ""),
            "provider": "aws",
            "instance_type": "g5.xlarge",
            "gpu": "A10G",
            "gpu_count": "1",
            "gpu_memory_gib": "22.35",
            "vcpus": "4",
            "memory_gib": "16",
            "price_hour": "1.1",  # zones disagree: the highest, never a promise too low
            "spot_price_hour": "0.4",  # the cheapest zone
            "region": "us-east-1",
            "zones": "use1-az1 use1-az2 use1-az3",
        }
    ]
    notes = (out / "SOURCE.md").read_text()
    assert notes.startswith("# Provenance\n\nhand-written\n")
    assert "p5e.48xlarge eu-west-2" in notes and "g5.xlarge us-east-1" in notes

    build(source, out)  # a rebuild replaces its section instead of adding another
    assert (out / "SOURCE.md").read_text() == notes


@pytest.mark.skipif(not SHARED_CATALOG.is_dir(), reason="no ../shared/catalog beside the repo")
def test_the_shipped_data_is_what_the_build_makes(tmp_path: Path) -> None:
    build(SHARED_CATALOG, tmp_path)
    for name in ("aws.csv", "gcp.csv", "lambda.csv"):
        assert (tmp_path / name).read_text() == (DATA_DIR / name).read_text(), name
