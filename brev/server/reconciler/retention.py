"""The reconciler's share of metrics retention: compact GPU samples, at most once a minute
(the finest resolution kept past the raw hour; running more often would find nothing)."""

from __future__ import annotations

import time
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from brev.server.services import gpu_metrics


class Retention:
    def __init__(
        self, sessions: sessionmaker[Session], every: timedelta = timedelta(minutes=1)
    ) -> None:
        self._sessions = sessions
        self._every = every.total_seconds()
        self._last: float | None = None

    def maybe_compact(self) -> gpu_metrics.Compaction | None:
        """Compact when a minute passed since the last time (or never ran); else None."""
        now = time.monotonic()
        if self._last is not None and now - self._last < self._every:
            return None
        # Set before running: a failing compaction is retried in a minute, not every pass.
        self._last = now
        return gpu_metrics.compact(self._sessions)
