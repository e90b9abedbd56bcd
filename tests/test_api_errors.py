"""The client raises one exception per error code the plane can answer (brev.api_errors): by
the body's code first, by the status for a code this release does not know."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import httpx
import pytest

import brev.server
from brev import api_errors
from brev.api_errors import BY_CODE, error_for
from brev.client import BrevClient
from brev.server.errors import ServiceError
from tests.conftest import Plane

# Codes the application answers itself, outside the services' errors, and the module under
# brev/server that answers each: it must appear there, so this list cannot go stale unnoticed.
ANSWERED_BY_THE_APP = {
    "internal_error": "unhandled.py",
    "http_error": "app.py",
    "not_found": "app.py",
    "method_not_allowed": "app.py",
    "validation_error": "app.py",
    "invalid_json": "app.py",
    "body_too_large": "body_limit.py",
    "database_unavailable": "db/outage.py",
}


def _service_error_codes() -> set[str]:
    for module in pkgutil.walk_packages(brev.server.__path__, "brev.server."):
        importlib.import_module(module.name)  # every ServiceError subclass defined

    def every(kind: type[ServiceError]) -> list[type[ServiceError]]:
        return [kind, *(k for sub in kind.__subclasses__() for k in every(sub))]

    return {kind.code for kind in every(ServiceError)}


def test_every_code_the_plane_answers_has_its_own_exception() -> None:
    server = Path(brev.server.__file__).parent
    for code, source in ANSWERED_BY_THE_APP.items():
        assert re.search(rf'"{code}"', (server / source).read_text()), (code, source)
    codes = _service_error_codes() | set(ANSWERED_BY_THE_APP)
    missing = sorted(code for code in codes if code not in BY_CODE and code != "http_error")
    assert missing == [], f"add an exception to brev/api_errors.py for: {missing}"
    assert len({BY_CODE[c] for c in codes if c in BY_CODE}) == len(codes & set(BY_CODE))


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (409, "no_capacity", api_errors.NoCapacity),
        (403, "token_limit", api_errors.TokenLimit),
        (422, "provider_not_installed", api_errors.ProviderNotInstalled),
        (422, "node_install_failed", api_errors.NodeInstallFailed),
        (410, "node_removed", api_errors.NodeRemoved),
        (413, "body_too_large", api_errors.BodyTooLarge),
        (400, "invalid_json", api_errors.InvalidJson),
        (503, "database_unavailable", api_errors.DatabaseUnavailable),
        # a code from a newer plane: its status decides
        (404, "gone_fishing", api_errors.NotFound),
        (409, "some_new_conflict", api_errors.Conflict),
        (503, "some_new_outage", api_errors.ServerError),
        (418, "teapot", api_errors.ApiError),
    ],
)
def test_by_code_then_by_status(status: int, code: str, kind: type[api_errors.ApiError]) -> None:
    error = error_for(status, code, "what went wrong")
    assert type(error) is kind
    assert (error.status, error.code, error.message) == (status, code, "what went wrong")


def test_subclasses_keep_their_status_family() -> None:
    assert issubclass(api_errors.NoCapacity, api_errors.Conflict)
    assert issubclass(api_errors.TokenLimit, api_errors.Forbidden)
    assert not issubclass(api_errors.ProviderNotInstalled, api_errors.InvalidRequest)


def test_a_real_answer_arrives_as_its_exception(plane: Plane, admin: BrevClient) -> None:
    with pytest.raises(api_errors.NotFound) as missing:
        admin.instance("nobody-made-this")
    assert missing.value.code == "not_found" and missing.value.status == 404
    # NoCapacity from a real plane: tests/test_scheduler.py, test_no_capacity_is_a_clear_409
    transport = httpx.MockTransport(
        lambda _: httpx.Response(502, text="<html>bad gateway</html>")
    )  # a proxy's page, not the plane's JSON
    client = BrevClient(
        "http://plane.test",
        "t",
        http=httpx.Client(transport=transport, base_url="http://plane.test"),
    )
    with client, pytest.raises(api_errors.ServerError, match="HTTP 502"):
        client.whoami()
