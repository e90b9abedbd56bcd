"""How the reconciler's loop says that a pass, a step or a sweep failed (issue 13, item 6).

A database that is away is one line when it goes and one when it returns, for the whole
process (brev.server.db.outage), and the passes back off meanwhile; it used to be a traceback
every second. Any other failure is logged with its traceback the first time, then counted
(brev.server.log_dedup): a bug met on every pass is one traceback and a count a minute.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.orm import Session, sessionmaker

from brev.server.db import outage
from brev.server.log_dedup import DedupLog, raise_site

log = logging.getLogger("brev.reconciler")
_repeats = DedupLog(log)

# The longest wait between passes while the database is away: its return is noticed within
# this (requests notice it at once, on their own). Under the replicas' timeout (10 s): a
# replica back from an outage heartbeats before its peers would count it as gone.
MAX_PAUSE_S = 5.0


def say_failure(
    sessions: sessionmaker[Session], error: BaseException, what: str, *args: object
) -> bool:
    """Say that `what % args` failed with `error`; True when the database was unavailable."""
    if outage.noted(sessions.kw["bind"], error):
        return True
    key = (what, *raise_site(error))
    _repeats.log(logging.ERROR, key, f"{what} failed", *args, exc_info=error)
    return False


@contextmanager
def saying_failures(sessions: sessionmaker[Session], what: str, *args: object) -> Iterator[None]:
    """Run the block; a failure in it is said (`say_failure`) and goes no further."""
    try:
        yield
    except Exception as error:
        say_failure(sessions, error, what, *args)


def pause_between_passes(interval: float, passes_without_database: int) -> float:
    """The wait before the next pass: the interval, doubling (up to MAX_PAUSE_S) for each
    pass in a row that found the database away."""
    if passes_without_database == 0:
        return interval
    backed_off = max(interval, 0.1) * 2.0**passes_without_database
    return max(interval, min(backed_off, MAX_PAUSE_S))
