"""`brev agent run`: collect every interval, deliver to the plane, buffer through outages.

Reports are numbered (microseconds since the epoch, so a restarted agent still counts up).
While the plane cannot be reached they wait in order in a bounded buffer (a day at the default
interval), and are sent oldest first once it answers; the plane drops any number it has seen,
so a batch whose answer was lost may be sent again without being counted twice.

On a registered node (`node_home` given) every report also lists the instances whose working
directories exist, the plane's answer carries the GPU assignments to apply, and an answer that
the node was removed makes the agent uninstall the node. A second thread long-polls the plane
for the assignments (brev.agent.watch), so that a change reaches the node at once instead of
with the next report's answer; both apply under one lock, newest version only.

Standard library only: on a node this runs from a bare venv that may have no internet.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from brev.agent.collect import collect
from brev.agent.plane_answers import describe, error_code
from brev.agent.watch import Watcher
from brev.node import workdirs

log = logging.getLogger("brev.agent")

MAX_BUFFERED = 8640  # 24 h at 10 s
MAX_BATCH = 500
MAX_BACKOFF_S = 60.0
REPORTS_PATH = "/api/v1/agent/reports"
UNINSTALL = Path("bin") / "brev-node-uninstall"
# How long a stop request may wait: the loop sleeps in slices this long.
_STOP_CHECK_S = 0.5


class PlaneUnavailable(Exception):
    """The plane could not be reached, or answered with an error: try again later."""


class NodeRemoved(Exception):
    """The plane answered that this node was removed from it."""


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """The token is a header: urllib would carry it along a redirect to any other host."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class Uplink:
    def __init__(
        self,
        url: str,
        token: str,
        *,
        interval: float = 10.0,
        timeout: float = 10.0,
        node_home: Path | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"the plane's URL must start with http:// or https://: {url!r}")
        self._interval = interval
        self._url = url.rstrip("/") + REPORTS_PATH
        self._token = token
        self._timeout = timeout
        self._node_home = node_home
        handlers: list[urllib.request.BaseHandler] = [_NoRedirects()]
        if url.startswith("https://"):
            import ssl

            handlers.append(urllib.request.HTTPSHandler(context=ssl.create_default_context()))
        self._opener = urllib.request.build_opener(*handlers)
        self._base_url = url
        # The report loop's state (pending, delivered, _last_seq) is its own; what the watcher
        # thread shares with it is below, under _lock.
        self.pending: deque[tuple[int, dict[str, Any]]] = deque(maxlen=MAX_BUFFERED)
        self.delivered = 0
        self._last_seq = 0
        # Held while the node's directories are read or changed: never by two threads at once.
        self._lock = threading.Lock()
        # The assignments version last applied; None until a plane that numbers them answers.
        self._version: int | None = None
        # Set when an answer changed this node's instances (or the plane must be asked now):
        # the report loop wakes and reports at once.
        self._wake = threading.Event()
        self._watcher: Watcher | None = None

    def add(self, report: dict[str, Any]) -> None:
        seq = max(time.time_ns() // 1000, self._last_seq + 1)
        self._last_seq = seq
        if self._node_home is not None:
            with self._lock:
                report = {**report, "instances": workdirs.present(self._node_home)}
        if len(self.pending) == self.pending.maxlen:
            log.warning("buffer full: dropping the oldest report")
        self.pending.append((seq, report))

    def flush(self) -> bool:
        """Send what waits, oldest first; True when nothing is left. Raises PlaneUnavailable,
        NodeRemoved, or PermissionError when the plane refuses this agent's token."""
        while self.pending:
            batch = list(self.pending)[:MAX_BATCH]
            body = {
                "reports": [{"seq": seq, "report": report} for seq, report in batch],
                "interval_seconds": self._interval,
            }
            answer = self._post(body)
            try:
                accepted = int(answer["accepted"])
            except (KeyError, TypeError, ValueError):
                raise PlaneUnavailable("an answer without 'accepted'") from None
            for _ in batch:
                self.pending.popleft()
            self.delivered += accepted
            log.info("delivered %d report(s), seq %d..%d", len(batch), batch[0][0], batch[-1][0])
            version = answer.get("assignments_version")
            self.take_assignments(
                answer.get("assignments"),
                answer.get("node_principals"),
                version if type(version) is int else None,
            )
        return True

    def watch(self) -> None:
        """On a node: long-poll for assignments on a thread of its own, until close()."""
        if self._node_home is None or self._watcher is not None:
            return
        try:
            self._watcher = Watcher(self._base_url, self._token, self)
        except ValueError as error:  # a URL urllib takes and http.client cannot: reports only
            log.error("no long-poll for assignments: %s", error)
            return
        self._watcher.start()

    def close(self) -> None:
        """Stop the long-poll, and the request it waits in."""
        if self._watcher is not None:
            self._watcher.stop()

    @property
    def assignments_version(self) -> int | None:
        with self._lock:
            return self._version

    def wake(self) -> None:
        """Make the report loop sample and report now."""
        self._wake.set()

    def woken(self) -> bool:
        """True once after each wake()."""
        if self._wake.is_set():
            self._wake.clear()
            return True
        return False

    def sleep(self, seconds: float, should_stop: Callable[[], bool]) -> None:
        """Up to `seconds`; less after a wake() or once `should_stop()` turns true."""
        deadline = time.monotonic() + seconds
        while not should_stop() and not self._wake.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._wake.wait(min(left, _STOP_CHECK_S))

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(  # noqa: S310 (__init__ allows http(s) only)
            self._url,
            data=json.dumps(body).encode(),
            headers={
                "Authorization": f"Bearer {self._token}",
                "Content-Type": "application/json",
                "Accept": "application/json",
            },
            method="POST",
        )
        try:
            with self._opener.open(request, timeout=self._timeout) as response:
                text = response.read()
        except urllib.error.HTTPError as error:
            self._refused(error.code, _read(error))
        except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
            # URLError wraps refused connections and DNS failures; OSError covers timeouts
            # and resets while reading; HTTPException a peer that closed mid-answer.
            reason = getattr(error, "reason", None) or error
            raise PlaneUnavailable(describe(reason)) from None
        try:
            answer = json.loads(text)
        except ValueError:
            raise PlaneUnavailable("an answer that is not JSON") from None
        if not isinstance(answer, dict):
            raise PlaneUnavailable("an answer that is not a JSON object")
        return answer

    def _refused(self, status: int, body: bytes) -> NoReturn:
        text = body.decode(errors="replace")
        if status in (401, 403, 404):
            raise PermissionError(f"the plane refused this agent: {text[:200]}")
        if status == 410 and error_code(body) == "node_removed":
            raise NodeRemoved(text[:200])
        if 300 <= status < 400:  # see _NoRedirects
            raise PlaneUnavailable(f"HTTP {status}, a redirect: give the agent the plane's own URL")
        raise PlaneUnavailable(f"HTTP {status}")

    def take_assignments(
        self, assignments: Any, node_principals: Any, version: int | None, *, reset: bool = False
    ) -> bool:
        """Apply the plane's assignments at `version` (None: a plane that numbers none) unless
        what was applied is as new; True when the node's instances changed.

        Two threads bring answers (the reports' and the long-poll's), and one asked earlier
        may arrive later: applied, it would bring back a deleted instance's directory, or
        remove a new one's with the files just copied into it. `reset`: the plane's versions
        went back (its database was replaced); take this one whatever it is."""
        if self._node_home is None or not isinstance(assignments, list):
            return False
        principals = node_principals if isinstance(node_principals, list) else []
        with self._lock:
            known = self._version
            if version is not None and known is not None and version <= known and not reset:
                return False
            if version is not None:
                # Taken even if the list is refused below: a bad list gets no better until
                # the next change, and the long-poll must wait for that, not ask again.
                self._version = version
            try:
                changed = workdirs.apply(self._node_home, assignments, principals)
            except (workdirs.InvalidAssignment, OSError) as error:
                # A bad list must not stop the reports: the plane hears the instances as they are.
                log.error("cannot apply the plane's GPU assignments: %s", error)
                return False
            if changed:
                now = ", ".join(workdirs.present(self._node_home)) or "none"
                log.info("instances on this node now: %s", now)
        if changed:
            self._wake.set()
        return changed


def _read(error: urllib.error.HTTPError) -> bytes:
    """The body of an error answer, and its connection closed."""
    try:
        return error.read()
    except (OSError, http.client.HTTPException, AttributeError):  # no body at all
        return b""
    finally:
        with contextlib.suppress(OSError, AttributeError):
            error.close()


def wait(seconds: float, should_stop: Callable[[], bool]) -> None:
    """Sleep up to `seconds`, returning soon after `should_stop()` turns true."""
    deadline = time.monotonic() + seconds
    while not should_stop():
        left = deadline - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, _STOP_CHECK_S))


def uninstall_node(node_home: Path) -> None:
    """Start the node's uninstaller in a session of its own: it stops this agent and its
    supervisor, and must outlive them."""
    program = node_home / UNINSTALL
    if not program.is_file():
        log.error("no %s: nothing to uninstall with", program)
        return
    subprocess.Popen(
        [str(program)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
        cwd="/",
    )


def run(
    url: str,
    token: str,
    interval: float,
    *,
    should_stop: Callable[[], bool] = lambda: False,
    collect_report: Callable[[], dict[str, Any]] = lambda: collect().as_json(),
    node_home: Path | None = None,
) -> Uplink:
    uplink = Uplink(url, token, interval=interval, node_home=node_home)
    uplink.watch()
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
                except NodeRemoved:
                    log.warning("the plane removed this node: uninstalling the agent")
                    if node_home is not None:
                        uninstall_node(node_home)
                    return uplink
                except PlaneUnavailable as error:
                    backoff = min(max(interval, backoff * 2 or interval), MAX_BACKOFF_S)
                    log.warning(
                        "plane unreachable (%s); %d report(s) buffered, retry in %.0f s",
                        error,
                        len(uplink.pending),
                        backoff,
                    )
                    next_attempt = now + backoff
            if uplink.woken():
                # The node's instances changed: report them now (that report makes a new
                # instance `running`), the plane answered, so skip any back-off.
                next_sample, next_attempt = time.monotonic(), 0.0
                continue
            wake = min(next_sample, next_attempt) if next_attempt else next_sample
            uplink.sleep(max(0.05, wake - time.monotonic()), should_stop)
    finally:
        uplink.close()
    return uplink
