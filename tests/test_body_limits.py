"""A request cannot stall the plane by its size (issue 13, item 1): a body over the limit is a
413 answered before anything parses it, a list of wrong items gets a short error body (the
first errors and a count), and agents' report batches have a larger limit of their own."""

from __future__ import annotations

import time
from collections.abc import Iterator

from brev.client import BrevClient
from tests.conftest import Plane
from tests.seed import add_instances, agent_token

PLAN = "/api/v1/orgs/default/instances/plan"


def test_the_issue_s_ten_megabyte_body_is_a_413_at_once(plane: Plane, admin: BrevClient) -> None:
    body = '{"gpu":"a100:8","providers":[' + ",".join(["1"] * 5_242_880) + "]}"
    http = plane.http(plane.admin_token)
    begun = time.monotonic()
    answer = http.post(PLAN, content=body, headers={"Content-Type": "application/json"})
    assert time.monotonic() - begun < 2
    assert answer.status_code == 413
    error = answer.json()["error"]
    assert error["code"] == "body_too_large" and "1,048,576 bytes" in error["message"]
    assert http.get("/healthz").status_code == 200


def test_a_streamed_body_without_a_length_is_cut_off_at_the_limit(plane: Plane) -> None:
    sent = {"bytes": 0}

    def chunks() -> Iterator[bytes]:
        yield b'{"gpu": "a100:8", "name": "'
        for _ in range(4096):  # 4 MiB of name, in chunks of 1 KiB
            sent["bytes"] += 1024
            yield b"x" * 1024
        yield b'"}'

    answer = plane.http(plane.admin_token).post(
        PLAN, content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "body_too_large"


def test_a_list_of_wrong_items_gets_a_short_error(plane: Plane) -> None:
    body = '{"gpu":"a100:8","providers":[' + ",".join(["1"] * 200_000) + "]}"
    assert len(body) < 1024 * 1024
    answer = plane.http(plane.admin_token).post(
        PLAN, content=body, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 422
    assert len(answer.content) < 10_000, len(answer.content)
    fields = answer.json()["error"]["fields"]
    assert 1 <= len(fields) <= 20


def test_many_errors_are_counted_not_listed(plane: Plane) -> None:
    token = _agent_token(plane, "gpu-b")
    wrong = [{"seq": "first", "report": []} for _ in range(500)]  # two errors each
    answer = plane.http(token).post("/api/v1/agent/reports", json={"reports": wrong})
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert len(error["fields"]) == 20
    assert error["message"].endswith("; and 980 more errors"), error["message"][-80:]
    assert len(answer.content) < 10_000


def _agent_token(plane: Plane, name: str) -> str:
    add_instances(plane.settings.database_url, "default", "admin@localhost", [name])
    return agent_token(plane.http(plane.admin_token), name)


def test_an_agents_report_batch_may_be_larger(plane: Plane, admin: BrevClient) -> None:
    token = _agent_token(plane, "gpu-a")
    padding = "x" * 2048
    reports = [
        {
            "seq": n,
            "report": {
                "collected_at": "2026-12-03T00:00:00Z",
                "source": "nvidia-smi",
                "gpus": [],
                "note": padding,
            },
        }
        for n in range(1, 1001)
    ]
    answer = plane.http(token).post("/api/v1/agent/reports", json={"reports": reports})
    assert answer.status_code == 200, answer.text[:300]
    assert answer.json()["accepted"] == 1000
