"""Host names the schema's characters allow but a resolver cannot encode ("a..b", a label of
64) are a 422 naming the field, before any resolver sees them (they were a 500: UnicodeError
from socket.getaddrinfo). Issue 13, item 3."""

from __future__ import annotations

import pytest

from brev.api.nodes import HostKeyQuery
from tests.conftest import Plane

BAD_HOSTS = ["a..b", ".box", "box..", "x" * 64 + ".example.com", "fe80::zz", "a" * 254]
GOOD_HOSTS = ["127.0.0.1", "::1", "fe80::1", "box.example.com", "my_box", "x" * 63 + ".com", "box."]


@pytest.mark.parametrize("host", BAD_HOSTS)
def test_a_host_name_no_resolver_can_take_is_a_422(plane: Plane, host: str) -> None:
    http = plane.http(plane.admin_token)
    bodies = {
        "/api/v1/orgs/default/nodes/host-key": {"host": host, "port": 22},
        "/api/v1/orgs/default/nodes": {
            "name": "box",
            "host": host,
            "user": "ubuntu",
            "host_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGpH0Jt8o5hK0sYV7m2Lw0O3k7k2b5Yy6",
        },
    }
    for path, body in bodies.items():
        answer = http.post(path, json=body)
        assert answer.status_code == 422, (path, answer.text)
        error = answer.json()["error"]
        assert error["code"] == "validation_error"
        assert [f["field"] for f in error["fields"]] == ["host"], error
    assert http.get("/api/v1/orgs/default/nodes").json() == []


@pytest.mark.parametrize("host", GOOD_HOSTS)
def test_names_and_addresses_a_resolver_takes_still_pass(host: str) -> None:
    assert HostKeyQuery(host=host).host == host
