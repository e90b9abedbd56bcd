"""Org isolation: another org's objects answer 404, on every org-scoped route."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from brev import api
from brev.client import BrevClient, NotFound
from tests.conftest import Plane
from tests.seed import add_instances


@dataclass
class TwoOrgs:
    """Orgs `default` and `beta`. The admin is in both; bob only in `beta`."""

    admin: BrevClient
    bob: BrevClient
    bob_token: str
    scoped_to_beta: str  # a token of the admin that may act in `beta` only


@pytest.fixture
def two_orgs(plane: Plane, admin: BrevClient) -> TwoOrgs:
    admin.create_org("beta")
    added = admin.add_member("bob@example.com", org="beta")
    assert added.login_token is not None
    scoped = admin.create_token("beta-only", org="beta").secret
    admin.create_token("default-ci")
    add_instances(plane.settings.database_url, "default", "admin@localhost", ["gpu-a"])
    add_instances(plane.settings.database_url, "beta", "bob@example.com", ["gpu-b"])
    return TwoOrgs(
        admin=admin,
        bob=plane.client(added.login_token, org="beta"),
        bob_token=added.login_token,
        scoped_to_beta=scoped,
    )


def _org_routes(plane: Plane) -> list[tuple[str, str]]:
    """(method, path template) of every org-scoped route, from the OpenAPI document."""
    return [
        (method.upper(), path)
        for path, operations in plane.app.openapi()["paths"].items()
        if path.startswith(f"{api.API_PREFIX}/orgs/{{org}}")
        for method in operations
    ]


# A real name of default's object for each path parameter, so a 404 proves the object is
# hidden, not merely absent.
DEFAULT_ORG_OBJECTS = {
    "org": "default",
    "name": "gpu-a",
    "provider": "aws",
    "email": "admin@localhost",
}
TOKEN_ROUTE_OBJECTS = {"org": "default", "name": "default-ci"}


def _fill(path: str) -> str:
    values = TOKEN_ROUTE_OBJECTS if "/tokens/" in path else DEFAULT_ORG_OBJECTS
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)


@pytest.mark.parametrize("who", ["member of another org", "token scoped to another org"])
def test_every_org_route_hides_another_orgs_objects(
    plane: Plane, two_orgs: TwoOrgs, who: str
) -> None:
    token = two_orgs.bob_token if who == "member of another org" else two_orgs.scoped_to_beta
    http = plane.http(token)
    routes = _org_routes(plane)
    assert len(routes) >= 8, "the org routes were not all found"
    for method, path in routes:
        response = http.request(method, _fill(path), json={})
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["error"]["message"] == "org 'default' not found"
    # ... and the same routes work for the owner, so the 404s above are isolation, not bugs.
    owner = plane.http(plane.admin_token)
    assert owner.get(_fill(f"{api.API_PREFIX}/orgs/{{org}}/instances/{{name}}")).status_code == 200


def test_org_lists_show_only_the_callers_orgs(plane: Plane, two_orgs: TwoOrgs) -> None:
    assert [o.name for o in two_orgs.bob.orgs()] == ["beta"]
    assert [m.org for m in two_orgs.bob.whoami().memberships] == ["beta"]
    scoped = plane.client(two_orgs.scoped_to_beta)
    assert [o.name for o in scoped.orgs()] == ["beta"]
    assert scoped.whoami().token_org == "beta"
    assert {o.name for o in two_orgs.admin.orgs()} == {"default", "beta"}


def test_each_org_sees_only_its_instances(two_orgs: TwoOrgs) -> None:
    assert [i.name for i in two_orgs.admin.instances()] == ["gpu-a"]
    assert [i.name for i in two_orgs.bob.instances()] == ["gpu-b"]
    with pytest.raises(NotFound):
        two_orgs.bob.instance("gpu-a", org="default")
    with pytest.raises(NotFound, match="instance 'gpu-a' not found in org 'beta'"):
        two_orgs.bob.instance("gpu-a")


def test_tokens_and_events_do_not_cross_orgs(two_orgs: TwoOrgs) -> None:
    beta_tokens = {t.name for t in two_orgs.admin.tokens(org="beta")}
    assert "default-ci" not in beta_tokens and "beta-only" in beta_tokens
    assert all(e.object_name != "default-ci" for e in two_orgs.bob.events())
    with pytest.raises(NotFound):
        two_orgs.bob.revoke_token("default-ci", org="default")


def test_a_scoped_token_cannot_create_orgs(plane: Plane, two_orgs: TwoOrgs) -> None:
    response = plane.http(two_orgs.scoped_to_beta).post("/api/v1/orgs", json={"name": "gamma"})
    assert response.status_code == 403
    assert "limited to one org" in response.json()["error"]["message"]
