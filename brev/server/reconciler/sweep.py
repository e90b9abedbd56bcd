"""Find machines that carry our tags but that the database does not know, or knows as deleted,
and terminate them: a GPU running unknown to brev is money spent for nothing.

Machines of instances still being provisioned are left alone: the provisioning step finds
them again through its idempotency key and records them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from brev.api import InstanceStatus as S
from brev.providers.base import TAG_INSTANCE_ID, TAG_PLANE, Machine, Provider, ProviderError
from brev.server.db.engine import transaction
from brev.server.db.models import Instance, ProviderConfig
from brev.server.services import events, placements

log = logging.getLogger("brev.reconciler.sweep")

ProviderForOrg = Callable[[str, str], Provider]


def sweep(sessions: sessionmaker[Session], provider_for_org: ProviderForOrg, plane_id: str) -> int:
    """Terminate every orphan of this plane in every org's accounts; how many were terminated.

    Machines tagged by another plane (or by none) are never touched: two planes may share an
    account, and each knows only its own instances.
    """
    with sessions() as session:
        configs = session.execute(select(ProviderConfig.org_id, ProviderConfig.provider)).all()
    terminated = 0
    for org_id, provider_name in configs:
        with sessions() as session:
            regions = _regions_used(session, org_id, provider_name)
        if not regions:
            continue
        provider = provider_for_org(org_id, provider_name)
        try:
            machines = list(provider.list_owned(sorted(regions)))
        except ProviderError as error:
            log.warning("sweep of %s for org %s failed: %s", provider_name, org_id, error.message)
            continue
        for machine in machines:
            if machine.tags.get(TAG_PLANE) != plane_id:
                continue
            reason = _orphan_reason(sessions, machine)
            if reason is None:
                continue
            try:
                provider.terminate(machine.ref)
            except ProviderError as error:
                log.warning("could not terminate orphan %s: %s", machine.ref.id, error.message)
                continue
            terminated += 1
            _record(sessions, org_id, machine, reason)
    return terminated


def _regions_used(session: Session, org_id: str, provider: str) -> set[str]:
    """Every region this org's instances were ever planned into on this provider."""
    plans = session.scalars(select(Instance.plan).where(Instance.org_id == org_id))
    return {
        p.region for plan in plans for p in placements.parse_plan(plan) if p.provider == provider
    }


def _orphan_reason(sessions: sessionmaker[Session], machine: Machine) -> str | None:
    instance_id = machine.tags.get(TAG_INSTANCE_ID)
    with sessions() as session:
        row = session.get(Instance, instance_id) if instance_id else None
        if row is None:
            return "no instance in the database carries its id"
        if row.deleted_at is not None or row.status == S.DELETED:
            return f"instance '{row.name}' is deleted"
        if row.provider_ref == machine.ref.id:
            return None
        if row.status in (S.PENDING, S.PROVISIONING) or row.provider_ref is None:
            return None  # in flight: the provisioning step will find and record it
        return f"instance '{row.name}' runs on {row.provider_ref}; this is a duplicate"


def _record(sessions: sessionmaker[Session], org_id: str, machine: Machine, reason: str) -> None:
    log.warning("terminated orphan %s (%s): %s", machine.ref.id, machine.ref.provider, reason)
    with transaction(sessions) as session:
        instance_id = machine.tags.get(TAG_INSTANCE_ID)
        row = session.get(Instance, instance_id) if instance_id else None
        events.record(
            session,
            org_id=row.org_id if row else org_id,
            actor_id=None,
            action="sweep.terminate",
            object_type="instance",
            object_id=row.id if row else None,
            object_name=row.name if row else machine.ref.id,
            details={
                "provider": machine.ref.provider,
                "machine": machine.ref.id,
                "region": machine.ref.region,
                "reason": reason,
            },
        )
