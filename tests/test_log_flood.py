"""One log line per distinct failure, with a count (issue 13, item 6): every unhandled error was
logged twice (ours, then Starlette raised it on to uvicorn, which logged it again), on every
request that met it, and a failing reconciler pass wrote a traceback every second."""

from __future__ import annotations

import logging
import threading

import pytest

from brev.server.log_dedup import DedupLog, raise_site
from brev.server.reconciler import health, loop_errors
from brev.server.services import orgs
from tests.conftest import Plane


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _messages(caplog: pytest.LogCaptureFixture, name: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == name]


def test_a_repeated_failure_is_one_line_then_a_count(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    dedup = DedupLog(logging.getLogger("test.dedup"), every=60, clock=clock)
    caplog.set_level(logging.INFO, logger="test.dedup")
    error = _raised(ValueError("bad row 1"))
    assert dedup.log(logging.ERROR, "k", "pass failed: %s", "row 1", exc_info=error)
    for n in range(2, 39):
        clock.now += 1
        assert not dedup.log(logging.ERROR, "k", "pass failed: %s", f"row {n}", exc_info=error)
    clock.now += 30  # a window ended: the next occurrence of anything brings the summary
    dedup.log(logging.ERROR, "other", "something else")
    assert _messages(caplog, "test.dedup") == [
        "pass failed: row 1",
        "pass failed: row 38; 37 more times in the last 67 s",
        "something else",
    ]
    with_traceback = [r for r in caplog.records if r.exc_info]
    assert [r.getMessage() for r in with_traceback] == ["pass failed: row 1"]


def test_a_failure_that_went_quiet_is_news_again(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    dedup = DedupLog(logging.getLogger("test.dedup"), every=60, clock=clock)
    caplog.set_level(logging.INFO, logger="test.dedup")
    dedup.log(logging.ERROR, "k", "failed", exc_info=_raised(ValueError("x")))
    clock.now += 61
    dedup.log(logging.ERROR, "k", "failed", exc_info=_raised(ValueError("x")))
    assert [bool(r.exc_info) for r in caplog.records] == [True, True]


def test_flush_says_the_last_count(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    dedup = DedupLog(logging.getLogger("test.dedup"), every=60, clock=clock)
    caplog.set_level(logging.INFO, logger="test.dedup")
    for _ in range(3):
        clock.now += 1
        dedup.log(logging.WARNING, "k", "busy")
    dedup.flush()
    dedup.flush()  # nothing new: nothing said
    assert _messages(caplog, "test.dedup") == ["busy", "busy; 2 more times in the last 2 s"]


def test_the_same_failure_is_the_same_raise_site() -> None:
    def fail(n: int) -> None:
        raise KeyError(n)

    sites = set()
    for n in range(3):
        try:
            fail(n)
        except KeyError as error:
            sites.add(raise_site(error))
    assert len(sites) == 1
    assert next(iter(sites))[0] == "KeyError"


def _raised(error: Exception) -> Exception:
    try:
        raise error
    except Exception as caught:
        return caught


# -- requests -----------------------------------------------------------------------------


def test_an_unhandled_error_is_a_json_500_logged_once_with_its_traceback(
    plane: Plane, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("a bug in list_orgs")

    monkeypatch.setattr(orgs, "list_orgs", broken)
    caplog.set_level(logging.INFO)
    # raise_server_exceptions (the default): the error would reach this test had it gone on
    # past our handler to Starlette's, and from there to uvicorn's log.
    http = plane.http(plane.admin_token)
    for _ in range(5):
        answer = http.get("/api/v1/orgs")
        assert answer.status_code == 500
        assert answer.json()["error"]["code"] == "internal_error"
        assert "bug" not in answer.text  # the details are the log's
    records = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(records) == 1, [r.getMessage() for r in records]
    assert records[0].exc_info is not None
    assert records[0].getMessage() == (
        "unhandled error in GET /api/v1/orgs (RuntimeError: a bug in list_orgs)"
    )
    assert http.get("/api/v1/orgs/default").status_code == 200


# -- the reconciler ---------------------------------------------------------------------


def test_a_failing_reconciler_pass_is_one_traceback_and_a_count(
    plane: Plane, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    passes = threading.Semaphore(0)

    def broken(*_: object) -> None:
        passes.release()
        raise RuntimeError("a bug in a pass")

    monkeypatch.setattr(health, "mark_silent_instances", broken)
    # What the process's reconciler has said before (the other backend's run) is forgotten.
    monkeypatch.setattr(loop_errors, "_repeats", DedupLog(loop_errors.log))
    caplog.set_level(logging.INFO, logger="brev.reconciler")
    reconciler = plane.reconciler
    reconciler._interval = 0.01
    reconciler.start()
    try:
        for _ in range(20):
            assert passes.acquire(timeout=30)
    finally:
        reconciler.stop()
    failed = [r for r in caplog.records if r.getMessage().startswith("reconcile pass failed")]
    assert len(failed) == 1
    assert failed[0].exc_info is not None


def test_passes_back_off_only_while_the_database_is_away() -> None:
    pauses = [loop_errors.pause_between_passes(1.0, n) for n in range(7)]
    assert pauses == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0, 5.0]
    assert loop_errors.pause_between_passes(30.0, 3) == 30.0  # never shorter than the interval
    assert loop_errors.pause_between_passes(0.0, 0) == 0.0
