"""What a step records after a provider error, by its disposition (providers/base.py): the
next placement, a retry after a back-off, a failure, or a machine that is gone. One policy for
create, converge and delete; a delete is never given up (the machine may still cost money)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from brev.api import InstanceStatus as S
from brev.providers.base import (
    CredentialsError,
    Disposition,
    InvalidRequest,
    Machine,
    NotFound,
    Provider,
    ProviderError,
    ProviderRef,
    SdkMissing,
    disposition,
)
from brev.server.db.models import utcnow
from brev.server.reconciler.snapshot import Recorder, Snapshot, Timing

# Transient errors (throttling, 5xx) retried on the same placement before moving on.
MAX_TRANSIENT_RETRIES = 3
# A machine that exists is never given up on (it costs money): its retries back off to this.
MAX_BACKOFF = timedelta(minutes=5)


def terminate_if_there(provider: Provider, ref: ProviderRef) -> None:
    """Terminate; a machine that is already gone (NotFound) is a delete that is done."""
    try:
        provider.terminate(ref)
    except ProviderError as error:
        if disposition(error) != Disposition.GONE:
            raise


def describe_if_there(provider: Provider, ref: ProviderRef) -> Machine | None:
    try:
        return provider.describe(ref)
    except ProviderError as error:
        if disposition(error) == Disposition.GONE:
            return None
        raise


# A create that failed after its machine was recorded (its operation ended in an error): the
# row goes back to provisioning, with no machine.
NO_MACHINE: dict[str, Any] = {
    "status": S.PROVISIONING,
    "provider_ref": None,
    "provider_operation": None,
    "ssh_host": None,
    "boot_started_at": None,
    "boot_deadline_at": None,
}


def next_placement(
    snap: Snapshot,
    out: Recorder,
    error: ProviderError,
    where: dict[str, Any],
    reason: str,
    **also: Any,
) -> None:
    out.record(
        "instance.attempt_failed",
        {"attempt": snap.attempt + 1, **where, "code": error.code, "reason": reason},
        attempt=snap.attempt + 1,
        transient_failures=0,
        next_check_at=None,
        **also,
    )


def transient(
    snap: Snapshot,
    out: Recorder,
    timing: Timing,
    error: ProviderError,
    where: dict[str, Any],
    **also: Any,
) -> None:
    """A create that may succeed if asked again: a few tries here, then the next placement."""
    failures = snap.transient_failures + 1
    if failures > MAX_TRANSIENT_RETRIES:
        next_placement(snap, out, error, where, f"{error.message} ({failures} tries)", **also)
        return
    out.record(
        "instance.provider_error",
        {"attempt": snap.attempt + 1, **where, "code": error.code, "reason": error.message},
        transient_failures=failures,
        next_check_at=utcnow() + _delay(timing, failures),
        **also,
    )


def create_failed(
    snap: Snapshot, out: Recorder, timing: Timing, error: ProviderError, where: dict[str, Any]
) -> None:
    """A create's operation ended in `error` after its handle was recorded: as a create's
    own error would, with the row back to provisioning and no machine."""
    kind = disposition(error)
    if kind == Disposition.NEXT_PLACEMENT:
        next_placement(snap, out, error, where, error.message, **NO_MACHINE)
    elif kind == Disposition.RETRY:
        transient(snap, out, timing, error, where, **NO_MACHINE)
    else:
        fail(out, snap, error)


def back_off(
    snap: Snapshot,
    out: Recorder,
    timing: Timing,
    error: ProviderError,
    *,
    needs_a_person: bool = False,
) -> None:
    """The same call later, each wait twice the last up to MAX_BACKOFF; the event (and, when a
    person must act, the instance's reason) on the first failure of a run only, not every try."""
    failures = snap.transient_failures + 1
    details = {"code": error.code, "reason": error.message, "tries": failures}
    reason = {"status_reason": f"cannot delete yet: {error.message}"} if needs_a_person else {}
    out.record(
        "instance.provider_error" if failures == 1 else None,
        details,
        transient_failures=failures,
        next_check_at=utcnow() + (MAX_BACKOFF if needs_a_person else _delay(timing, failures)),
        **reason,
    )


def _delay(timing: Timing, failures: int) -> timedelta:
    delay: timedelta = timing.backoff * (2 ** min(failures - 1, 16))
    return min(delay, MAX_BACKOFF)


def lost(out: Recorder, ref: ProviderRef) -> None:
    out.record(
        "instance.lost",
        {"machine": ref.id},
        status=S.FAILED,
        status_reason="the machine was terminated outside brev (or reclaimed, if spot)",
    )


def fail(out: Recorder, snap: Snapshot, error: ProviderError) -> None:
    """The instance fails, saying in one line which provider and placement, what went wrong,
    and what to do."""
    reason = f"{_placement_text(snap)}: {error.message}{_what_to_do(snap, error)}"
    out.record(
        "instance.failed",
        {"reason": reason, "code": error.code},
        status=S.FAILED,
        status_reason=reason,
    )


def _placement_text(snap: Snapshot) -> str:
    if snap.attempt < len(snap.plan) and snap.status in (S.PENDING, S.PROVISIONING):
        p = snap.plan[snap.attempt]
        provider, kind, where = p.provider, p.instance_type, p.zone or p.region
    else:
        provider, kind, where = snap.provider or "?", "", snap.zone or snap.region or ""
    return " ".join(
        part for part in (_display_name(provider), kind, where and f"in {where}") if part
    )


def _display_name(provider: str) -> str:
    from brev.providers import registry

    try:
        return registry.info(provider).display_name
    except registry.UnknownProvider:
        return provider


def _what_to_do(snap: Snapshot, error: ProviderError) -> str:
    if isinstance(error, SdkMissing):
        return ""  # its message says what to install
    if isinstance(error, CredentialsError):
        provider = snap.provider or (snap.plan[0].provider if snap.plan else "NAME")
        return f"; fix the credentials with `brev provider add {provider}`, then create again"
    if isinstance(error, InvalidRequest | NotFound):
        return f"; nothing runs: change the request (`brev show {snap.name}` lists each attempt)"
    return f"; `brev show {snap.name}` lists each attempt"
