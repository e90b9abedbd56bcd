"""A node agent's long-poll for its assignments, on a thread of its own beside the report loop.

`GET /api/v1/agent/assignments?after=V&wait=25`: the plane answers as soon as what the node
must host differs from version V (a `brev create`, stop, start or delete on it), else after 25
s with the same version. Each answer goes to the uplink, which applies it (under its lock, and
only when it is newer than what it applied) and, when that changed the node's instances, wakes
the report loop to tell the plane at once: that report is what makes a new instance `running`.

A plane without the route (404, 405, 501: older than this agent) ends the thread quietly; the
assignments then come with each report's answer, as before. An unreachable plane is asked
again after a back-off, 410 `node_removed` wakes the report loop (its report hears the same
and uninstalls the node), and `stop()` ends a poll in flight by shutting its socket.

Standard library only (http.client, not urllib: its socket can be shut from another thread).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import socket
import threading
import time
import urllib.parse
from typing import Any, Protocol

from brev.agent.plane_answers import describe, error_code

log = logging.getLogger("brev.agent")

WATCH_PATH = "/api/v1/agent/assignments"
WAIT_S = 25.0  # the plane holds a poll 30 s at most
CONNECT_TIMEOUT_S = 10.0
# Beyond the wait, for the plane to answer: a poll with no answer by then is a lost one.
ANSWER_MARGIN_S = 15.0
# An unchanged answer that came this fast was not a wait (a plane shutting down, a proxy that
# cuts connections): the next poll waits this long first, so the loop never spins.
MIN_SPACING_S = 1.0
FIRST_BACKOFF_S = 1.0  # then doubled, up to
MAX_BACKOFF_S = 60.0
NOT_OFFERED = (404, 405, 501)


class Holder(Protocol):
    """What the watcher feeds (brev.agent.uplink.Uplink)."""

    @property
    def assignments_version(self) -> int | None: ...

    def take_assignments(
        self, assignments: Any, node_principals: Any, version: int | None, *, reset: bool = False
    ) -> bool: ...

    def wake(self) -> None: ...


class _NotOffered(Exception):
    pass


class _Removed(Exception):
    pass


class _Failed(Exception):
    pass


class Watcher:
    def __init__(self, url: str, token: str, holder: Holder) -> None:
        split = urllib.parse.urlsplit(url)
        if split.scheme not in ("http", "https") or not split.hostname:
            raise ValueError(f"the plane's URL must be http(s)://HOST...: {url!r}")
        self._https = split.scheme == "https"
        self._host = split.hostname
        self._port = split.port
        self._path = split.path.rstrip("/") + WATCH_PATH
        self._token = token
        self._holder = holder
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._connection: http.client.HTTPConnection | None = None
        self._thread = threading.Thread(target=self._run, name="assignments-watch", daemon=True)
        self.polls = 0  # answered polls, for tests and logs

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """End the thread, and the poll it waits in, now."""
        self._stopped.set()
        with self._lock:
            connection = self._connection
        if connection is not None and connection.sock is not None:
            with contextlib.suppress(OSError):  # wakes the read blocked on it
                connection.sock.shutdown(socket.SHUT_RDWR)
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        backoff = 0.0
        while not self._stopped.is_set():
            after = self._holder.assignments_version
            asked = time.monotonic()
            try:
                answer = self._poll(after)
            except _NotOffered as error:
                log.info("the plane offers no long-poll (%s): assignments come with reports", error)
                return
            except _Removed:
                self._holder.wake()  # its report hears 410 too, and uninstalls the node
                return
            except _Failed as error:
                if self._stopped.is_set():
                    return
                backoff = min(max(FIRST_BACKOFF_S, backoff * 2), MAX_BACKOFF_S)
                log.info("waiting for assignments failed (%s); again in %.0f s", error, backoff)
                self._stopped.wait(backoff)
                continue
            backoff = 0.0
            self.polls += 1
            version = answer["version"]
            # A version below the one the agent had: the plane's database was restored or
            # replaced. Its answer is the truth now, and the versions count from it.
            reset = after is not None and version < after
            self._holder.take_assignments(
                answer.get("assignments"), answer.get("node_principals"), version, reset=reset
            )
            if version == after and time.monotonic() - asked < MIN_SPACING_S:
                self._stopped.wait(MIN_SPACING_S)

    def _poll(self, after: int | None) -> dict[str, Any]:
        query = {"wait": f"{WAIT_S:g}"} | ({} if after is None else {"after": str(after)})
        connection = self._connect()
        try:
            connection.request(
                "GET",
                f"{self._path}?{urllib.parse.urlencode(query)}",
                headers={"Authorization": f"Bearer {self._token}", "Accept": "application/json"},
            )
            response = connection.getresponse()
            status, body = response.status, response.read()
        except (OSError, http.client.HTTPException) as error:
            raise _Failed(describe(error)) from None
        finally:
            with self._lock:
                self._connection = None
            connection.close()
        return _answer(status, body)

    def _connect(self) -> http.client.HTTPConnection:
        connection: http.client.HTTPConnection
        if self._https:
            import ssl

            context = ssl.create_default_context()
            connection = http.client.HTTPSConnection(
                self._host, self._port, timeout=CONNECT_TIMEOUT_S, context=context
            )
        else:
            connection = http.client.HTTPConnection(
                self._host, self._port, timeout=CONNECT_TIMEOUT_S
            )
        try:
            connection.connect()
        except OSError as error:
            connection.close()
            raise _Failed(describe(error)) from None
        assert connection.sock is not None
        connection.sock.settimeout(WAIT_S + ANSWER_MARGIN_S)
        with self._lock:
            if self._stopped.is_set():  # stop() ran while connecting: it saw no socket
                connection.close()
                raise _Failed("stopping")
            self._connection = connection
        return connection


def _answer(status: int, body: bytes) -> dict[str, Any]:
    if status in NOT_OFFERED:
        raise _NotOffered(f"HTTP {status}")
    if status == 410 and error_code(body) == "node_removed":
        raise _Removed()
    if status != 200:  # 401/403 included: the report loop handles a refused token
        raise _Failed(f"HTTP {status}")
    try:
        answer = json.loads(body)
    except ValueError:
        raise _Failed("an answer that is not JSON") from None
    version = answer.get("version") if isinstance(answer, dict) else None
    if type(version) is not int:
        raise _Failed("an answer without a version")
    return answer  # type: ignore[no-any-return]
