"""`brev search`: the real console script against a real `brev server`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from brev import api
from tests.cli_runner import brev, ok, one_line_error
from tests.conftest import LiveServer
from tests.fake_lambda import FakeLambda, fake_lambda_fixture

pytestmark = pytest.mark.slow
__all__ = ["fake_lambda_fixture"]

HEADER = ["PROVIDER", "TYPE", "GPU", "VRAM", "VCPUS", "RAM", "REGION", "$/H", "SPOT $/H"]


@pytest.fixture
def env(live_server: LiveServer, tmp_path: Path) -> dict[str, str]:
    """Logged in through the environment as the server's admin, in the default org."""
    return live_server.env(
        BREV_HOME=str(tmp_path / "cli-home"),
        BREV_API_URL=live_server.url,
        BREV_TOKEN=live_server.admin_token,
        BREV_ORG="default",
    )


def columns(line: str) -> list[str]:
    """A piped table line split into its cells (cells are separated by two or more spaces)."""
    return re.split(r"\s{2,}", line.strip())


def test_json_is_a_list_of_offers(env: dict[str, str]) -> None:
    offers = json.loads(ok(brev("search", "a100", "--json", env=env)).stdout)
    assert isinstance(offers, list) and offers
    assert all(set(offer) == set(api.Offer.model_fields) for offer in offers)
    assert {offer["gpu_model"] for offer in offers} == {"A100", "A100-80GB"}
    prices = [offer["price_per_hour"] for offer in offers if offer["price_per_hour"] is not None]
    assert prices == sorted(prices)


def test_piped_table_has_one_row_per_offer(env: dict[str, str]) -> None:
    args = ["a100-80gb:8", "--provider", "lambda", "--region", "us-east-1"]
    lines = ok(brev("search", *args, env=env)).stdout.splitlines()
    offers = json.loads(ok(brev("search", *args, "--json", env=env)).stdout)
    assert columns(lines[0]) == HEADER
    assert len(lines) == len(offers) + 1 >= 2
    row = columns(lines[1])
    first = offers[0]
    assert row == [
        *("lambda", first["instance_type"], "A100-80GB x8", "80", "240", "1800", "us-east-1"),
        f"{first['price_per_hour']:.2f}",
        "-",  # Lambda has no spot market
    ]


def test_flags_filter_and_sort(env: dict[str, str]) -> None:
    args = ["h100", "--spot", "--max-price", "10", "--sort", "gpus", "--min-vram", "80", "--json"]
    offers = json.loads(ok(brev("search", *args, env=env)).stdout)
    assert offers
    spot_prices = [o["spot_price_per_hour"] for o in offers]
    assert None not in spot_prices and max(spot_prices) <= 10
    assert all(o["gpu_memory_gib"] >= 80 for o in offers)
    counts = [o["gpu_count"] for o in offers]
    assert counts == sorted(counts, reverse=True)


def test_nothing_found_is_not_an_error(env: dict[str, str]) -> None:
    result = brev("search", "h100:8", "--max-price", "0.01", env=env)
    assert ok(result).stdout == ""
    assert "No offers match" in result.stderr
    assert ok(brev("search", "cpu", "--json", env=env)).stdout.strip() == "[]"


def test_an_unknown_gpu_is_one_line_with_suggestions(env: dict[str, str]) -> None:
    line = one_line_error(brev("search", "a10O", env=env))
    assert (
        line == "error: invalid request: gpu: unknown GPU 'a10O'; did you mean A100, A10 or A10G?"
    )


def test_an_impossible_count_is_one_line(env: dict[str, str]) -> None:
    line = one_line_error(brev("search", "h100:3", env=env))
    assert line == "error: invalid request: gpu: no offer has 3 \u00d7 H100; available: 1, 2, 4, 8"


def test_an_unknown_provider_is_one_line(env: dict[str, str]) -> None:
    line = one_line_error(brev("search", "--provider", "aws,azure", env=env))
    assert line == (
        "error: invalid request: provider: unknown provider 'azure'; known: aws, gcp, lambda"
    )


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--max-price", "0"], "must be greater than 0"),
        (["--max-price", "-3"], "must be greater than 0"),
        (["--sort", "cheapest"], "'cheapest' is not one of 'price', 'vram', 'gpus'"),
        (["--min-vram", "-1"], "--min-vram"),
    ],
)
def test_bad_flags_are_usage_errors(env: dict[str, str], args: list[str], problem: str) -> None:
    result = brev("search", *args, env=env)
    assert result.returncode == 2, result.stderr
    assert problem in result.stderr
    assert "Traceback" not in result.stderr


def test_lambda_offers_say_where_lambda_has_capacity_now(
    env: dict[str, str], fake_lambda: FakeLambda
) -> None:
    """With Lambda configured, its offers carry its live capacity (from GET /instance-types)
    in --json and in a column; offers of clouds that cannot say stay null and "-"."""
    fake_lambda.set_capacity("gpu_1x_a10", ["us-east-1"])
    add = ["provider", "add", "lambda", "--api-key", fake_lambda.api_key]
    ok(brev(*add, "--endpoint-url", fake_lambda.url, env=env))
    try:
        offers = json.loads(ok(brev("search", "a10", "--json", env=env)).stdout)
        capacity = {(o["provider"], o["region"]): o["capacity_now"] for o in offers}
        assert capacity[("lambda", "us-east-1")] is True
        assert capacity[("lambda", "asia-south-1")] is False
        assert {capacity[k] for k in capacity if k[0] != "lambda"} <= {None}
        lines = ok(brev("search", "a10", "--provider", "lambda", env=env)).stdout.splitlines()
        assert columns(lines[0]) == [*HEADER, "NOW"]
        now = {columns(line)[6]: columns(line)[-1] for line in lines[1:]}
        assert now["us-east-1"] == "yes" and now["asia-south-1"] == "none"
        # Without Lambda's live word (no other provider says), the table has no such column.
        aws = ok(brev("search", "a10g", "--provider", "aws", env=env)).stdout.splitlines()
        assert columns(aws[0]) == HEADER
    finally:
        ok(brev("provider", "rm", "lambda", env=env))
