"""Text with a NUL character is a 422 on both backends (found by tests/test_api_fuzz.py: a
member's name with one was a 500 on PostgreSQL, which refuses NUL in text; SQLite stored it)."""

from __future__ import annotations

from tests.conftest import Plane
from tests.seed import add_instances, agent_token


def _refused(answer_json: dict[str, object], field: str) -> None:
    assert answer_json["error"] == {
        "code": "validation_error",
        "message": f"{field}: text may not contain NUL (\\u0000) characters",
        "fields": [{"field": field, "reason": "text may not contain NUL (\\u0000) characters"}],
    }


def test_a_nul_in_a_body_a_path_or_a_query_is_a_422(plane: Plane) -> None:
    http = plane.http(plane.admin_token)
    member = http.post("/api/v1/orgs/default/members", json={"email": "a@b.c", "name": "a\x00b"})
    assert member.status_code == 422
    _refused(member.json(), "body")
    path = http.delete("/api/v1/orgs/default/members/a%00@b.c")
    assert path.status_code == 422
    _refused(path.json(), "path")
    query = http.get("/api/v1/orgs/default/events", params={"instance": "gpu\x00"})
    assert query.status_code == 422
    _refused(query.json(), "instance")
    assert [m.email for m in plane.client(plane.admin_token, "default").members()] == [
        "admin@localhost"
    ]


def test_a_nul_in_an_agents_report_is_a_422(plane: Plane) -> None:
    add_instances(plane.settings.database_url, "default", "admin@localhost", ["gpu-a"])
    agent = plane.http(agent_token(plane.http(plane.admin_token), "gpu-a"))
    report = {"collected_at": "2026-12-03T00:00:00Z", "note": "a\x00b"}
    answer = agent.post("/api/v1/agent/reports", json={"reports": [{"seq": 1, "report": report}]})
    assert answer.status_code == 422
    _refused(answer.json(), "body")


def test_an_escaped_backslash_before_u0000_is_not_a_nul(plane: Plane) -> None:
    http = plane.http(plane.admin_token)
    name = "back\\u0000slash"  # a backslash, then the letters u0000: JSON "back\\u0000slash"
    answer = http.post("/api/v1/orgs/default/members", json={"email": "a@b.c", "name": name})
    assert answer.status_code == 201, answer.text
    assert answer.json()["member"]["name"] == name
