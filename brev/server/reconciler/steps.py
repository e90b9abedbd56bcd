"""One transition of one instance: look at what the user wants and what the cloud says, make
one provider call, record the result.

Every step reads a `Snapshot` (plain data, no session), calls the provider outside any
transaction, and writes through `Recorder.record`, one short transaction per write. A write
that must precede a provider call (the attempt about to be made) is committed before the call,
so a crash at any line leaves a row that the next step can finish from.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from brev.api import InstanceStatus as S
from brev.providers.base import (
    TAG_INSTANCE_ID,
    Disposition,
    InstanceSpec,
    Machine,
    MachineState,
    Placement,
    Provider,
    ProviderError,
    ProviderRef,
    disposition,
)
from brev.server.db.models import Instance, utcnow

# Transient errors (throttling, 5xx) retried on the same placement before moving on.
MAX_TRANSIENT_RETRIES = 3
# A machine that exists is never given up on (it costs money): its retries back off to this.
MAX_BACKOFF = timedelta(minutes=5)


@dataclass(frozen=True)
class Timing:
    poll: timedelta = timedelta(seconds=5)  # while something is changing
    steady: timedelta = timedelta(seconds=60)  # re-check a running or stopped machine
    backoff: timedelta = timedelta(seconds=2)  # first retry after a transient error


@dataclass(frozen=True)
class Snapshot:
    id: str
    org_id: str
    org_name: str
    plane_id: str
    name: str
    status: S
    desired: S
    provider: str | None
    provider_ref: str | None
    region: str | None
    zone: str | None
    plan: list[dict[str, Any]]
    attempt: int
    transient_failures: int
    idempotency_key: str
    disk_gb: int
    image: str | None
    startup_script: str | None
    boot_script: str | None = None  # the plane's first-boot part (brev...first_boot)

    @classmethod
    def of(
        cls, row: Instance, org_name: str, plane_id: str, boot_script: str | None = None
    ) -> Snapshot:
        return cls(
            id=row.id,
            org_id=row.org_id,
            org_name=org_name,
            plane_id=plane_id,
            name=row.name,
            status=S(row.status),
            desired=S(row.desired_status),
            provider=row.provider,
            provider_ref=row.provider_ref,
            region=row.region,
            zone=row.zone,
            plan=list(row.plan),
            attempt=row.attempt,
            transient_failures=row.transient_failures,
            idempotency_key=row.idempotency_key,
            disk_gb=row.disk_gb or 200,
            image=row.image,
            startup_script=row.startup_script,
            boot_script=boot_script,
        )

    @property
    def ref(self) -> ProviderRef | None:
        if not (self.provider and self.provider_ref and self.region):
            return None
        return ProviderRef(self.provider, self.region, self.zone, self.provider_ref)


@dataclass
class Change:
    """Columns to set and events to append, in one transaction."""

    values: dict[str, Any] = field(default_factory=dict)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


class Recorder:
    """How a step writes: `record` commits one Change to the instance's row at once."""

    def __init__(self, write: Callable[[Change], None]) -> None:
        self._write = write

    def record(
        self, action: str | None = None, details: dict[str, Any] | None = None, **values: Any
    ) -> None:
        change = Change(values=values)
        if action:
            change.events.append((action, details or {}))
        self._write(change)


ProviderFor = Callable[[str], Provider]


def fault(point: str) -> None:
    """Die like a killed server at `point`, when a crash test asks for it (never otherwise)."""
    if os.environ.get("BREV_FAULT_INJECTION") == point:
        os.kill(os.getpid(), signal.SIGKILL)


def step(snap: Snapshot, provider_for: ProviderFor, out: Recorder, timing: Timing) -> None:
    if snap.desired == S.DELETED:
        delete(snap, provider_for, out, timing)
    elif snap.status in (S.PENDING, S.PROVISIONING):
        provision(snap, provider_for, out, timing)
    elif snap.ref is None:
        out.record(
            "instance.failed",
            {"reason": "no machine recorded"},
            status=S.FAILED,
            status_reason="the plane lost track of this instance's machine",
        )
    else:
        converge(snap, snap.ref, provider_for, out, timing)


def provision(snap: Snapshot, provider_for: ProviderFor, out: Recorder, timing: Timing) -> None:
    if snap.attempt >= len(snap.plan):
        out.record(
            "instance.failed",
            {"reason": "every placement failed"},
            status=S.FAILED,
            status_reason=f"all {len(snap.plan)} placement(s) failed (no capacity or no "
            f"quota); `brev show {snap.name}` lists each attempt and why",
        )
        return
    placement = snap.plan[snap.attempt]
    where = {k: placement[k] for k in ("provider", "instance_type", "region", "zone")}
    if snap.status == S.PENDING or snap.transient_failures == 0:
        # Committed before the call: after a crash, the next step repeats this attempt with the
        # same idempotency key and so finds the machine instead of making a second one.
        out.record(
            "instance.attempt",
            {"attempt": snap.attempt + 1, **where},
            status=S.PROVISIONING,
            provider=placement["provider"],
            region=placement["region"],
            zone=placement["zone"],
            instance_type=placement["instance_type"],
            gpu_model=placement["gpu_model"],
            gpu_count=int(placement["gpu_count"]),
            price_per_hour=placement["price_per_hour"],
        )
    spec = InstanceSpec(
        instance_id=snap.id,
        org=snap.org_name,
        plane_id=snap.plane_id,
        name=snap.name,
        disk_gb=snap.disk_gb,
        image=snap.image,
        startup_script=snap.startup_script,
        boot_script=snap.boot_script,
    )
    target = Placement(
        instance_type=placement["instance_type"],
        region=placement["region"],
        zone=placement["zone"],
        spot=placement["spot"],
        gpu_model=placement["gpu_model"],
        gpu_count=int(placement["gpu_count"]),
        price_per_hour=placement["price_per_hour"],
    )
    try:
        machine = provider_for(placement["provider"]).create(
            spec, target, f"{snap.idempotency_key}-{snap.attempt}"
        )
    except ProviderError as error:
        kind = disposition(error)
        if kind == Disposition.NEXT_PLACEMENT:
            _next_placement(snap, out, error, where, error.message)
        elif kind == Disposition.RETRY:
            _transient(snap, out, timing, error, where)
        else:  # FAIL; GONE cannot answer a create (an image or a network not found): FAIL
            _fail(out, snap, error)
        return
    fault("crash-after-create")
    out.record(
        "instance.provisioned",
        {"attempt": snap.attempt + 1, **where, "machine": machine.ref.id},
        status=S.STARTING,
        provider_ref=machine.ref.id,
        zone=machine.ref.zone or placement["zone"],
        ssh_host=machine.public_ip,
        transient_failures=0,
        next_check_at=utcnow() + timing.poll,
    )


def converge(
    snap: Snapshot, ref: ProviderRef, provider_for: ProviderFor, out: Recorder, timing: Timing
) -> None:
    """A machine exists: move it toward running or stopped."""
    try:
        provider = provider_for(ref.provider)
        machine = provider.describe(ref)
        if machine is None or machine.state == MachineState.TERMINATED:
            _lost(out, ref)
            return
        _toward_desired(snap, ref, machine, provider, out, timing)
    except ProviderError as error:
        kind = disposition(error)
        if kind == Disposition.RETRY:
            _back_off(snap, out, timing, error)
        elif kind == Disposition.NEXT_PLACEMENT and snap.desired == S.RUNNING:
            # Starting a stopped machine found no capacity (AWS's InsufficientInstanceCapacity
            # on start): it stays stopped, as the user can see and ask again.
            out.record(
                "instance.start_failed",
                {"code": error.code, "reason": error.message},
                status=S.STOPPED,
                desired_status=S.STOPPED,
                status_reason=f"could not start: {error.message}; try `brev start` later",
                transient_failures=0,
                next_check_at=utcnow() + timing.steady,
            )
        elif kind == Disposition.GONE:
            _lost(out, ref)
        else:
            _fail(out, snap, error)


def _toward_desired(
    snap: Snapshot,
    ref: ProviderRef,
    machine: Machine,
    provider: Provider,
    out: Recorder,
    timing: Timing,
) -> None:
    """One move of a machine that answered, or a later look when it is where it should be."""
    # An answer ends a run of transient failures: the next one starts its back-off afresh.
    settled: dict[str, Any] = {"transient_failures": 0} if snap.transient_failures else {}
    poll = utcnow() + timing.poll
    steady = utcnow() + timing.steady
    state = machine.state
    if snap.desired == S.RUNNING:
        if state == MachineState.RUNNING and snap.status != S.RUNNING:
            out.record(
                "instance.running",
                {},
                status=S.RUNNING,
                ssh_host=machine.public_ip,
                next_check_at=steady,
                **settled,
            )
        elif state == MachineState.RUNNING:
            out.record(next_check_at=steady, **settled)
        elif state == MachineState.STOPPED:
            provider.start(ref)
            out.record("instance.starting", {}, status=S.STARTING, next_check_at=poll, **settled)
        else:  # pending, stopping: wait
            out.record(next_check_at=poll, **settled)
    elif snap.desired == S.STOPPED:
        if state == MachineState.STOPPED and snap.status != S.STOPPED:
            out.record(
                "instance.stopped",
                {},
                status=S.STOPPED,
                ssh_host=None,
                next_check_at=steady,
                **settled,
            )
        elif state == MachineState.STOPPED:
            out.record(next_check_at=steady, **settled)
        elif state == MachineState.RUNNING:
            provider.stop(ref)
            out.record("instance.stopping", {}, status=S.STOPPING, next_check_at=poll, **settled)
        else:
            out.record(next_check_at=poll, **settled)


def delete(snap: Snapshot, provider_for: ProviderFor, out: Recorder, timing: Timing) -> None:
    ref = snap.ref
    if ref is None:
        # No machine was recorded, but an attempt may have made one (a crash between the
        # provider's answer and our write): look for it by its tags rather than leave it to
        # the next sweep, minutes away.
        try:
            for unrecorded in _machines_of_current_attempt(snap, provider_for):
                _terminate(provider_for(unrecorded.ref.provider), unrecorded.ref)
                out.record("instance.terminated_unrecorded", {"machine": unrecorded.ref.id})
        except ProviderError as error:
            _back_off(snap, out, timing, error)
            return
        out.record("instance.deleted", {}, status=S.DELETED, deleted_at=utcnow(), ssh_host=None)
        return
    try:
        provider = provider_for(ref.provider)
        if snap.status != S.DELETING:
            _terminate(provider, ref)
            fault("crash-after-terminate")
            out.record(
                "instance.deleting",
                {"machine": ref.id},
                status=S.DELETING,
                next_check_at=utcnow() + timing.poll,
            )
            return
        machine = _describe(provider, ref)
        if machine is None or machine.state == MachineState.TERMINATED:
            out.record(
                "instance.deleted",
                {"machine": ref.id},
                status=S.DELETED,
                deleted_at=utcnow(),
                ssh_host=None,
            )
        else:
            _terminate(provider, ref)  # a stopped machine needs it again on some clouds
            out.record(next_check_at=utcnow() + timing.poll)
    except ProviderError as error:
        # Whatever the error, a machine that may exist is tried again, never forgotten: a
        # failure a person must fix (credentials) is said on the instance, retried slowly.
        _back_off(snap, out, timing, error, needs_a_person=disposition(error) == Disposition.FAIL)


def _terminate(provider: Provider, ref: ProviderRef) -> None:
    """Terminate; a machine that is already gone (NotFound) is a delete that is done."""
    try:
        provider.terminate(ref)
    except ProviderError as error:
        if disposition(error) != Disposition.GONE:
            raise


def _describe(provider: Provider, ref: ProviderRef) -> Machine | None:
    try:
        return provider.describe(ref)
    except ProviderError as error:
        if disposition(error) == Disposition.GONE:
            return None
        raise


def _machines_of_current_attempt(snap: Snapshot, provider_for: ProviderFor) -> list[Machine]:
    if snap.status != S.PROVISIONING or snap.attempt >= len(snap.plan):
        return []
    placement = snap.plan[snap.attempt]
    provider = provider_for(placement["provider"])
    return [
        machine
        for machine in provider.list_owned([placement["region"]])
        if machine.tags.get(TAG_INSTANCE_ID) == snap.id and machine.state != MachineState.TERMINATED
    ]


def _next_placement(
    snap: Snapshot, out: Recorder, error: ProviderError, where: dict[str, Any], reason: str
) -> None:
    out.record(
        "instance.attempt_failed",
        {"attempt": snap.attempt + 1, **where, "code": error.code, "reason": reason},
        attempt=snap.attempt + 1,
        transient_failures=0,
        next_check_at=None,
    )


def _transient(
    snap: Snapshot, out: Recorder, timing: Timing, error: ProviderError, where: dict[str, Any]
) -> None:
    """A create that may succeed if asked again: a few tries here, then the next placement."""
    failures = snap.transient_failures + 1
    if failures > MAX_TRANSIENT_RETRIES:
        _next_placement(snap, out, error, where, f"{error.message} ({failures} tries)")
        return
    out.record(
        "instance.provider_error",
        {"attempt": snap.attempt + 1, **where, "code": error.code, "reason": error.message},
        transient_failures=failures,
        next_check_at=utcnow() + _delay(timing, failures),
    )


def _back_off(
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


def _lost(out: Recorder, ref: ProviderRef) -> None:
    out.record(
        "instance.lost",
        {"machine": ref.id},
        status=S.FAILED,
        status_reason="the machine was terminated outside brev (or reclaimed, if spot)",
    )


def _fail(out: Recorder, snap: Snapshot, error: ProviderError) -> None:
    out.record(
        "instance.failed", {"reason": error.message}, status=S.FAILED, status_reason=error.message
    )
