"""A log that says each distinct failure once, then counts its repeats (issue 13, item 6).

A failure that recurs (the same bug on every request, a reconciler pass failing every second)
filled the log with the same traceback hundreds of times. Here the first occurrence of a key is
logged in full, traceback included; repeats are counted, and summarised in one line (the latest
message and how many times since the last line) once `every` seconds have passed since that
line, at the next occurrence of any key or at `flush()`. A key that stayed quiet for a whole
window is forgotten: when it comes back it is news again, and logged in full.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

# Keys remembered at once; past this the oldest is forgotten (a flood of distinct failures is
# still one line each, only never summarised).
MAX_KEYS = 256


@dataclass
class _Seen:
    level: int
    last_line_at: float
    latest: str = ""  # the newest occurrence's message, for the summary
    repeats: int = 0  # occurrences since the last line


class DedupLog:
    def __init__(
        self,
        logger: logging.Logger,
        *,
        every: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._every = every
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[Hashable, _Seen] = {}

    def log(
        self,
        level: int,
        key: Hashable,
        message: str,
        *args: object,
        exc_info: BaseException | None = None,
    ) -> bool:
        """Log `message % args` (with `exc_info`'s traceback) if `key` is news; else count it.
        True when this occurrence was written."""
        now = self._clock()
        with self._lock:
            self._summarise(now, due_only=True)
            seen = self._seen.get(key)
            if seen is not None:
                seen.repeats += 1
                seen.latest = message % args if args else message
                return False
            if len(self._seen) >= MAX_KEYS:
                del self._seen[next(iter(self._seen))]
            self._seen[key] = _Seen(level, now)
            self._logger.log(level, message, *args, exc_info=exc_info)
            return True

    def flush(self) -> None:
        """Summarise every key's uncounted repeats now (a process stopping, a failure over)."""
        with self._lock:
            self._summarise(self._clock(), due_only=False)

    def _summarise(self, now: float, *, due_only: bool) -> None:
        for key, seen in list(self._seen.items()):
            elapsed = now - seen.last_line_at
            if due_only and elapsed < self._every:
                continue
            if seen.repeats:
                self._logger.log(
                    seen.level,
                    "%s; %d more %s in the last %.0f s",
                    seen.latest,
                    seen.repeats,
                    "time" if seen.repeats == 1 else "times",
                    elapsed,
                )
                seen.repeats = 0
                seen.last_line_at = now
            elif due_only:
                del self._seen[key]


def raise_site(error: BaseException) -> tuple[str, str, int]:
    """The exception's type and where it was raised: the key of "the same failure again"
    (its message may differ per occurrence: an id, a timestamp)."""
    tb = error.__traceback__
    if tb is None:
        return (type(error).__qualname__, "", 0)
    while tb.tb_next is not None:
        tb = tb.tb_next
    return (type(error).__qualname__, tb.tb_frame.f_code.co_filename, tb.tb_lineno)
