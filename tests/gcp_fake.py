"""A small Compute Engine REST endpoint on 127.0.0.1, for the real google-cloud-compute client.

There is no official emulator. This speaks just enough of the v1 REST API for the GCP provider:
projects.get; instances insert (honouring requestId), get, list and aggregatedList (with a
`labels.KEY=VALUE` filter and paging), start, stop, delete; zoneOperations get and wait. State
changes are instant (insert → RUNNING, stop → TERMINATED, start → RUNNING, delete → gone)
unless `operation_polls` keeps operations RUNNING for a few polls.

Faults: `fail_next_insert` makes the next insert in a zone fail in its operation (how GCP
reports a stockout or a quota), `fail_next` answers the next matching request with an HTTP
error. Every request is recorded in `requests` for tests to inspect.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.local_http import LocalHttpServer

_BASE = "/compute/v1/projects/"
_ROUTES = [
    (re.compile(rf"^{_BASE}(?P<project>[^/]+)$"), "project"),
    (re.compile(rf"^{_BASE}(?P<project>[^/]+)/aggregated/instances$"), "aggregated"),
    (re.compile(rf"^{_BASE}(?P<project>[^/]+)/zones/(?P<zone>[^/]+)/instances$"), "instances"),
    (
        re.compile(rf"^{_BASE}(?P<project>[^/]+)/zones/(?P<zone>[^/]+)/instances/(?P<name>[^/]+)$"),
        "instance",
    ),
    (
        re.compile(
            rf"^{_BASE}(?P<project>[^/]+)/zones/(?P<zone>[^/]+)/instances/(?P<name>[^/]+)"
            r"/(?P<verb>start|stop)$"
        ),
        "verb",
    ),
    (
        re.compile(
            rf"^{_BASE}(?P<project>[^/]+)/zones/(?P<zone>[^/]+)/operations/(?P<op>[^/]+?)"
            r"(?P<wait>/wait)?$"
        ),
        "operation",
    ),
]
_FILTER = re.compile(r'labels\.([a-z0-9_-]+)\s*=\s*"?([a-z0-9_-]*)"?')


class _HttpError(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    body: dict[str, Any] | None


@dataclass(frozen=True)
class _HttpFault:
    status: int
    reason: str
    message: str
    method: str | None
    path_contains: str | None


class FakeCompute(LocalHttpServer):
    """Start with `with FakeCompute() as fake:`; point the client at `fake.url`."""

    def __init__(self, project: str = "test-project") -> None:
        self.project = project
        self.requests: list[RecordedRequest] = []
        self.instances: dict[tuple[str, str], dict[str, Any]] = {}  # (zone, name) -> resource
        self.operation_polls = 0  # new operations answer RUNNING to this many polls first
        self.page_size = 500  # aggregatedList pages; small values exercise the client's pager
        self._operations: dict[tuple[str, str], dict[str, Any]] = {}
        self._pending_polls: dict[tuple[str, str], int] = {}
        self._request_ids: dict[tuple[str, str], str] = {}  # (zone, requestId) -> operation
        self._insert_faults: dict[str, tuple[str, int, str]] = {}
        self._http_faults: list[_HttpFault] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        super().__init__()

    # -- faults and setup ------------------------------------------------------------------------

    def fail_next_insert(
        self, zone: str, code: str, *, http_status: int = 503, message: str | None = None
    ) -> None:
        """The next insert in `zone` is accepted, and its operation ends with this error."""
        text = message or f"{code}: the operation failed in zone {zone}"
        self._insert_faults[zone] = (code, http_status, text)

    def fail_next(
        self,
        status: int,
        *,
        reason: str = "backendError",
        message: str = "injected failure",
        method: str | None = None,
        path_contains: str | None = None,
    ) -> None:
        """The next request matching `method` and `path_contains` gets this HTTP error."""
        self._http_faults.append(_HttpFault(status, reason, message, method, path_contains))

    def add_instance(self, zone: str, name: str, labels: dict[str, str]) -> None:
        """An instance made by someone else (no insert, no operation)."""
        with self._lock:
            self._store(zone, {"name": name, "machineType": "n1-standard-1", "labels": labels})

    def bodies(self, method: str, path_contains: str) -> list[dict[str, Any]]:
        return [
            r.body or {}
            for r in self.requests
            if r.method == method and path_contains in r.path and r.body is not None
        ]

    # -- the API ---------------------------------------------------------------------------------

    def handle(
        self, method: str, path: str, query: dict[str, str], body: dict[str, Any] | None
    ) -> dict[str, Any]:
        with self._lock:
            self.requests.append(RecordedRequest(method, path, query, body))
            for fault in self._http_faults:
                if (fault.method in (None, method)) and (fault.path_contains or "") in path:
                    self._http_faults.remove(fault)
                    raise _HttpError(fault.status, fault.reason, fault.message)
            for pattern, kind in _ROUTES:
                match = pattern.match(path)
                if match is None:
                    continue
                params = match.groupdict()
                if params["project"] != self.project:
                    raise _HttpError(
                        404, "notFound", f"The project {params['project']} was not found"
                    )
                return self._route(kind, method, params, query, body)
            raise _HttpError(404, "notFound", f"no route for {method} {path}")

    def _route(
        self,
        kind: str,
        method: str,
        params: dict[str, Any],
        query: dict[str, str],
        body: dict[str, Any] | None,
    ) -> dict[str, Any]:
        zone, name = params.get("zone", ""), params.get("name", "")
        if kind == "project" and method == "GET":
            return {"kind": "compute#project", "name": self.project, "id": "1234"}
        if kind == "aggregated" and method == "GET":
            return self._aggregated(query)
        if kind == "instances" and method == "GET":
            found = [i for (z, _), i in self.instances.items() if z == zone]
            return {"items": [i for i in found if self._matches(i, query.get("filter", ""))]}
        if kind == "instances" and method == "POST":
            return self._insert(zone, query.get("requestId"), body or {})
        if kind == "instance" and method == "GET":
            return self._instance(zone, name)
        if kind == "instance" and method == "DELETE":
            self._instance(zone, name)
            del self.instances[(zone, name)]
            return self._operation(zone, "delete", name)
        if kind == "verb" and method == "POST":
            self._instance(zone, name)["status"] = (
                "RUNNING" if params["verb"] == "start" else "TERMINATED"
            )
            return self._operation(zone, params["verb"], name)
        if kind == "operation":
            key = (zone, params["op"])
            if key not in self._operations:
                raise _HttpError(404, "notFound", f"operation {params['op']} was not found")
            if self._pending_polls.get(key, 0) > 0:
                self._pending_polls[key] -= 1
                return {**self._operations[key], "status": "RUNNING", "progress": 50}
            return self._operations[key]
        raise _HttpError(400, "badRequest", f"{method} is not supported here")

    def _insert(self, zone: str, request_id: str | None, body: dict[str, Any]) -> dict[str, Any]:
        if request_id and (zone, request_id) in self._request_ids:
            return self._operations[(zone, self._request_ids[(zone, request_id)])]
        name = str(body.get("name", ""))
        if not name or not body.get("machineType"):
            raise _HttpError(400, "invalid", "Invalid value for field 'resource': name and type")
        if (zone, name) in self.instances:
            message = f"The resource '{self._path(zone, name)}' already exists"
            raise _HttpError(409, "alreadyExists", message)
        fault = self._insert_faults.pop(zone, None)
        if fault is None:
            self._store(zone, body)
        operation = self._operation(zone, "insert", name, fault)
        if request_id:
            self._request_ids[(zone, request_id)] = operation["name"]
        return operation

    def _store(self, zone: str, body: dict[str, Any]) -> None:
        number = next(self._ids)
        prefix = f"https://www.googleapis.com{_BASE}{self.project}/zones/{zone}"
        nics = []
        for nic in body.get("networkInterfaces") or [{}]:
            configs = [{**c, "natIP": f"203.0.113.{number}"} for c in nic.get("accessConfigs", [])]
            nics.append({**nic, "networkIP": f"10.0.0.{number}", "accessConfigs": configs})
        self.instances[(zone, body["name"])] = {
            **body,
            "id": str(1000 + number),
            "status": "RUNNING",
            "zone": prefix,
            "selfLink": f"{prefix}/instances/{body['name']}",
            "machineType": f"{prefix}/machineTypes/{body['machineType'].rpartition('/')[2]}",
            "networkInterfaces": nics,
            "creationTimestamp": "2024-05-01T12:00:00.000-07:00",
        }

    def _instance(self, zone: str, name: str) -> dict[str, Any]:
        try:
            return self.instances[(zone, name)]
        except KeyError:
            message = f"The resource '{self._path(zone, name)}' was not found"
            raise _HttpError(404, "notFound", message) from None

    def _path(self, zone: str, name: str) -> str:
        return f"projects/{self.project}/zones/{zone}/instances/{name}"

    def _operation(
        self, zone: str, kind: str, target: str, fault: tuple[str, int, str] | None = None
    ) -> dict[str, Any]:
        name = f"operation-{next(self._ids)}"
        operation: dict[str, Any] = {
            "kind": "compute#operation",
            "name": name,
            "zone": zone,
            "operationType": kind,
            "targetLink": target,
            "status": "DONE",
            "progress": 100,
        }
        if fault is not None:
            code, status, message = fault
            operation["httpErrorStatusCode"] = status
            operation["httpErrorMessage"] = "SERVICE UNAVAILABLE" if status == 503 else "FAILED"
            operation["error"] = {"errors": [{"code": code, "message": message}]}
        self._operations[(zone, name)] = operation
        self._pending_polls[(zone, name)] = self.operation_polls
        if self.operation_polls:
            return {**operation, "status": "RUNNING", "progress": 0}
        return operation

    def _aggregated(self, query: dict[str, str]) -> dict[str, Any]:
        found = [
            (zone, i)
            for (zone, _), i in sorted(self.instances.items())
            if self._matches(i, query.get("filter", ""))
        ]
        start = int(query.get("pageToken") or 0)
        page = found[start : start + self.page_size]
        items: dict[str, Any] = {}
        for zone, instance in page:
            items.setdefault(f"zones/{zone}", {"instances": []})["instances"].append(instance)
        result: dict[str, Any] = {"kind": "compute#instanceAggregatedList", "items": items}
        if start + self.page_size < len(found):
            result["nextPageToken"] = str(start + self.page_size)
        return result

    @staticmethod
    def _matches(instance: dict[str, Any], expression: str) -> bool:
        if not expression:
            return True
        terms = _FILTER.findall(expression)
        if not terms:
            raise _HttpError(400, "invalid", f"Invalid value for field 'filter': {expression!r}")
        labels = instance.get("labels") or {}
        return all(labels.get(key) == value for key, value in terms)

    # -- HTTP ------------------------------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 10  # a stuck client cannot hold a server thread for long

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                try:
                    status, payload = 200, fake.handle(self.command, parts.path, query, body)
                except _HttpError as exc:
                    status = exc.status
                    errors = [{"domain": "global", "reason": exc.reason, "message": exc.message}]
                    payload = {"error": {"code": status, "message": exc.message, "errors": errors}}
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the recorded requests say more than an access log

        return Handler
