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
    CredentialsError,
    InstanceSpec,
    InvalidRequest,
    Machine,
    MachineState,
    NoCapacity,
    Placement,
    Provider,
    ProviderError,
    ProviderRef,
    QuotaExceeded,
)
from brev.server.db.models import Instance, utcnow

# Transient errors (throttling, 5xx) retried on the same placement before moving on.
MAX_TRANSIENT_RETRIES = 3


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
        converge(snap, snap.ref, provider_for(snap.ref.provider), out, timing)


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
    except (NoCapacity, QuotaExceeded) as error:
        out.record(
            "instance.attempt_failed",
            {"attempt": snap.attempt + 1, **where, "code": error.code, "reason": error.message},
            attempt=snap.attempt + 1,
            transient_failures=0,
            next_check_at=None,
        )
        return
    except (InvalidRequest, CredentialsError) as error:
        _fail(out, snap, error)
        return
    except ProviderError as error:
        _transient(snap, out, timing, error, where)
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
    snap: Snapshot, ref: ProviderRef, provider: Provider, out: Recorder, timing: Timing
) -> None:
    """A machine exists: move it toward running or stopped."""
    try:
        machine = provider.describe(ref)
        state = machine.state if machine else MachineState.TERMINATED
        if state == MachineState.TERMINATED:
            out.record(
                "instance.lost",
                {"machine": ref.id},
                status=S.FAILED,
                status_reason="the machine was terminated outside brev (or reclaimed, if spot)",
            )
            return
        poll = utcnow() + timing.poll
        if snap.desired == S.RUNNING:
            if state == MachineState.RUNNING:
                if snap.status != S.RUNNING:
                    assert machine is not None
                    out.record(
                        "instance.running",
                        {},
                        status=S.RUNNING,
                        ssh_host=machine.public_ip,
                        next_check_at=utcnow() + timing.steady,
                    )
                else:
                    out.record(next_check_at=utcnow() + timing.steady)
            elif state == MachineState.STOPPED:
                provider.start(ref)
                out.record("instance.starting", {}, status=S.STARTING, next_check_at=poll)
            else:  # pending, stopping: wait
                out.record(next_check_at=poll)
        elif snap.desired == S.STOPPED:
            if state == MachineState.STOPPED:
                if snap.status != S.STOPPED:
                    out.record(
                        "instance.stopped",
                        {},
                        status=S.STOPPED,
                        ssh_host=None,
                        next_check_at=utcnow() + timing.steady,
                    )
                else:
                    out.record(next_check_at=utcnow() + timing.steady)
            elif state == MachineState.RUNNING:
                provider.stop(ref)
                out.record("instance.stopping", {}, status=S.STOPPING, next_check_at=poll)
            else:
                out.record(next_check_at=poll)
    except ProviderError as error:
        if error.retryable:
            out.record(
                "instance.provider_error",
                {"reason": error.message},
                next_check_at=utcnow() + timing.backoff,
            )
        else:
            _fail(out, snap, error)


def delete(snap: Snapshot, provider_for: ProviderFor, out: Recorder, timing: Timing) -> None:
    ref = snap.ref
    if ref is None:
        # No machine was recorded, but an attempt may have made one (a crash between the
        # provider's answer and our write): look for it by its tags rather than leave it to
        # the next sweep, minutes away.
        try:
            for unrecorded in _machines_of_current_attempt(snap, provider_for):
                provider_for(unrecorded.ref.provider).terminate(unrecorded.ref)
                out.record("instance.terminated_unrecorded", {"machine": unrecorded.ref.id})
        except ProviderError as error:
            out.record(
                "instance.provider_error",
                {"reason": error.message},
                next_check_at=utcnow() + timing.backoff,
            )
            return
        out.record("instance.deleted", {}, status=S.DELETED, deleted_at=utcnow(), ssh_host=None)
        return
    provider = provider_for(ref.provider)
    try:
        if snap.status != S.DELETING:
            provider.terminate(ref)
            fault("crash-after-terminate")
            out.record(
                "instance.deleting",
                {"machine": ref.id},
                status=S.DELETING,
                next_check_at=utcnow() + timing.poll,
            )
            return
        machine = provider.describe(ref)
        if machine is None or machine.state == MachineState.TERMINATED:
            out.record(
                "instance.deleted",
                {"machine": ref.id},
                status=S.DELETED,
                deleted_at=utcnow(),
                ssh_host=None,
            )
        else:
            provider.terminate(ref)  # idempotent; a stopped machine needs it again on some clouds
            out.record(next_check_at=utcnow() + timing.poll)
    except ProviderError as error:
        out.record(
            "instance.provider_error",
            {"reason": error.message},
            next_check_at=utcnow() + timing.backoff,
        )


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


def _transient(
    snap: Snapshot, out: Recorder, timing: Timing, error: ProviderError, where: dict[str, Any]
) -> None:
    failures = snap.transient_failures + 1
    if failures > MAX_TRANSIENT_RETRIES:
        out.record(
            "instance.attempt_failed",
            {"attempt": snap.attempt + 1, **where, "reason": f"{error.message} ({failures} tries)"},
            attempt=snap.attempt + 1,
            transient_failures=0,
            next_check_at=None,
        )
        return
    out.record(
        "instance.provider_error",
        {"attempt": snap.attempt + 1, **where, "reason": error.message},
        transient_failures=failures,
        next_check_at=utcnow() + timing.backoff * (2 ** (failures - 1)),
    )


def _fail(out: Recorder, snap: Snapshot, error: ProviderError) -> None:
    out.record(
        "instance.failed", {"reason": error.message}, status=S.FAILED, status_reason=error.message
    )
