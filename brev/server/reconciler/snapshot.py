"""What a step reads and how it writes: the instance as plain data (`Snapshot`, no session),
the reconciler's times (`Timing`), and `Recorder`, which commits each `Change` at once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from brev import api
from brev.api import InstanceStatus as S
from brev.providers.base import Provider, ProviderRef
from brev.server.db.models import Instance
from brev.server.reconciler.boot import BootCheck
from brev.server.services import placements


@dataclass(frozen=True)
class Timing:
    poll: timedelta = timedelta(seconds=5)  # while something is changing
    steady: timedelta = timedelta(seconds=60)  # re-check a running or stopped machine
    backoff: timedelta = timedelta(seconds=2)  # first retry after a transient error
    boot: BootCheck = field(default_factory=BootCheck)  # when a booting machine is running


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
    plan: tuple[api.Placement, ...]
    attempt: int
    transient_failures: int
    idempotency_key: str
    disk_gb: int
    image: str | None
    startup_script: str | None
    boot_script: str | None = None  # the plane's first-boot part (brev...first_boot)
    boot_started_at: datetime | None = None
    boot_deadline_at: datetime | None = None
    last_heartbeat_at: datetime | None = None
    ssh_port: int | None = None
    provider_operation: str | None = None

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
            plan=placements.parse_plan(row.plan),
            attempt=row.attempt,
            transient_failures=row.transient_failures,
            idempotency_key=row.idempotency_key,
            disk_gb=row.disk_gb or 200,
            image=row.image,
            startup_script=row.startup_script,
            boot_script=boot_script,
            boot_started_at=row.boot_started_at,
            boot_deadline_at=row.boot_deadline_at,
            last_heartbeat_at=row.last_heartbeat_at,
            ssh_port=row.ssh_port,
            provider_operation=row.provider_operation,
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

    def columns_for(self, stepped_for: S, desired_now: S) -> dict[str, Any]:
        """What to write, by a step that read `stepped_for`, to a row whose user now wants
        `desired_now`. Wanted otherwise meanwhile (a delete while the provider answered, a
        stop, a start, an autostop, a TTL): what the step found and did stands (its status,
        its machine), but not its next check nor a desired status of its own, both decided
        for a wish that is no longer the user's: the row is due at once instead. Written as
        they were, a `running` step's check a minute away put off a delete for that minute,
        and a start that found no capacity turned a delete into a stop for good."""
        if desired_now == stepped_for:
            return self.values
        kept = {key: value for key, value in self.values.items() if key != "desired_status"}
        return {**kept, "next_check_at": None}


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
