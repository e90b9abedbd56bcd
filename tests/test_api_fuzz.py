"""schemathesis over every route of the API, on SQLite and on PostgreSQL (issue 13): cases
generated from /openapi.json, valid and invalid, sent as the admin of an org (so that they
reach past authentication), each answer checked for a server error, a status the document
does not name, and a body that does not match the document's schema for that status.

Bounded and repeatable: a fixed number of examples per operation and mode, derandomized (the
same cases on every run), no shrinking. The cases reach the app in-process (ASGI), never the
network: the routes that connect somewhere (a node's SSH, a provider's API) meet a resolver
that knows only the loopback. What it found is fixed, each with a test of its own
(tests/test_nul_characters.py).
"""

from __future__ import annotations

import socket
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

from brev.server import fleet_watch
from tests.conftest import Plane

pytestmark = pytest.mark.slow

# The fewest that still sends the NUL of tests/test_nul_characters.py to PostgreSQL (8 did
# not): about 20 s a backend on two cores.
EXAMPLES_PER_MODE = 15
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Generated host names resolve to nothing but the loopback: no case connects out."""
    resolve: Callable[..., Any] = socket.getaddrinfo

    def loopback_only(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name is not None and name not in LOOPBACK:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return resolve(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", loopback_only)


def test_every_route_answers_as_documented(plane: Plane, no_network: None) -> None:
    fleet_watch.of(plane.app).close()  # an event stream answers its first event, then ends
    schema = schemathesis.openapi.from_asgi("/openapi.json", plane.app)
    loaded = list(schema.get_all_operations())
    operations = [result.ok() for result in loaded if isinstance(result, Ok)]
    assert len(operations) == len(loaded) > 40
    headers = {"Authorization": f"Bearer {plane.admin_token}"}
    statuses: defaultdict[str, Counter[int]] = defaultdict(Counter)
    failures: list[str] = []
    for operation in operations:
        # The default org, so that cases reach past the org's lookup to the route itself.
        fixed = {"org": "default"} if "{org}" in operation.path else None
        # A path's free-form strings are never invalid: without a body or a query there is
        # nothing to send wrong (hypothesis would search for it in vain).
        negatable = bool(operation.body) or len(operation.query) > 0
        modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE][: 2 if negatable else 1]
        for mode in modes:
            strategy = operation.as_strategy(generation_mode=mode, path_parameters=fixed)

            @settings(
                max_examples=EXAMPLES_PER_MODE,
                derandomize=True,
                database=None,
                deadline=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=strategy)
            def answers_as_documented(case: schemathesis.Case[Any]) -> None:
                response = case.call_and_validate(headers=headers, checks=CHECKS)
                statuses[case.operation.label][response.status_code] += 1

            try:
                answers_as_documented()
            except Unsatisfiable:
                pass  # no invalid case of it exists (a body with every field free-form)
            except Exception as failure:
                failures.append(f"{operation.label} ({mode}): {failure}")
    assert not failures, "\n\n".join(failures)
    assert set(statuses) == {operation.label for operation in operations}
    # Past authentication: the admin's token opens every user route (agent routes: 403).
    for label, counts in statuses.items():
        if "/agent/" not in label and label != "GET /api/v1/web/sessions/current":
            assert set(counts) - {401, 403}, (label, counts)
