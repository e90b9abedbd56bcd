"""Admin-only routes: each says so in its decorator (`brev.server.deps.admin_only`), and a
member of the org is refused with 403 naming what needs the role, before anything is done."""

from __future__ import annotations

from typing import Any

from brev import api
from brev.client import BrevClient
from tests.conftest import Plane

ORG = f"{api.API_PREFIX}/orgs/default"
NODE_ADD = {
    "name": "gpu-1",
    "host": "127.0.0.1",
    "port": 9,  # nothing listens: a route that got past the check would fail otherwise
    "user": "root",
    "host_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
}
# (method, path, body, what the refusal names)
ADMIN_ONLY: list[tuple[str, str, dict[str, Any] | None, str]] = [
    ("POST", f"{ORG}/members", {"email": "dave@example.com"}, "adding members"),
    ("PUT", f"{ORG}/members/admin@localhost", {"role": "member"}, "changing roles"),
    ("DELETE", f"{ORG}/members/admin@localhost", None, "removing members"),
    ("POST", f"{ORG}/providers", {"provider": "aws", "config": {}}, "adding provider credentials"),
    ("DELETE", f"{ORG}/providers/aws", None, "removing provider credentials"),
    ("POST", f"{ORG}/nodes/host-key", {"host": "127.0.0.1", "port": 9}, "adding nodes"),
    ("POST", f"{ORG}/nodes", NODE_ADD, "adding nodes"),
    ("POST", f"{ORG}/nodes/register", {"name": "gpu-1", "facts": {}}, "registering nodes"),
    ("DELETE", f"{ORG}/nodes/gpu-1", None, "removing nodes"),
    ("POST", f"{ORG}/catalog/refresh", None, "refreshing the catalog"),
]


def test_a_member_is_refused_every_admin_only_route(plane: Plane, admin: BrevClient) -> None:
    added = admin.add_member("carol@example.com")
    assert added.login_token is not None
    carol = plane.http(added.login_token)
    events_before = len(admin.events())
    for method, path, body, action in ADMIN_ONLY:
        response = carol.request(method, path, json=body)
        assert response.status_code == 403, (method, path, response.text)
        error = api.ErrorBody.model_validate(response.json()).error
        assert (error.code, error.message) == (
            "forbidden",
            f"{action} needs the admin role in org 'default'",
        ), (method, path)
    assert {(m.email, m.role) for m in admin.members()} == {
        ("admin@localhost", api.Role.ADMIN),
        ("carol@example.com", api.Role.MEMBER),
    }
    assert admin.nodes() == [] and admin.providers() == []
    assert len(admin.events()) == events_before


def test_outside_the_org_it_is_not_found_not_forbidden(plane: Plane, admin: BrevClient) -> None:
    added = admin.add_member("carol@example.com")
    assert added.login_token is not None
    carol = plane.client(added.login_token, org="default")
    carol.create_org("carols")
    # The bootstrap admin is no member of carol's org: its admin-only routes do not exist for it.
    stranger = plane.http(plane.admin_token)
    response = stranger.post(f"{api.API_PREFIX}/orgs/carols/members", json={"email": "x@y.z"})
    assert response.status_code == 404, response.text
    assert api.ErrorBody.model_validate(response.json()).error.code == "not_found"
