"""SIGINT and SIGTERM during a run, as CI systems cancel a job.

While the command runs, the first signal is only noted: the job forwards it to the command on
the machine and lets it finish its cleanup. While the create request is on its way it is noted
too, so that the job learns the name of what it must delete. In every other phase (waiting,
syncing, copying back) and for a second signal, the signal unwinds the job at once (Abort) to
its teardown, which deletes the instance and is not interrupted itself (should a second signal
cut the create request short, the instance's lease is what deletes it)."""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any

CREATING = "creating"
RUNNING = "running"
TEARDOWN = "teardown"


class Abort(BaseException):
    """Raised by the handler: skip to teardown. A BaseException so that no `except Exception`
    on the way swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class Cancellation:
    def __init__(self) -> None:
        self.signum: int | None = None
        self.count = 0
        self.phase = "starting"
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def install(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.count += 1
        if self.signum is None:
            self.signum = signum
        if self.phase == TEARDOWN:
            return  # deleting what we rented is the one thing a cancel must not stop
        if self.phase in (CREATING, RUNNING) and self.count == 1:
            return  # the job acts on it at the next step
        # From here on the job unwinds to its teardown: a further signal must not raise again
        # in the middle of that.
        self.phase = TEARDOWN
        raise Abort(self.signum)

    def exit_code(self) -> int:
        assert self.signum is not None
        return 128 + self.signum
