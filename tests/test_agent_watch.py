"""A node agent's long-poll for its assignments (brev.agent.watch) against a stand-in plane: a
change reaches the node and is reported at once, a stop ends a poll in flight, an older plane
without the route means reports only, an unwell plane is asked again with a back-off, and an
answer older than what was applied is never applied."""

from __future__ import annotations

import itertools
import json
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from brev import api
from brev.agent import uplink, watch
from brev.node import workdirs

TOKEN = "brev_agent_test_token"


def _assign(name: str, *indices: int) -> dict[str, Any]:
    return {"instance": name, "gpu_indices": list(indices), "gpu_uuids": [""] * len(indices)}


@dataclass
class Plane:
    """Reports and long-polls, as the plane answers them. `watch_status`: answer every
    long-poll with it instead (404: a plane older than the route)."""

    url: str = ""
    version: int = 1
    assignments: list[dict[str, Any]] = field(default_factory=list)
    watch_status: int | None = None
    reports: list[list[str]] = field(default_factory=list)  # each report's instances
    polls: list[tuple[float, dict[str, str]]] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def assign(self, *assignments: dict[str, Any]) -> None:
        with self.changed:
            self.assignments = list(assignments)
            self.version += 1
            self.changed.notify_all()

    def state(self) -> dict[str, Any]:
        return {"version": self.version, "assignments": self.assignments, "node_principals": []}


@pytest.fixture
def plane() -> Iterator[Plane]:
    plane = Plane()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            plane.reports += [r["report"].get("instances", []) for r in body["reports"]]
            seqs = [r["seq"] for r in body["reports"]]
            with plane.changed:
                answer = api.AgentReportsAccepted(
                    accepted=len(seqs),
                    last_seq=max(seqs),
                    assignments=[api.Assignment.model_validate(a) for a in plane.assignments],
                    node_principals=[],
                    assignments_version=plane.version,
                )
            self._send(200, answer.model_dump_json().encode())

        def do_GET(self) -> None:
            query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
            plane.polls.append((time.monotonic(), query))
            if plane.watch_status is not None:
                code = "node_removed" if plane.watch_status == 410 else "not_found"
                self._send(plane.watch_status, json.dumps({"error": {"code": code}}).encode())
                return
            after, deadline = int(query.get("after", -1)), time.monotonic() + float(query["wait"])
            with plane.changed:
                while plane.version == after and time.monotonic() < deadline:
                    plane.changed.wait(deadline - time.monotonic())
                answer = json.dumps(plane.state()).encode()
            self._send(200, answer)

        def _send(self, status: int, body: bytes) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:  # the agent hung up (a stop)
                pass

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    plane.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield plane
    with plane.changed:
        plane.version += 1000  # release polls still waiting
        plane.changed.notify_all()
    server.shutdown()
    server.server_close()


def _until(probe: Callable[[], object], what: str, seconds: float = 5) -> float:
    """Seconds until `probe()` held."""
    started = time.monotonic()
    while not probe():
        assert time.monotonic() - started < seconds, f"waited {seconds} s for {what}"
        time.sleep(0.005)
    return time.monotonic() - started


def _agent(plane: Plane, home: Path) -> tuple[threading.Event, threading.Thread]:
    """The agent's report loop, reporting every minute: anything sooner is the long-poll."""
    stop = threading.Event()
    thread = threading.Thread(
        target=uplink.run,
        args=(plane.url, TOKEN, 60),
        kwargs={
            "should_stop": stop.is_set,
            "collect_report": lambda: {"source": "none", "gpus": []},
            "node_home": home,
        },
        daemon=True,
    )
    thread.start()
    return stop, thread


def _watchers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "assignments-watch"]


def test_a_change_reaches_the_node_and_the_plane_at_once(plane: Plane, tmp_path: Path) -> None:
    stop, thread = _agent(plane, tmp_path)
    try:
        _until(lambda: plane.reports and len(plane.polls) >= 2, "a report, then a waiting poll")
        changed = time.monotonic()
        plane.assign(_assign("job", 1))
        _until(lambda: ["job"] in plane.reports, "the report of the new instance")
        took = time.monotonic() - changed
        assert took < 0.5, took  # not the minute of the report interval
        assert workdirs.present(tmp_path) == ["job"]
        assert "CUDA_VISIBLE_DEVICES=1" in (tmp_path / "instances/job/.brev/env").read_text()
        waiting = {"after": str(plane.version), "wait": "25"}
        _until(lambda: plane.polls[-1][1] == waiting, "the next poll, from the new version")
        plane.assign()
        _until(lambda: plane.reports[-1] == [], "the report of the deletion")
        assert workdirs.present(tmp_path) == []
    finally:
        stopping = time.monotonic()
        stop.set()
        thread.join(timeout=5)
    # the stop ended the poll in flight, not 25 s later
    assert not thread.is_alive() and not _watchers()
    assert time.monotonic() - stopping < 2


def test_a_plane_without_the_long_poll_means_reports_only(
    plane: Plane, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    plane.watch_status = 404  # what a plane older than the route answers
    plane.assignments = [_assign("old", 0)]
    caplog.set_level("INFO", logger="brev.agent")
    stop, thread = _agent(plane, tmp_path)
    try:
        _until(lambda: ["old"] in plane.reports, "the assignment from a report's answer")
        time.sleep(1.5)
        assert len(plane.polls) == 1 and not _watchers()  # asked once, then quiet
    finally:
        stop.set()
        thread.join(timeout=5)
    warnings = [r for r in caplog.records if r.levelname != "INFO"]
    assert not warnings and "offers no long-poll" in caplog.text


class _Holder:
    def __init__(self) -> None:
        self.version: int | None = None
        self.taken: list[tuple[int | None, bool]] = []
        self.woken = 0

    @property
    def assignments_version(self) -> int | None:
        return self.version

    def take_assignments(
        self, assignments: Any, node_principals: Any, version: int | None, *, reset: bool = False
    ) -> bool:
        self.taken.append((version, reset))
        self.version = version
        return True

    def wake(self) -> None:
        self.woken += 1


def test_an_unwell_plane_is_asked_again_with_a_back_off(
    plane: Plane, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watch, "FIRST_BACKOFF_S", 0.25)  # 1 s on a node
    plane.watch_status = 503
    holder = _Holder()
    watcher = watch.Watcher(plane.url, TOKEN, holder)
    watcher.start()
    try:
        time.sleep(1.0)
        asked = [at for at, _ in plane.polls]
        gaps = [b - a for a, b in itertools.pairwise(asked)]
        assert len(asked) == 3 and 0.2 < gaps[0] < 0.4 and 0.45 < gaps[1] < 0.7, gaps
        plane.watch_status = None
        _until(lambda: holder.taken, "an answer once the plane is well", 3)
        assert holder.taken[0] == (plane.version, False) and watcher.alive
    finally:
        watcher.stop()
    assert not watcher.alive


def test_a_removed_node_wakes_the_report_loop(plane: Plane) -> None:
    """Its report hears 410 too, and uninstalls the node."""
    plane.watch_status = 410
    holder = _Holder()
    watcher = watch.Watcher(plane.url, TOKEN, holder)
    watcher.start()
    _until(lambda: not watcher.alive, "the watcher to end")
    assert holder.woken == 1 and holder.taken == [] and len(plane.polls) == 1


def test_an_answer_older_than_what_was_applied_is_not_applied(tmp_path: Path) -> None:
    link = uplink.Uplink("http://127.0.0.1:9", TOKEN, node_home=tmp_path)
    assert link.take_assignments([_assign("a"), _assign("b")], [], 5)
    assert link.woken() and not link.woken()  # once per change
    # a report's answer computed before version 5 arrives after it: b must stay
    assert not link.take_assignments([_assign("a")], [], 4)
    assert not link.take_assignments([_assign("a")], [], 5)
    assert workdirs.present(tmp_path) == ["a", "b"] and link.assignments_version == 5
    assert link.take_assignments([_assign("b")], [], 6)
    # the plane's database was replaced: its lower version is the truth now
    assert link.take_assignments([_assign("c")], [], 2, reset=True)
    assert workdirs.present(tmp_path) == ["c"] and link.assignments_version == 2
    # a plane that numbers nothing: every answer applies, as before versions
    old = uplink.Uplink("http://127.0.0.1:9", TOKEN, node_home=tmp_path / "old")
    (tmp_path / "old").mkdir()
    assert old.take_assignments([_assign("x")], [], None)
    assert old.take_assignments([], [], None) and old.assignments_version is None


def test_the_apply_lock_keeps_the_two_threads_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The long-poll and the report loop apply through one lock: never both at once, and
    whatever order they come in, the newest version is what stays."""
    link = uplink.Uplink("http://127.0.0.1:9", TOKEN, node_home=tmp_path)
    inside, most = [0], [0]
    real_apply = workdirs.apply

    def apply(*args: Any) -> bool:
        inside[0] += 1
        most[0] = max(most[0], inside[0])
        time.sleep(0.01)
        inside[0] -= 1
        return real_apply(*args)

    def take(version: int) -> None:
        link.take_assignments([_assign(f"i{version}")], [], version)

    monkeypatch.setattr(workdirs, "apply", apply)
    threads = [threading.Thread(target=take, args=(v,)) for v in range(1, 21)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most[0] == 1
    assert link.assignments_version == 20 and workdirs.present(tmp_path) == ["i20"]
