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
from typing import Any

from brev.api import InstanceStatus as S
from brev.providers.base import (
    TAG_INSTANCE_ID,
    Disposition,
    InstanceSpec,
    LiveCapacity,
    LongOperations,
    Machine,
    MachineState,
    NoCapacity,
    Provider,
    ProviderError,
    ProviderRef,
    disposition,
)
from brev.server.db.models import utcnow
from brev.server.reconciler.failures import (
    back_off,
    create_failed,
    describe_if_there,
    fail,
    lost,
    next_placement,
    terminate_if_there,
    transient,
)
from brev.server.reconciler.snapshot import ProviderFor, Recorder, Snapshot, Timing
from brev.server.services import placements


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
    where = placements.where(placement)
    if snap.status == S.PENDING or snap.transient_failures == 0:
        # Committed before the call: after a crash, the next step repeats this attempt with the
        # same idempotency key and so finds the machine instead of making a second one.
        out.record(
            "instance.attempt",
            {"attempt": snap.attempt + 1, **where},
            status=S.PROVISIONING,
            **placements.columns(placement),
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
    try:
        provider = provider_for(placement.provider)
        if not _has_capacity_now(provider, placement.instance_type, placement.region):
            raise NoCapacity(
                f"{placement.instance_type} has no capacity in {placement.region} now "
                "(the provider's live capacity)",
                code="no-capacity-now",
            )
        machine = provider.create(
            spec, placements.for_provider(placement), f"{snap.idempotency_key}-{snap.attempt}"
        )
    except ProviderError as error:
        kind = disposition(error)
        if kind == Disposition.NEXT_PLACEMENT:
            next_placement(snap, out, error, where, error.message)
        elif kind == Disposition.RETRY:
            transient(snap, out, timing, error, where)
        else:  # FAIL; GONE cannot answer a create (an image or a network not found): FAIL
            fail(out, snap, error)
        return
    fault("crash-after-create")
    out.record(
        "instance.provisioned",
        {"attempt": snap.attempt + 1, **where, "machine": machine.ref.id},
        status=S.STARTING,
        provider_ref=machine.ref.id,
        zone=machine.ref.zone or placement.zone,
        ssh_host=machine.public_ip,
        provider_operation=machine.operation,
        transient_failures=0,
        boot_started_at=utcnow(),
        boot_deadline_at=utcnow() + timing.boot.timeout,
        next_check_at=utcnow() + timing.poll,
    )


def converge(
    snap: Snapshot, ref: ProviderRef, provider_for: ProviderFor, out: Recorder, timing: Timing
) -> None:
    """A machine exists: move it toward running or stopped."""
    try:
        provider = provider_for(ref.provider)
        if snap.provider_operation is not None and not _created(snap, ref, provider, out, timing):
            return
        machine = provider.describe(ref)
        if machine is None or machine.state == MachineState.TERMINATED:
            lost(out, ref)
            return
        _toward_desired(snap, ref, machine, provider, out, timing)
    except ProviderError as error:
        kind = disposition(error)
        if kind == Disposition.RETRY:
            back_off(snap, out, timing, error)
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
            lost(out, ref)
        else:
            fail(out, snap, error)


def _has_capacity_now(provider: Provider, instance_type: str, region: str) -> bool:
    """False only when the provider says where it has capacity now and this is not there; a
    provider that cannot say, or whose answer fails, is asked to create anyway."""
    if not isinstance(provider, LiveCapacity):
        return True
    try:
        return region in provider.regions_with_capacity().get(instance_type, frozenset())
    except ProviderError:
        return True


def _created(
    snap: Snapshot, ref: ProviderRef, provider: Provider, out: Recorder, timing: Timing
) -> bool:
    """A create still in flight at the provider: True once it ended well (its handle is
    dropped and the machine is looked at); False while it runs or once its failure is
    recorded. Asking is one short call: no worker waits out the operation."""
    assert snap.provider_operation is not None
    try:
        done = operation_done(provider, ref, snap.provider_operation)
    except ProviderError as error:
        create_failed(snap, out, timing, error, _where(snap))
        return False
    if not done:
        out.record(next_check_at=utcnow() + timing.poll)
        return False
    out.record(provider_operation=None)
    return True


def _where(snap: Snapshot) -> dict[str, Any]:
    if snap.attempt >= len(snap.plan):
        return {"provider": snap.provider, "region": snap.region, "zone": snap.zone}
    return placements.where(snap.plan[snap.attempt])


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
            _booting(snap, ref, machine, provider, out, timing, settled)
        elif state == MachineState.RUNNING:
            out.record(next_check_at=steady, **settled)
        elif state == MachineState.STOPPED:
            provider.start(ref)
            out.record(
                "instance.starting",
                {},
                status=S.STARTING,
                boot_started_at=utcnow(),
                boot_deadline_at=None,  # a machine with the user's disk is never given back
                next_check_at=poll,
                **settled,
            )
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


def _booting(
    snap: Snapshot,
    ref: ProviderRef,
    machine: Machine,
    provider: Provider,
    out: Recorder,
    timing: Timing,
    settled: dict[str, Any],
) -> None:
    """The provider says running: running once reachable; a first boot past its deadline is
    given back and the next placement tried."""
    host = machine.public_ip or machine.private_ip
    reached = timing.boot.reached_by(
        boot_started_at=snap.boot_started_at,
        last_heartbeat_at=snap.last_heartbeat_at,
        host=host,
        port=snap.ssh_port,
    )
    if reached is not None:
        out.record(
            "instance.running",
            {"reachable_by": reached},
            status=S.RUNNING,
            ssh_host=machine.public_ip,
            boot_deadline_at=None,
            next_check_at=utcnow() + timing.steady,
            **settled,
        )
    elif snap.boot_deadline_at is not None and utcnow() >= snap.boot_deadline_at:
        minutes = timing.boot.timeout.total_seconds() / 60
        reason = (
            f"not reachable {minutes:g} min after it started (no agent report, no sshd "
            f"answer): given back, trying the next placement"
        )
        terminate_if_there(provider, ref)  # first: a failure here leaves the row to try it again
        out.record(
            "instance.unreachable",
            {"attempt": snap.attempt + 1, "machine": ref.id, "reason": reason},
            status=S.PROVISIONING,
            attempt=snap.attempt + 1,
            provider_ref=None,
            ssh_host=None,
            boot_started_at=None,
            boot_deadline_at=None,
            transient_failures=0,
            next_check_at=None,
        )
    else:
        out.record(ssh_host=machine.public_ip, next_check_at=utcnow() + timing.poll, **settled)


def delete(snap: Snapshot, provider_for: ProviderFor, out: Recorder, timing: Timing) -> None:
    ref = snap.ref
    if ref is None:
        # No machine was recorded, but an attempt may have made one (a crash between the
        # provider's answer and our write): look for it by its tags rather than leave it to
        # the next sweep, minutes away.
        try:
            for unrecorded in _machines_of_current_attempt(snap, provider_for):
                terminate_if_there(provider_for(unrecorded.ref.provider), unrecorded.ref)
                out.record("instance.terminated_unrecorded", {"machine": unrecorded.ref.id})
        except ProviderError as error:
            back_off(snap, out, timing, error)
            return
        out.record("instance.deleted", {}, status=S.DELETED, deleted_at=utcnow(), ssh_host=None)
        return
    # An answer ends a run of transient failures, as in converge: the next error's back-off
    # starts afresh rather than from where the throttled terminates before it left it.
    settled: dict[str, Any] = {"transient_failures": 0} if snap.transient_failures else {}
    try:
        provider = provider_for(ref.provider)
        if snap.provider_operation is not None and _still_creating(snap, ref, provider):
            # A terminate now could precede the machine, which would then live on unowned.
            out.record(next_check_at=utcnow() + timing.poll)
            return
        if snap.status != S.DELETING:
            terminate_if_there(provider, ref)
            fault("crash-after-terminate")
            out.record(
                "instance.deleting",
                {"machine": ref.id},
                status=S.DELETING,
                provider_operation=None,
                next_check_at=utcnow() + timing.poll,
                **settled,
            )
            return
        machine = describe_if_there(provider, ref)
        if machine is None or machine.state == MachineState.TERMINATED:
            out.record(
                "instance.deleted",
                {"machine": ref.id},
                status=S.DELETED,
                deleted_at=utcnow(),
                ssh_host=None,
            )
        else:
            terminate_if_there(provider, ref)  # a stopped machine needs it again on some clouds
            out.record(next_check_at=utcnow() + timing.poll, **settled)
    except ProviderError as error:
        # Whatever the error, a machine that may exist is tried again, never forgotten: a
        # failure a person must fix (credentials) is said on the instance, retried slowly.
        back_off(snap, out, timing, error, needs_a_person=disposition(error) == Disposition.FAIL)


def _still_creating(snap: Snapshot, ref: ProviderRef, provider: Provider) -> bool:
    """Whether the create is still running. An operation that failed, or that cannot be asked
    about now, is not: the terminate that follows settles it either way (a machine that is
    not there is a delete done; one not ready yet refuses, and the delete is tried again)."""
    assert snap.provider_operation is not None
    try:
        return not operation_done(provider, ref, snap.provider_operation)
    except ProviderError:
        return False


def operation_done(provider: Provider, ref: ProviderRef, operation: str) -> bool:
    """The provider's answer about a create it returned as in flight (LongOperations)."""
    if not isinstance(provider, LongOperations):
        return True  # a provider that hands out no operations has none running
    return provider.operation_done(ref, operation)


def _machines_of_current_attempt(snap: Snapshot, provider_for: ProviderFor) -> list[Machine]:
    if snap.status != S.PROVISIONING or snap.attempt >= len(snap.plan):
        return []
    placement = snap.plan[snap.attempt]
    provider = provider_for(placement.provider)
    return [
        machine
        for machine in provider.list_owned([placement.region])
        if machine.tags.get(TAG_INSTANCE_ID) == snap.id and machine.state != MachineState.TERMINATED
    ]
