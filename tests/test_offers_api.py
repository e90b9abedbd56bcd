"""GET /api/v1/orgs/{org}/offers through the typed client and raw HTTP, on both backends."""

from __future__ import annotations

import math

import pytest

from brev import api
from brev.client import BrevClient, InvalidRequest, NotFound, Unauthenticated
from tests.conftest import Plane

OFFERS = "/api/v1/orgs/default/offers"


def price_or_last(price: float | None) -> float:
    return math.inf if price is None else price


def test_offers_for_a_gpu_family_cheapest_first(admin: BrevClient) -> None:
    offers = admin.offers("a100")
    assert offers and all(isinstance(o, api.Offer) for o in offers)
    assert {o.gpu_model for o in offers} == {"A100", "A100-80GB"}
    assert {o.provider for o in offers} == {"aws", "gcp", "lambda"}
    prices = [price_or_last(o.price_per_hour) for o in offers]
    assert prices == sorted(prices)


def test_no_spec_lists_the_whole_catalog(admin: BrevClient) -> None:
    everything = admin.offers()
    assert len(everything) > 1000
    assert all(o.gpu_count > 0 and o.region for o in everything)


def test_filters_reach_the_catalog(admin: BrevClient) -> None:
    eights = admin.offers("a100-80gb:8", providers=["gcp", "lambda"], max_price=40)
    assert eights
    for offer in eights:
        assert (offer.gpu_model, offer.gpu_count) == ("A100-80GB", 8)
        assert offer.provider in ("gcp", "lambda")
        assert offer.price_per_hour is not None and offer.price_per_hour <= 40

    in_region = admin.offers("h100", region="us-east-1")
    assert in_region and {o.region for o in in_region} == {"us-east-1"}

    big = admin.offers(min_vram=80, sort=api.OfferSort.VRAM)
    assert big and all(o.gpu_memory_gib is not None for o in big)
    memory = [o.gpu_memory_gib or 0.0 for o in big]
    assert min(memory) >= 80
    assert memory == sorted(memory, reverse=True)

    spot = admin.offers("l4", spot=True, max_price=0.5)
    assert spot and all(o.spot_price_per_hour is not None for o in spot)
    spot_prices = [o.spot_price_per_hour or 0.0 for o in spot]
    assert spot_prices == sorted(spot_prices) and max(spot_prices) <= 0.5

    most_gpus = admin.offers(sort="gpus")
    assert most_gpus[0].gpu_count == max(o.gpu_count for o in most_gpus)
    assert admin.offers("cpu") == []  # the catalog has GPU instance types only


def test_offers_carry_zones_and_both_prices(admin: BrevClient) -> None:
    offer = admin.offers("h100:8", providers=["aws"], region="us-east-1")[0]
    assert offer.instance_type == "p5.48xlarge"
    assert offer.zones and all(zone.startswith("use1-") for zone in offer.zones)
    assert offer.price_per_hour and offer.spot_price_per_hour


def test_an_unknown_gpu_is_a_422_naming_the_field(plane: Plane, admin: BrevClient) -> None:
    with pytest.raises(InvalidRequest) as raised:
        admin.offers("a10O")
    reason = "unknown GPU 'a10O'; did you mean A100, A10 or A10G?"
    assert raised.value.message == f"gpu: {reason}"
    assert [(f.field, f.reason) for f in raised.value.fields] == [("gpu", reason)]

    response = plane.http(plane.admin_token).get(OFFERS, params={"gpu": "a10O"})
    assert response.status_code == 422
    assert response.json() == {
        "error": {
            "code": "validation_error",
            "message": f"gpu: {reason}",
            "fields": [{"field": "gpu", "reason": reason}],
        }
    }


def test_a_gpu_count_nobody_sells_is_a_422(admin: BrevClient) -> None:
    with pytest.raises(InvalidRequest) as raised:
        admin.offers("h100:3")
    assert raised.value.message == "gpu: no offer has 3 \u00d7 H100; available: 1, 2, 4, 8"
    with pytest.raises(InvalidRequest, match="positive whole number"):
        admin.offers("h100:0")


def test_an_unknown_provider_is_a_422_listing_the_known_ones(admin: BrevClient) -> None:
    with pytest.raises(InvalidRequest) as raised:
        admin.offers(providers=["aws", "azure"])
    assert raised.value.message == "provider: unknown provider 'azure'; known: aws, gcp, lambda"
    assert [f.field for f in raised.value.fields] == ["provider"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"max_price": "0"}, "max_price"),
        ({"max_price": "cheap"}, "max_price"),
        ({"min_vram": "-1"}, "min_vram"),
        ({"sort": "cheapest"}, "sort"),
        ({"spot": "maybe"}, "spot"),
    ],
)
def test_bad_parameters_are_a_422_naming_them(
    plane: Plane, params: dict[str, str], field: str
) -> None:
    response = plane.http(plane.admin_token).get(OFFERS, params=params)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert [f["field"] for f in error["fields"]] == [field]


def test_offers_need_a_token_and_membership(plane: Plane, admin: BrevClient) -> None:
    with pytest.raises(Unauthenticated):
        plane.client(None, org="default").offers("a100")

    admin.create_org("beta")
    added = admin.add_member("bob@example.com", org="beta")
    assert added.login_token is not None
    bob = plane.client(added.login_token, org="beta")
    assert bob.offers("l4")  # in his own org
    with pytest.raises(NotFound, match="org 'default' not found"):
        bob.offers("l4", org="default")
    # A bad spec in an org the caller cannot see is still a 404: nothing is disclosed.
    with pytest.raises(NotFound):
        bob.offers("a10O", org="default")
