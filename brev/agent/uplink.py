"""`brev agent run`: collect every interval, deliver to the plane, buffer through outages.

Reports are numbered (microseconds since the epoch, so a restarted agent still counts up).
While the plane cannot be reached they wait in order in a bounded buffer (a day at the default
interval), and are sent oldest first once it answers; the plane drops any number it has seen,
so a batch whose answer was lost may be sent again without being counted twice.

On a registered node (`node_home` given) every report also lists the instances whose working
directories exist, the plane's answer carries the GPU assignments to apply, and an answer that
the node was removed makes the agent uninstall the node.

Standard library only: on a node this runs from a bare venv that may have no internet.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import subprocess
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from brev.agent.collect import collect
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
        self.pending: deque[tuple[int, dict[str, Any]]] = deque(maxlen=MAX_BUFFERED)
        self.delivered = 0
        self._last_seq = 0
        # Set when an answer changed this node's instances: the plane should hear it at once.
        self.changed = False

    def add(self, report: dict[str, Any]) -> None:
        seq = max(time.time_ns() // 1000, self._last_seq + 1)
        self._last_seq = seq
        if self._node_home is not None:
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
            self._take_assignments(answer.get("assignments"), answer.get("node_principals"))
        return True

    def close(self) -> None:
        """Nothing stays open between requests; kept so callers need not know."""

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
            raise PlaneUnavailable(_describe(reason)) from None
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
        if status == 410 and _error_code(body) == "node_removed":
            raise NodeRemoved(text[:200])
        if 300 <= status < 400:  # see _NoRedirects
            raise PlaneUnavailable(f"HTTP {status}, a redirect: give the agent the plane's own URL")
        raise PlaneUnavailable(f"HTTP {status}")

    def _take_assignments(self, assignments: Any, node_principals: Any) -> None:
        if self._node_home is None or not isinstance(assignments, list):
            return
        principals = node_principals if isinstance(node_principals, list) else []
        try:
            changed = workdirs.apply(self._node_home, assignments, principals)
        except (workdirs.InvalidAssignment, OSError) as error:
            # A bad list must not stop the reports: the plane hears the instances as they are.
            log.error("cannot apply the plane's GPU assignments: %s", error)
            return
        if changed:
            log.info("instances on this node now: %s", ", ".join(workdirs.present(self._node_home)))
            self.changed = True


def _read(error: urllib.error.HTTPError) -> bytes:
    """The body of an error answer, and its connection closed."""
    try:
        return error.read()
    except (OSError, http.client.HTTPException, AttributeError):  # no body at all
        return b""
    finally:
        with contextlib.suppress(OSError, AttributeError):
            error.close()


def _error_code(body: bytes) -> str | None:
    """`code` of the plane's error body, {"error": {"code", "message", "fields"}}."""
    try:
        detail = json.loads(body).get("error")
    except (ValueError, AttributeError):
        return None
    code = detail.get("code") if isinstance(detail, dict) else None
    return code if isinstance(code, str) else None


def _describe(reason: object) -> str:
    if isinstance(reason, BaseException):
        text = str(reason)
        return f"{type(reason).__name__}: {text}" if text else type(reason).__name__
    return str(reason)


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
            if uplink.changed:
                uplink.changed = False
                next_sample = time.monotonic()  # report the new instances now
                continue
            wake = min(next_sample, next_attempt) if next_attempt else next_sample
            wait(max(0.05, wake - time.monotonic()), should_stop)
    finally:
        uplink.close()
    return uplink
