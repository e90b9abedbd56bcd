"""The reconciler's thread: claim due instances, step each in a worker pool, sweep now and then."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from brev.api import InstanceStatus as S
from brev.providers.base import Provider
from brev.server.db.engine import transaction
from brev.server.db.models import Instance, Org, Plane, utcnow
from brev.server.reconciler import (
    autostop,
    claims,
    expiry,
    health,
    replicas,
    retention,
    sweep,
)
from brev.server.reconciler.loop_errors import (
    pause_between_passes,
    say_failure,
    saying_failures,
)
from brev.server.reconciler.snapshot import Change, Recorder, Snapshot, Timing
from brev.server.reconciler.steps import step
from brev.server.secrets import Secrets
from brev.server.services import events, first_boot, provider_configs

log = logging.getLogger("brev.reconciler")

ProviderFactory = Callable[[str, dict[str, Any]], Provider]


class Reconciler:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        secrets: Secrets,
        make_provider: ProviderFactory,
        *,
        interval: float = 1.0,
        lease: timedelta = timedelta(minutes=2),
        workers: int = 64,
        timing: Timing | None = None,
        sweep_every: timedelta = timedelta(minutes=5),
        public_url: str | None = None,
        replica: str | None = None,
        dead_after: timedelta = claims.DEAD_AFTER,
    ) -> None:
        # The lease owner's name: a server's is the same across its restarts (replicas.py).
        self.owner = replica or f"reconciler-{uuid.uuid4().hex[:12]}"
        self._dead_after = dead_after
        self._sessions = sessions
        self._secrets = secrets
        self._make_provider = make_provider
        self._interval = interval
        self._lease = lease
        self._timing = timing or Timing()
        self._sweep_every = sweep_every
        self._public_url = public_url
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="reconcile")
        self._workers = workers
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._providers: dict[tuple[str, str], tuple[str, Provider]] = {}
        self._providers_lock = threading.Lock()
        self._in_flight: set[str] = set()
        self._in_flight_lock = threading.Lock()
        self._last_sweep = 0.0
        self._retention = retention.Retention(sessions)

    # -- running ------------------------------------------------------------------------

    def start(self) -> None:
        with transaction(self._sessions) as session:
            replicas.join(session, self.owner)
        self._thread = threading.Thread(target=self._run, name="reconciler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._thread is not None:
            try:
                with transaction(self._sessions) as session:
                    replicas.leave(session, self.owner)
            except Exception as exc:  # the database is gone: the row goes silent instead
                log.warning("replica %s could not sign off: %s", self.owner, exc)

    def _run(self) -> None:
        passes_without_database = 0
        while not self._stop.is_set():
            try:
                self.dispatch()
                health.mark_silent_instances(self._sessions)
                health.forget_abandoned_installs(self._sessions)
                autostop.stop_idle_instances(self._sessions)
                expiry.delete_expired_instances(self._sessions)
                self._retention.maybe_compact()
                if time.monotonic() - self._last_sweep >= self._sweep_every.total_seconds():
                    self._last_sweep = time.monotonic()
                    self._pool.submit(self.sweep)
                passes_without_database = 0
            except Exception as error:  # one bad pass must not end the loop: log and go on
                if say_failure(self._sessions, error, "reconcile pass"):
                    passes_without_database += 1
            self._stop.wait(pause_between_passes(self._interval, passes_without_database))

    def dispatch(self) -> int:
        """Claim what is due and hand each to a worker; how many were handed out."""
        with self._in_flight_lock:
            busy = set(self._in_flight)
        with transaction(self._sessions) as session:
            replicas.beat(session, self.owner)
            claims.extend(session, busy, self.owner, self._lease)
            free = self._workers - len(busy)
            if free <= 0:
                return 0
            ids = claims.claim_due(
                session, self.owner, self._lease, free, busy, dead_after=self._dead_after
            )
        for instance_id in ids:
            with self._in_flight_lock:
                self._in_flight.add(instance_id)
            self._pool.submit(self._step_and_release, instance_id)
        return len(ids)

    def run_once(self) -> int:
        """Claim and step every due instance, waiting for the steps (tests, `brev` tools)."""
        with transaction(self._sessions) as session:
            replicas.beat(session, self.owner)
            ids = claims.claim_due(
                session, self.owner, self._lease, self._workers, dead_after=self._dead_after
            )
        for future in [self._pool.submit(self._step_and_release, i) for i in ids]:
            future.result()
        return len(ids)

    @functools.cached_property
    def plane_id(self) -> str:
        with self._sessions() as session:
            return session.scalars(select(Plane.id)).one()

    def sweep(self) -> int:
        try:
            return sweep.sweep(self._sessions, self.provider_for_org, self.plane_id)
        except Exception as error:
            say_failure(self._sessions, error, "sweep")
            return 0

    # -- one instance -------------------------------------------------------------------

    def _step_and_release(self, instance_id: str) -> None:
        try:
            self._step(instance_id)
        except claims.LeaseLost:
            log.warning("lease on instance %s ran out mid-step; another worker has it", instance_id)
        except Exception as error:
            # With the database away the step is due as it was; else it is put off a while.
            if not say_failure(self._sessions, error, "step of instance %s", instance_id):
                with (
                    saying_failures(self._sessions, "putting off instance %s", instance_id),
                    transaction(self._sessions) as session,
                ):
                    row = session.get(Instance, instance_id)
                    if row is not None and row.lease_owner == self.owner:
                        row.next_check_at = utcnow() + self._timing.backoff
        finally:
            # Released even when that fails (the database away: the lease runs out instead),
            # or the instance would stay in flight, and unstepped, until a restart.
            with (
                saying_failures(self._sessions, "releasing instance %s", instance_id),
                transaction(self._sessions) as session,
            ):
                row = session.get(Instance, instance_id)
                if row is not None:
                    claims.release(row, self.owner)
            with self._in_flight_lock:
                self._in_flight.discard(instance_id)

    def _step(self, instance_id: str) -> None:
        with transaction(self._sessions) as session:
            row = session.get(Instance, instance_id)
            if row is None or row.lease_owner != self.owner:
                return
            org_name = session.get_one(Org, row.org_id).name
            boot = None
            if row.status in (S.PENDING, S.PROVISIONING) and row.desired_status != S.DELETED:
                # May add the instance's first-boot agent token: hence a transaction.
                boot = first_boot.script(session, row, self._secrets, self._public_url)
            snapshot = Snapshot.of(row, org_name, self.plane_id, boot)

        stepped_for = snapshot.desired  # what the user wants, as this step knows it

        def write(change: Change) -> None:
            nonlocal stepped_for
            with transaction(self._sessions) as session:
                # Locked as it is read: a request's delete that commits meanwhile is seen here,
                # not overwritten by this write's UPDATE (READ COMMITTED would let it land).
                row = session.get_one(Instance, instance_id, with_for_update=True)
                claims.renew(row, self.owner, self._lease)
                values = change.columns_for(stepped_for, S(row.desired_status))
                if "desired_status" in values:  # the step's own (a start that failed)
                    stepped_for = S(values["desired_status"])
                for key, value in values.items():
                    setattr(row, key, value)
                row.updated_at = utcnow()
                for action, details in change.events:
                    events.about_instance(session, row, action, details)

        step(
            snapshot,
            lambda name: self.provider_for_org(snapshot.org_id, name),
            Recorder(write),
            self._timing,
        )

    def provider_for_org(self, org_id: str, name: str) -> Provider:
        """The org's provider, built once per configuration (clients are costly to make); the
        offers route asks the same clients where they have capacity now."""
        with self._sessions() as session:
            config = provider_configs.load_config(session, org_id, name, self._secrets)
        fingerprint = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()
        with self._providers_lock:
            cached = self._providers.get((org_id, name))
            if cached is None or cached[0] != fingerprint:
                cached = (fingerprint, self._make_provider(name, config))
                self._providers[(org_id, name)] = cached
            return cached[1]
