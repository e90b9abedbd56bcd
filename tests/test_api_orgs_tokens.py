"""Orgs, members and tokens through the API: the happy paths and the 409/422/403 ones."""

from __future__ import annotations

import pytest

from brev import api
from brev.client import BrevClient, Conflict, Forbidden, InvalidRequest, NotFound
from tests.conftest import Plane


def test_the_first_start_made_an_admin_in_a_default_org(admin: BrevClient) -> None:
    me = admin.whoami()
    assert me.user.email == "admin@localhost"
    assert [(m.org, m.role) for m in me.memberships] == [("default", api.Role.ADMIN)]
    assert me.default_org == "default" and me.token_org is None


def test_create_an_org_and_become_its_admin(admin: BrevClient) -> None:
    org = admin.create_org("research")
    assert org.role == api.Role.ADMIN
    assert [o.name for o in admin.orgs()] == ["default", "research"]
    with pytest.raises(Conflict, match="an org named 'research' already exists"):
        admin.create_org("research")
    assert [e.action for e in admin.events(org="research")] == ["org.create"]


@pytest.mark.parametrize("name", ["Research", "-x", "x-", "a" * 64, "", "a_b", "a b"])
def test_bad_names_get_422_naming_the_field(plane: Plane, name: str) -> None:
    response = plane.http(plane.admin_token).post("/api/v1/orgs", json={"name": name})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["fields"][0]["field"] == "name"
    assert "lowercase letters" in error["fields"][0]["reason"]
    assert error["message"].startswith("name: invalid name")


def test_a_missing_field_and_a_wrong_type_are_named(plane: Plane) -> None:
    http = plane.http(plane.admin_token)
    missing = http.post("/api/v1/orgs", json={}).json()["error"]
    assert missing["fields"] == [{"field": "name", "reason": "Field required"}]
    wrong = http.post(
        "/api/v1/orgs/default/tokens", json={"name": "ci", "expires_in_seconds": "soon"}
    ).json()["error"]
    assert wrong["fields"][0]["field"] == "expires_in_seconds"
    too_short = http.post(
        "/api/v1/orgs/default/tokens", json={"name": "ci", "expires_in_seconds": 0}
    ).json()["error"]
    assert "greater than 0" in too_short["fields"][0]["reason"]
    limit = http.get("/api/v1/orgs/default/events?limit=0").json()["error"]
    assert limit["fields"][0]["field"] == "limit"


def test_a_body_that_is_not_json_gets_400(plane: Plane) -> None:
    response = plane.http(plane.admin_token).post(
        "/api/v1/orgs", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "invalid_json",
        "message": "the request body is not JSON: "
        "Expecting property name enclosed in double quotes at character 1",
        "fields": [],
    }
    not_utf8 = plane.http(plane.admin_token).post(
        "/api/v1/orgs", content=b'{"name": "\xff"}', headers={"content-type": "application/json"}
    )
    assert not_utf8.status_code == 400
    assert not_utf8.json()["error"]["code"] == "invalid_json"


def test_unknown_routes_get_a_json_404(plane: Plane) -> None:
    response = plane.http(plane.admin_token).get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_tokens_are_listed_without_their_secret(admin: BrevClient) -> None:
    created = admin.create_token("ci", expires_in_seconds=30 * 86400)
    assert created.token.org == "default"
    assert created.token.expires_at is not None
    listed = {t.name: t for t in admin.tokens()}
    assert set(listed) == {"ci"}  # the admin token is user-wide, not the org's
    assert listed["ci"].prefix == created.secret[:12]
    assert created.secret not in listed["ci"].model_dump_json()
    with pytest.raises(Conflict, match="already have a token named 'ci'"):
        admin.create_token("ci")
    with pytest.raises(NotFound, match="no active token named 'nope'"):
        admin.revoke_token("nope")


def test_members_and_invitations(plane: Plane, admin: BrevClient) -> None:
    added = admin.add_member("Carol@Example.com", name="Carol")
    assert added.member.email == "carol@example.com"
    assert added.member.role == api.Role.MEMBER
    assert added.login_token is not None
    carol = plane.client(added.login_token, org="default")
    assert carol.whoami().user.email == "carol@example.com"
    assert {m.email for m in admin.members()} == {"admin@localhost", "carol@example.com"}
    with pytest.raises(Conflict, match="already a member"):
        admin.add_member("carol@example.com")
    # A member may not add members, but may make tokens of their own.
    with pytest.raises(Forbidden, match="needs the admin role"):
        carol.add_member("dave@example.com")
    carol.create_token("carol-ci")
    assert [t.name for t in carol.tokens() if t.org] == ["carol-ci"]
    # The admin sees every org token, including carol's; carol does not see the admin's.
    admin.create_token("admin-ci")
    assert {t.name for t in admin.tokens()} == {"carol-ci", "admin-ci"}
    assert "admin-ci" not in {t.name for t in carol.tokens()}
    with pytest.raises(InvalidRequest):
        admin.add_member("not-an-email")
    with pytest.raises(InvalidRequest, match="role"):
        admin.add_member("erin@example.com", role="owner")


def test_an_admin_can_revoke_a_members_token(plane: Plane, admin: BrevClient) -> None:
    added = admin.add_member("carol@example.com")
    assert added.login_token is not None
    carol = plane.client(added.login_token, org="default")
    secret = carol.create_token("carol-ci").secret
    assert admin.revoke_token("carol-ci").owner == "carol@example.com"
    with pytest.raises(Exception, match="revoked"):
        plane.client(secret, org="default").whoami()


def test_events_record_who_did_what(admin: BrevClient) -> None:
    admin.create_token("ci")
    admin.revoke_token("ci")
    admin.add_member("carol@example.com")
    events = admin.events()
    assert [e.action for e in events] == [
        "member.add",
        "token.revoke",
        "token.create",
        "plane.bootstrap",
    ]
    assert all(e.actor == "admin@localhost" for e in events[:3])
    assert events[-1].actor is None  # the plane itself
    assert events[1].details["prefix"] == events[2].details["prefix"]
