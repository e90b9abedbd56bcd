"""How the report writer hands a batch's answers back (brev.server.ingest): one wake-up of the
waiting event loop a batch, each request its own answer, and no error for a request that
went away or a loop that closed."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from brev import api
from brev.server.errors import Unauthenticated
from brev.server.ingest import Answer, _answer, _Item

_BODY = api.AgentReports(reports=[api.AgentReportIn(seq=1, report={"gpus": []})])


class _WakeUps:
    """Counts a loop's call_soon_threadsafe: each call is one wake-up."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.count = 0
        self._call = loop.call_soon_threadsafe
        loop.call_soon_threadsafe = self._counted  # type: ignore[method-assign,assignment]

    def _counted(self, callback: Any, *args: Any) -> Any:
        self.count += 1
        return self._call(callback, *args)


def test_a_batch_wakes_its_loop_once_and_each_request_gets_its_own_answer() -> None:
    async def scenario() -> tuple[int, list[Answer]]:
        loop = asyncio.get_running_loop()
        wake_ups = _WakeUps(loop)
        items = [_Item("t", _BODY, loop.create_future()) for _ in "abc"]
        refused = Unauthenticated("invalid token")
        answers: list[tuple[_Item, Answer]] = [
            (items[0], api.AgentReportsAccepted(accepted=1, last_seq=1)),
            (items[1], refused),
            (items[2], api.AgentReportsAccepted(accepted=0, last_seq=7)),
        ]
        writer = threading.Thread(target=_answer, args=(answers,))  # as the plane's writer
        writer.start()
        results = await asyncio.gather(*(item.done for item in items), return_exceptions=True)
        writer.join()
        return wake_ups.count, results

    wake_ups, results = asyncio.run(scenario())
    assert wake_ups == 1
    assert results[0] == api.AgentReportsAccepted(accepted=1, last_seq=1)
    assert isinstance(results[1], Unauthenticated)
    assert results[2] == api.AgentReportsAccepted(accepted=0, last_seq=7)


def test_a_request_that_went_away_is_skipped(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> object:
        loop = asyncio.get_running_loop()
        gone, waiting = (_Item("t", _BODY, loop.create_future()) for _ in "ab")
        gone.done.cancel()  # its client disconnected while the batch was written
        accepted = api.AgentReportsAccepted(accepted=1, last_seq=1)
        await asyncio.to_thread(_answer, [(gone, accepted), (waiting, accepted)])
        return await asyncio.wait_for(waiting.done, timeout=5)

    assert asyncio.run(scenario()) == api.AgentReportsAccepted(accepted=1, last_seq=1)
    assert "InvalidStateError" not in caplog.text


def test_answers_for_a_closed_loop_are_dropped_without_error() -> None:
    loop = asyncio.new_event_loop()
    item = _Item("t", _BODY, loop.create_future())
    loop.close()
    _answer([(item, api.AgentReportsAccepted(accepted=1, last_seq=1))])  # raises nothing
