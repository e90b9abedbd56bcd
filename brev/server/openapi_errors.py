"""The statuses the API documents besides each route's success (issue 13, item 8), so that
generated clients and fuzzers (tests/test_api_fuzz.py) agree with what the server answers.

Every error has the same body (`api.ErrorBody`). The app documents what middleware answers
on any route, each router what its dependencies answer, each route what its service raises.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from brev import api

Responses = dict[int | str, dict[str, Any]]

_DESCRIPTIONS = {
    400: "the request body is not JSON (`invalid_json`)",
    401: "missing, invalid, expired or revoked token (`unauthenticated`)",
    403: "the token may not do this (`forbidden`): an agent token on a user route or a user "
    "token on an agent route, a member where admins only, a run-scoped token outside its "
    "routes or over its limits (`token_limit`)",
    404: "not found, or not visible to the caller (`not_found`)",
    409: "conflicts with what exists (`conflict`)",
    410: "the agent's node was removed (`node_removed`): the agent uninstalls itself",
    413: "the request body is over the size limit (`body_too_large`)",
    422: "invalid request body or parameters (`validation_error`, one field per problem)",
    503: "the plane's database is unreachable or busy (`database_unavailable`); temporary: "
    "try again after Retry-After seconds",
}
_RETRY_AFTER = {
    "Retry-After": {
        "description": "seconds to wait before trying again",
        "schema": {"type": "integer"},
    }
}


def errors(*statuses: int) -> Responses:
    """`responses=` for these statuses, each with the error body."""
    found: Responses = {}
    for status in statuses:
        found[status] = {"model": api.ErrorBody, "description": _DESCRIPTIONS[status]}
        if status == 503:
            found[status]["headers"] = _RETRY_AFTER
    return found


def conflict(description: str) -> Responses:
    """409 with what conflicts on this route."""
    return {409: {"model": api.ErrorBody, "description": f"{description} (`conflict`)"}}


def replayed(model: type[BaseModel]) -> Responses:
    """200 for a create whose idempotency key was seen: what the first request made."""
    return {200: {"model": model, "description": "made before, by a request with this key"}}


# Answered by middleware before any route: a body over the limit, the database away.
EVERY_ROUTE = errors(413, 503)
# The user routes: a token, its kind and its limits are checked; parameters are validated.
USER_ROUTES = errors(401, 403, 422)
# ... and under /orgs/{org}: an org the caller is not in is a 404, as one that does not exist.
ORG_ROUTES = errors(401, 403, 404, 422)
# A route that reads a JSON body.
WITH_BODY = errors(400)
NOT_MODIFIED: Responses = {304: {"description": "not modified: If-None-Match had the ETag"}}
