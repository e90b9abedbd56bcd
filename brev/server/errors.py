"""Errors that services raise; `brev.server.app` turns each into an HTTP status and JSON body.

Services never speak HTTP: they raise one of these, with a message a user can act on.
"""

from __future__ import annotations


class ServiceError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Unauthenticated(ServiceError):
    status_code = 401
    code = "unauthenticated"


class Forbidden(ServiceError):
    status_code = 403
    code = "forbidden"


class NotFound(ServiceError):
    """Also what a caller gets for another org's objects: their existence is not disclosed."""

    status_code = 404
    code = "not_found"


class TokenLimit(ServiceError):
    """A request over a limit of the caller's run-scoped token; `limit` names which
    (max_price_per_hour, max_gpus, max_ttl_seconds), also as the error's field."""

    status_code = 403
    code = "token_limit"

    def __init__(self, limit: str, message: str) -> None:
        super().__init__(message)
        self.limit = limit


class Conflict(ServiceError):
    status_code = 409
    code = "conflict"


class InvalidInput(ServiceError):
    """A request value the API's types accept but the service cannot: a GPU nobody sells."""

    status_code = 422
    code = "validation_error"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class ProviderNotInstalled(ServiceError):
    """The provider's SDK is missing on the plane: an operator installs it (the message says
    how); nothing the caller can change in the request."""

    status_code = 422
    code = "provider_not_installed"


class NodeRemoved(ServiceError):
    """Said to the agent of a removed node: it uninstalls itself on hearing this."""

    status_code = 410
    code = "node_removed"


class NoPlacement(Conflict):
    """No placement can take the request now: every fitting GPU of the org's nodes is taken, a
    node was removed meanwhile. The API's `no_capacity`; a cloud's own "no capacity" is
    providers.base.NoCapacity, a provider error the reconciler acts on."""

    code = "no_capacity"


class NodeInstallFailed(ServiceError):
    """The agent could not be installed on a machine; the message says what it said."""

    status_code = 422
    code = "node_install_failed"


class CsrfFailed(Forbidden):
    """A dashboard request without the session's CSRF token."""

    code = "csrf_failed"
