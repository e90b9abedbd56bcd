"""`brev agent run`: collect every interval, deliver to the plane, buffer through outages.

Reports are numbered (microseconds since the epoch, so a restarted agent still counts up).
While the plane cannot be reached they wait in order in a bounded buffer (a day at the default
interval), and are sent oldest first once it answers; the plane drops any number it has seen,
so a batch whose answer was lost may be sent again without being counted twice.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import httpx

from brev.agent.collect import collect

log = logging.getLogger("brev.agent")

MAX_BUFFERED = 8640  # 24 h at 10 s
MAX_BATCH = 500
MAX_BACKOFF_S = 60.0


class Uplink:
    def __init__(
        self, url: str, token: str, *, interval: float = 10.0, timeout: float = 10.0
    ) -> None:
        self._interval = interval
        self._http = httpx.Client(
            base_url=url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
            verify=url.startswith("https://"),
        )
        self.pending: deque[tuple[int, dict[str, Any]]] = deque(maxlen=MAX_BUFFERED)
        self.delivered = 0
        self._last_seq = 0

    def add(self, report: dict[str, Any]) -> None:
        seq = max(time.time_ns() // 1000, self._last_seq + 1)
        self._last_seq = seq
        if len(self.pending) == self.pending.maxlen:
            log.warning("buffer full: dropping the oldest report")
        self.pending.append((seq, report))

    def flush(self) -> bool:
        """Send what waits, oldest first; True when nothing is left."""
        while self.pending:
            batch = list(self.pending)[:MAX_BATCH]
            body = {
                "reports": [{"seq": seq, "report": report} for seq, report in batch],
                "interval_seconds": self._interval,
            }
            response = self._http.post("/api/v1/agent/reports", json=body)
            if response.status_code in (401, 403, 404):
                raise PermissionError(f"the plane refused this agent: {response.text[:200]}")
            response.raise_for_status()
            for _ in batch:
                self.pending.popleft()
            self.delivered += response.json()["accepted"]
            log.info("delivered %d report(s), seq %d..%d", len(batch), batch[0][0], batch[-1][0])
        return True

    def close(self) -> None:
        self._http.close()


def run(
    url: str,
    token: str,
    interval: float,
    *,
    should_stop: Callable[[], bool] = lambda: False,
    collect_report: Callable[[], dict[str, Any]] = lambda: collect().as_json(),
) -> Uplink:
    uplink = Uplink(url, token, interval=interval)
    backoff = 0.0
    next_sample = time.monotonic()
    next_attempt = 0.0
    try:
        while not should_stop():
            now = time.monotonic()
            if now >= next_sample:
                uplink.add(collect_report())
                next_sample = now + interval
            if now >= next_attempt:
                try:
                    uplink.flush()
                    backoff, next_attempt = 0.0, 0.0
                except (httpx.TransportError, httpx.HTTPStatusError) as error:
                    backoff = min(max(interval, backoff * 2 or interval), MAX_BACKOFF_S)
                    log.warning(
                        "plane unreachable (%s); %d report(s) buffered, retry in %.0f s",
                        type(error).__name__,
                        len(uplink.pending),
                        backoff,
                    )
                    next_attempt = now + backoff
            wake = min(next_sample, next_attempt) if next_attempt else next_sample
            time.sleep(max(0.05, wake - time.monotonic()))
    finally:
        uplink.close()
    return uplink
