"""GCP's errors as brev's typed errors: one table (`_classify`) for HTTP errors and for failed
operations, which say the same through their httpErrorStatusCode; messages in the API's own
words, prefixed with what brev was doing."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from .base import (
    CredentialsError,
    InvalidRequest,
    NoCapacity,
    NotFound,
    ProviderError,
    QuotaExceeded,
    Transient,
)
from .sdks import GCP

if TYPE_CHECKING:
    from google.api_core.exceptions import GoogleAPICallError
    from google.cloud import compute_v1

_CAPACITY_CODES = frozenset(
    {"ZONE_RESOURCE_POOL_EXHAUSTED", "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS", "STOCKOUT"}
)
_RETRY_REASONS = frozenset({"ratelimitexceeded", "userratelimitexceeded", "resourcenotready"})


class AlreadyExists(InvalidRequest):
    """Our instance name is taken: after a crash, usually by our own earlier create."""


def _classify(status: int | None, reasons: set[str], text: str, code: str | None) -> ProviderError:
    """One table for HTTP errors and failed operations (whose httpErrorStatusCode says the same).
    `reasons` are lowercase without underscores: errors[].reason says `quotaExceeded`, an
    ErrorInfo says `RATE_LIMIT_EXCEEDED`."""
    if status == 404:
        # A machine or accelerator type that this zone does not offer: another zone may.
        if "acceleratorTypes/" in text or "machineTypes/" in text:
            return NoCapacity(text, code=code)
        return NotFound(text, code=code)
    if "alreadyexists" in reasons or (status == 409 and "already exists" in text):
        return AlreadyExists(text, code=code)
    if "quotaexceeded" in reasons:
        return QuotaExceeded(text, code=code)
    # Throttling comes as 403 too; an instance busy with another operation answers 400.
    if status == 409 or reasons & _RETRY_REASONS:
        return Transient(text, code=code)
    if status in (401, 403):
        return CredentialsError(text, code=code)
    if status is not None and 400 <= status < 500 and status != 429:
        return InvalidRequest(text, code=code)
    return Transient(text, code=code)  # 429, 5xx, or no status at all: worth another try


def operation_error(operation: compute_v1.Operation, action: str, zone: str) -> ProviderError:
    errors = operation.error.errors
    codes = [e.code for e in errors]
    detail = "; ".join(e.message for e in errors if e.message) or operation.http_error_message
    text = f"{action}: {detail or codes[0]}"
    if _CAPACITY_CODES.intersection(codes):
        code = next(c for c in codes if c in _CAPACITY_CODES)
        return NoCapacity(f"{action}: zone {zone} has no capacity now ({detail})", code=code)
    if "QUOTA_EXCEEDED" in codes:
        return QuotaExceeded(text, code="QUOTA_EXCEEDED")
    if "RESOURCE_ALREADY_EXISTS" in codes:
        return AlreadyExists(text, code="RESOURCE_ALREADY_EXISTS")
    if "RESOURCE_NOT_FOUND" in codes:
        return _classify(404, set(), text, "RESOURCE_NOT_FOUND")
    return _classify(operation.http_error_status_code or None, set(), text, codes[0])


@contextmanager
def translated(action: str) -> Iterator[None]:
    """Turn what the client raises into the provider's typed errors, with a readable message."""
    GCP.require()
    import requests
    from google.api_core import exceptions as api
    from google.auth import exceptions as auth

    try:
        yield
    except api.GoogleAPICallError as exc:
        raise _http_error(exc, action) from exc
    except api.RetryError as exc:
        raise Transient(f"{action}: timed out") from exc
    except auth.DefaultCredentialsError as exc:
        raise CredentialsError(f"{action}: no GCP credentials configured") from exc
    except auth.RefreshError as exc:
        error_type = Transient if getattr(exc, "retryable", False) else CredentialsError
        raise error_type(f"{action}: the GCP credentials were refused") from exc
    except (auth.TransportError, requests.RequestException) as exc:
        raise Transient(f"{action}: {type(exc).__name__} talking to GCP") from exc


def _http_error(exc: GoogleAPICallError, action: str) -> ProviderError:
    raw = [str(e.get("reason") or "") for e in exc.errors if isinstance(e, dict)]
    raw = [r for r in [*raw, exc.reason or ""] if r]
    reasons = {r.replace("_", "").lower() for r in raw}
    messages = [str(e["message"]) for e in exc.errors if isinstance(e, dict) and e.get("message")]
    # The library prefixes "METHOD URL: "; the API's own words read better.
    detail = messages[0] if messages else exc.message
    return _classify(exc.code, reasons, f"{action}: {detail}", raw[0] if raw else None)
