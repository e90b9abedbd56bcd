"""Finite numbers only, and reports of a sane depth (issue 13, items 2 and 4): NaN or Infinity
in a report was a 500 on PostgreSQL (its JSON refuses them) and stored on SQLite; Infinity
was accepted as a node's price and as max_price; a report nested 256 deep was accepted and
then failed every read of the instance's page. Each is now a 422 naming the field, on both
databases, and nothing is stored."""

from __future__ import annotations

import pytest

from brev.client import BrevClient
from tests.conftest import Plane
from tests.seed import add_instances, agent_token


def _agent_token(plane: Plane, name: str) -> str:
    """The agent token of a new instance `name` (a seeded row: no machine behind it)."""
    add_instances(plane.settings.database_url, "default", "admin@localhost", [name])
    return agent_token(plane.http(plane.admin_token), name)


def _page_reads(plane: Plane, name: str) -> bool:
    answer = plane.http(plane.admin_token).get(f"/api/v1/orgs/default/instances/{name}")
    return bool(answer.status_code == 200)


def _report(**extra: object) -> dict[str, object]:
    return {"collected_at": "2026-12-03T00:00:00Z", "source": "nvidia-smi", "gpus": [], **extra}


def _post_raw(plane: Plane, token: str, text: str) -> tuple[int, dict[str, object]]:
    answer = plane.http(token).post(
        "/api/v1/agent/reports", content=text, headers={"Content-Type": "application/json"}
    )
    return answer.status_code, answer.json()


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity"])
def test_a_report_with_a_number_that_is_not_finite_is_a_422(
    plane: Plane, admin: BrevClient, number: str
) -> None:
    token = _agent_token(plane, "gpu-a")
    body = (
        '{"reports": [{"seq": 1, "report": {"collected_at": "2026-12-03T00:00:00Z", '
        f'"source": "nvidia-smi", "gpus": [{{"index": 0, "power_w": {number}}}]}}}}]}}'
    )
    status, answer = _post_raw(plane, token, body)
    assert status == 422, answer
    assert "finite" in str(answer["error"])
    assert admin.instance("gpu-a").telemetry in ({}, None)
    # The instance's page still reads.
    assert (
        plane.http(plane.admin_token).get("/api/v1/orgs/default/instances/gpu-a").status_code == 200
    )


def test_a_report_nested_too_deep_is_a_422_and_the_page_still_reads(
    plane: Plane, admin: BrevClient
) -> None:
    token = _agent_token(plane, "gpu-b")
    deep: object = 1
    for _ in range(256):
        deep = [deep]
    body = {"reports": [{"seq": 1, "report": _report(extra=deep)}]}
    answer = plane.http(token).post("/api/v1/agent/reports", json=body)
    assert answer.status_code == 422, answer.text
    assert "deeper than" in answer.text
    assert _page_reads(plane, "gpu-b")
    # A report of brev's own depth is fine.
    fine = {"reports": [{"seq": 1, "report": _report(gpus=[{"index": 0, "xid_errors": []}])}]}
    assert plane.http(token).post("/api/v1/agent/reports", json=fine).status_code == 200


@pytest.mark.parametrize("number", ["Infinity", "NaN"])
def test_max_price_must_be_finite(plane: Plane, number: str) -> None:
    answer = plane.http(plane.admin_token).post(
        "/api/v1/orgs/default/instances/plan",
        content=f'{{"gpu": "a100:8", "max_price": {number}}}',
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 422, answer.text
    assert [f["field"] for f in answer.json()["error"]["fields"]] == ["max_price"]
