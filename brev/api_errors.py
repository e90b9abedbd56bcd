"""What the brev API answers when it refuses: one exception per error code, for the CLI and for
users' scripts alike. Importing it costs nothing (no pydantic, no httpx).

    from brev.client import BrevClient
    from brev.api_errors import NoCapacity
    try:
        brev.create_instance(...)
    except NoCapacity:
        ...  # try another GPU

An answer is mapped by its body's `code` first (`error_for`); a code this release does not know
(a newer plane) falls back to its HTTP status, so `except NotFound` and `except Forbidden` keep
working. Every class is also an `ApiError` with `status`, `code`, `message` and `fields`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

from brev.errors import BrevError

if TYPE_CHECKING:
    from brev.api import FieldError


class ApiError(BrevError):
    """The plane answered with an error status."""

    CODE: ClassVar[str] = "http_error"  # the code this class stands for

    def __init__(
        self, status: int, code: str, message: str, fields: Sequence[FieldError] = ()
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code  # the answer's own (an unknown code's class is its status's)
        self.fields = list(fields)


# -- by status: what a code this release does not know falls back to -----------------------


class InvalidRequest(ApiError):
    """422: a value in the request cannot be right; `fields` names which."""

    CODE = "validation_error"


class BadRequest(InvalidRequest):
    """400: the request as a whole cannot be served (a body that is not JSON, ...)."""

    CODE = "bad_request"


class InvalidJson(BadRequest):
    """400: the request body is not JSON; the message says where it broke."""

    CODE = "invalid_json"


class Unauthenticated(ApiError):
    CODE = "unauthenticated"


class Forbidden(ApiError):
    CODE = "forbidden"


class NotFound(ApiError):
    """Also the answer for another org's objects: their existence is not disclosed."""

    CODE = "not_found"


class Conflict(ApiError):
    CODE = "conflict"


class ServerError(ApiError):
    """5xx: the plane's fault; its log has the details."""

    CODE = "internal_error"


# -- by code ---------------------------------------------------------------------------------


class DatabaseUnavailable(ServerError):
    """503: the plane answers but its database does not, for now. Temporary: trying again
    after a few seconds (the answer's Retry-After) is the remedy."""

    CODE = "database_unavailable"


class TokenLimit(Forbidden):
    """Over a limit of a run-scoped token; `fields[0].field` names the limit."""

    CODE = "token_limit"


class CsrfFailed(Forbidden):
    CODE = "csrf_failed"


class MethodNotAllowed(ApiError):
    CODE = "method_not_allowed"


class NoCapacity(Conflict):
    """No offer or node can take the request now (every GPU of a node is taken, ...)."""

    CODE = "no_capacity"


class NodeRemoved(ApiError):
    """Said to the agent of a removed node (410)."""

    CODE = "node_removed"


class NodeInstallFailed(ApiError):
    """The agent could not be installed on the machine; the message says what it said."""

    CODE = "node_install_failed"


class BodyTooLarge(InvalidRequest):
    """413: the request body is over the plane's limit, which the message names."""

    CODE = "body_too_large"


class ProviderNotInstalled(ApiError):
    """The provider's SDK is missing on the plane; the message names what to install. Not the
    request's fault, so not an InvalidRequest although it is a 422."""

    CODE = "provider_not_installed"


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthenticated,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: BodyTooLarge,
    422: InvalidRequest,
}


def _every(kind: type[ApiError]) -> list[type[ApiError]]:
    return [kind, *(k for sub in kind.__subclasses__() for k in _every(sub))]


BY_CODE: dict[str, type[ApiError]] = {kind.CODE: kind for kind in _every(ApiError)}


def error_for(status: int, code: str, message: str, fields: Sequence[FieldError] = ()) -> ApiError:
    """The exception for an error answer: by its code, else by its status."""
    kind = BY_CODE.get(code)
    if kind is None or kind is ApiError:
        kind = ServerError if status >= 500 else _BY_STATUS.get(status, ApiError)
    return kind(status, code, message, fields)
