"""The run's lease: renewed by a thread while this process lives. If it dies (SIGKILL, a CI
machine that vanished, a lost network), renewals stop and the plane deletes the instance once
the lease lapses (brev.server.reconciler.expiry)."""

from __future__ import annotations

import threading

from brev.cli.run.report import Reporter
from brev.client import BrevClient
from brev.errors import BrevError


class LeaseKeeper:
    def __init__(self, client: BrevClient, name: str, lease_s: int, reporter: Reporter) -> None:
        self._client = client
        self._name = name
        # Three renewals per lease: one lost request, or a slow one, does not lose it.
        self._every = max(1.0, lease_s / 3)
        self._report = reporter
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name="brev-lease", daemon=True)
        self._warned = False

    def start(self) -> None:
        self._thread.start()

    def halt(self) -> None:
        """No more renewals, without waiting for one in flight."""
        self._stop.set()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._client.close()

    def _renew(self) -> None:
        from brev.client import Conflict, NotFound

        while not self._stop.wait(self._every):
            try:
                self._client.renew_lease(self._name)
                self._warned = False
            except (Conflict, NotFound) as error:  # gone, or being deleted (its TTL)
                self._report.warn(f"lease of {self._name} not renewed: {error.message}")
                return
            except Exception as error:  # a 5xx during a deploy, a network blip: try again
                if not self._warned:
                    message = error.message if isinstance(error, BrevError) else repr(error)
                    self._report.warn(f"lease of {self._name} not renewed yet: {message}")
                    self._warned = True
