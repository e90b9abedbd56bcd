"""Run-scoped tokens (`brev token create --scope run`): offers, plans and creates within the
token's limits, and only the instances the token created; every other route is 403.

The plane is in-process, its clouds moto's EC2 server: creates that pass the limits make
real (moto) machines, and refused ones make none.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from brev import api
from brev.client import BrevClient, Conflict, Forbidden, InvalidRequest, NotFound
from brev.server.db.models import utcnow
from brev.server.services.run_tokens import ALLOWED_ROUTES
from tests.conftest import Plane
from tests.moto import MotoServer, live_machines
from tests.seed import add_instances

T4 = api.InstanceCreate(gpu="t4", providers=["aws"], region="us-east-1")


@pytest.fixture
def ci_secret(aws_org: BrevClient) -> str:
    """A run-scoped token of the admin, with every limit."""
    return _run_token(aws_org).secret


@pytest.fixture
def ci(plane: Plane, ci_secret: str) -> BrevClient:
    return plane.client(ci_secret, org="default")


def _run_token(admin: BrevClient) -> api.TokenCreated:
    """`ci`: run-scoped, $5/h, 4 GPUs and 2 h at most."""
    return admin.create_token(
        "ci", scope="run", max_price_per_hour=5.0, max_gpus=4, max_ttl_seconds=7200
    )


def _public_key() -> str:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    line = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return line.decode()


def test_scope_and_limits_are_stored_and_shown(aws_org: BrevClient) -> None:
    created = _run_token(aws_org).token
    assert created.scope == api.TokenScope.RUN
    assert (created.max_price_per_hour, created.max_gpus, created.max_ttl_seconds) == (5.0, 4, 7200)
    (listed,) = [t for t in aws_org.tokens() if t.name == "ci"]
    assert listed.scope == api.TokenScope.RUN and listed.max_gpus == 4
    plain = aws_org.create_token("plain").token
    assert plain.scope is None and plain.max_gpus is None
    with pytest.raises(InvalidRequest, match="run-scoped tokens only") as refused:
        aws_org.create_token("limited", max_gpus=2)
    assert [f.field for f in refused.value.fields] == ["max_gpus"]


def test_a_run_token_creates_within_its_limits_and_deletes_what_it_made(
    plane: Plane, ci: BrevClient, moto_server: MotoServer
) -> None:
    assert ci.offers("t4", providers=["aws"])
    assert ci.whoami().token_name == "ci"
    plan = ci.plan_instance(api.InstanceCreate(gpu="t4", providers=["aws"], region="us-east-1"))
    # g4dn.metal (8 GPUs, $7.82/h) and g4dn.16xlarge ($4.35/h, 1 GPU) are sold: the plan keeps
    # what is within 4 GPUs and $5/h only
    assert plan.placements
    assert all(p.gpu_count <= 4 and (p.price_per_hour or 0) <= 5 for p in plan.placements)
    before = utcnow()
    created = ci.create_instance(T4)
    # no TTL asked: the token's max; no lease asked: the plane's default (300 s)
    assert created.expires_at is not None and created.run_lease_until is not None
    assert before + timedelta(seconds=7200) <= created.expires_at
    assert created.expires_at <= utcnow() + timedelta(seconds=7200)
    assert before + timedelta(seconds=300) <= created.run_lease_until
    assert created.run_lease_until <= utcnow() + timedelta(seconds=300)
    assert all((p.price_per_hour or 0) <= 5 for p in created.plan)
    plane.settle()
    assert ci.instance(created.name).status == "running"
    assert len(live_machines(moto_server)) == 1
    ci.delete_instance(created.name)
    plane.settle()
    assert live_machines(moto_server) == []
    assert ci.instances() == []


# (what the create asks for, the limit that refuses it); `ci` allows $5/h, 4 GPUs, 2 h
OVER_LIMITS: list[tuple[dict[str, Any], str]] = [
    ({"gpu": "t4:8"}, "max_gpus"),  # 8 GPUs asked for
    ({"gpu": "a100"}, "max_gpus"),  # any count, but every A100 offer has 8
    ({"gpu": "a10g:4"}, "max_price_per_hour"),  # the cheapest is $5.67/h
    ({"gpu": "t4", "max_price": 10}, "max_price_per_hour"),  # more than the token allows
    ({"gpu": "t4", "ttl_seconds": 3 * 3600}, "max_ttl_seconds"),
]


@pytest.mark.parametrize(("asked", "limit"), OVER_LIMITS, ids=[a["gpu"] for a, _ in OVER_LIMITS])
def test_over_a_limit_is_403_naming_the_limit(
    plane: Plane,
    ci: BrevClient,
    ci_secret: str,
    moto_server: MotoServer,
    asked: dict[str, Any],
    limit: str,
) -> None:
    body = {"providers": ["aws"], "region": "us-east-1", **asked}
    http = plane.http(ci_secret)
    routes = ["/api/v1/orgs/default/instances"]
    if "ttl_seconds" not in asked:  # a plan has no TTL
        routes.append("/api/v1/orgs/default/instances/plan")
    for route in routes:
        response = http.post(route, json=body)
        assert response.status_code == 403, response.text
        error = response.json()["error"]
        assert error["code"] == "token_limit"
        assert limit in error["message"] and "'ci'" in error["message"]
        assert [f["field"] for f in error["fields"]] == [limit]
    with pytest.raises(Forbidden, match=limit):
        ci.create_instance(api.InstanceCreate.model_validate(body))
    plane.settle()
    assert ci.instances() == [] and live_machines(moto_server) == []


def test_a_run_token_sees_and_touches_only_its_own_instances(
    plane: Plane, aws_org: BrevClient, ci: BrevClient
) -> None:
    add_instances(plane.settings.database_url, "default", "admin@localhost", ["theirs"])
    _register_node(plane, "spark")
    mine = ci.create_instance(T4).name
    assert [i.name for i in ci.instances()] == [mine]
    assert {i.name for i in aws_org.instances()} == {mine, "theirs"}
    hidden = "instance 'theirs' not found in org 'default'"
    for act in (
        lambda: ci.instance("theirs"),
        lambda: ci.delete_instance("theirs"),
        lambda: ci.set_ttl("theirs", 60),
        lambda: ci.renew_lease("theirs"),
    ):
        with pytest.raises(NotFound, match=hidden):
            act()
    # the same name through the admin's own token: there, untouched
    assert aws_org.instance("theirs").desired_status == "running"
    # SSH: a certificate for its own instance only; no node, though its user is an org admin
    certificate = ci.ssh_certificate(_public_key())
    assert [(t.kind, t.name) for t in certificate.targets] == [("instance", mine)]
    admins = aws_org.ssh_certificate(_public_key())
    assert {(t.kind, t.name) for t in admins.targets} == {
        ("instance", mine),
        ("instance", "theirs"),
        ("node", "spark"),
    }


def test_every_other_route_is_403_naming_the_scope(plane: Plane, ci_secret: str) -> None:
    add_instances(plane.settings.database_url, "default", "admin@localhost", ["theirs"])
    http = plane.http(ci_secret)
    routes = [
        (method.upper(), path.removeprefix(api.API_PREFIX))
        for path, operations in plane.app.openapi()["paths"].items()
        if path.startswith(api.API_PREFIX) and not path.startswith(f"{api.API_PREFIX}/agent/")
        for method in operations
    ]
    forbidden = [r for r in routes if r not in ALLOWED_ROUTES]
    assert len(forbidden) >= 20, forbidden
    assert {"/orgs/{org}/tokens", "/orgs/{org}/providers", "/orgs/{org}/nodes"} <= {
        path for _, path in forbidden
    }
    values = {"org": "default", "name": "theirs", "provider": "aws", "email": "admin@localhost"}
    for method, path in forbidden:
        url = api.API_PREFIX + re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)
        if path.startswith("/web/sessions"):
            # The dashboard's session routes read a cookie, never the header. Signing in
            # takes the token in the body, and refuses a run token there, by its scope.
            if method == "POST":
                response = http.request(method, url, json={"token": ci_secret})
                assert response.status_code == 403, response.text
                assert "token 'ci' has scope 'run'" in response.json()["error"]["message"]
            else:  # no cookie: nobody is signed in, whatever the header says
                assert http.request(method, url).status_code in {401, 204}
            continue
        response = http.request(method, url, json={})
        assert response.status_code == 403, (method, path, response.text)
        message = response.json()["error"]["message"]
        assert "token 'ci' has scope 'run'" in message and f"{method} {path}" in message
    # ... and what it may do still answers (the 403s are the scope, not a broken token)
    assert http.get("/api/v1/orgs/default/offers?gpu=t4").status_code == 200


def test_a_run_token_shortens_a_ttl_but_never_lengthens_it_past_its_max(ci: BrevClient) -> None:
    name = ci.create_instance(T4).name
    assert ci.set_ttl(name, 3600).expires_at is not None
    for seconds in (3 * 3600, None):  # past 2 h after creation, and off
        with pytest.raises(Forbidden, match="max_ttl_seconds of 2h") as refused:
            ci.set_ttl(name, seconds)
        assert refused.value.code == "token_limit"


def test_lease_renewals_extend_it_and_write_no_event(ci: BrevClient, aws_org: BrevClient) -> None:
    name = ci.create_instance(T4).name
    first = ci.instance(name)
    assert first.run_lease_until is not None
    renewed = ci.renew_lease(name)
    assert renewed.instance == name and renewed.run_lease_until >= first.run_lease_until
    for _ in range(3):
        ci.renew_lease(name)
    assert [e.action for e in ci.instance(name).events] == [e.action for e in first.events]
    ci.delete_instance(name)
    with pytest.raises(Conflict, match="being deleted"):
        ci.renew_lease(name)
    # an instance created without a lease (not a run token, none asked) has none to renew
    plain = aws_org.create_instance(T4).name
    assert aws_org.instance(plain).run_lease_until is None
    with pytest.raises(Conflict, match="has no run lease"):
        aws_org.renew_lease(plain)


def _register_node(plane: Plane, name: str) -> None:
    response = plane.http(plane.admin_token).post(
        "/api/v1/orgs/default/nodes/register",
        json={"name": name, "facts": {"os": "Ubuntu 24.04", "node_home": "/opt/brev-node"}},
    )
    assert response.status_code == 201, response.text
