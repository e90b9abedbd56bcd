"""A small Lambda Cloud API v1 on 127.0.0.1, for the Lambda provider with real httpx.

It speaks what Lambda's OpenAPI spec (1.8.3) documents for the calls brev makes, with Lambda's
error shape `{"error": {"code", "message", "suggestion"}}`: GET /instance-types (with
`regions_with_capacity_available` set by `set_capacity`), POST /instance-operations/launch
(one SSH key that must exist, a name of at most 64 characters, tags, user_data; a region
without capacity is `instance-operations/launch/insufficient-capacity`), GET /instances,
GET /instances/{id}, POST /instance-operations/terminate, GET and POST /ssh-keys. A wrong API
key is a 401 `global/invalid-api-key`.

An instance boots for `boot_reads` reads (status booting, no ip), then is active with an ip.
A terminated instance reads as `terminating`, then `terminated` once, then is gone (404).

Faults: `fail_next_launch` (any status and code; `no_capacity_next_launch`,
`quota_next_launch` and `unavailable_next_launch` name the usual ones), `fail_next` for any
request, and `drop_next_launch_response`: the launch happens, then the connection closes with
no answer (a crash between Lambda's launch and brev's database write, seen from the client).
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from tests.local_http import LocalHttpServer

PREFIX = "/api/v1"
CAPACITY = "instance-operations/launch/insufficient-capacity"
QUOTA = "global/quota-exceeded"
INVALID = "global/invalid-parameters"
MISSING = "global/object-does-not-exist"
_TAG_KEY = re.compile(r"^[a-z][a-z0-9-:]+$")
_REGIONS = {"us-west-1": "California, USA", "us-east-1": "Virginia, USA", "us-south-1": "Texas"}
_TYPES = {
    "gpu_1x_a10": ("1x A10 (24 GB PCIe)", 75, ["us-west-1", "us-east-1"]),
    "gpu_1x_h100_pcie": ("1x H100 (80 GB PCIe)", 249, ["us-east-1"]),
    "gpu_8x_a100": ("8x A100 (40 GB SXM4)", 1032, []),
}


class _Answer(Exception):
    def __init__(self, status: int, code: str | None, message: str, suggestion: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.suggestion = status, code, message, suggestion


@dataclass
class _Fault:
    method: str | None
    path: str | None
    status: int
    code: str | None
    message: str
    suggestion: str | None
    delay_s: float


class FakeLambda(LocalHttpServer):
    """Start with `with FakeLambda() as fake:`; give the provider `fake.url` and `fake.api_key`."""

    path_prefix = PREFIX

    def __init__(self, api_key: str = "secret_brevtest_0123456789abcdef.XYZsecretpart") -> None:
        self.api_key = api_key
        self.boot_reads = 2
        self.instances: dict[str, dict[str, Any]] = {}  # id -> Lambda's Instance object
        self.ssh_keys: list[dict[str, str]] = []
        self.launches: list[dict[str, Any]] = []  # every accepted launch body
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request
        self.capacity: dict[str, list[str]] = {name: list(t[2]) for name, t in _TYPES.items()}
        self._reads: dict[str, int] = {}
        self._faults: list[_Fault] = []
        self._drop_next_launch = False
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        super().__init__()

    # -- setup and faults -----------------------------------------------------------------

    def set_capacity(self, instance_type: str, regions: list[str]) -> None:
        self.capacity[instance_type] = list(regions)

    def add_instance(
        self,
        name: str | None,
        region: str,
        instance_type: str = "gpu_1x_a10",
        status: str = "active",
    ) -> str:
        """An instance made outside brev (the console, another tool)."""
        with self._lock:
            return self._new_instance(name, region, instance_type, [], status)

    def fail_next(
        self,
        status: int,
        code: str | None = None,
        message: str = "injected failure",
        *,
        method: str | None = None,
        path: str | None = None,
        suggestion: str | None = None,
        delay_s: float = 0.0,
    ) -> None:
        """The next request matching `method` and `path` (a substring) gets this error; with
        `code` None the body is plain text, as from a proxy in front of the API."""
        self._faults.append(_Fault(method, path, status, code, message, suggestion, delay_s))

    def fail_next_launch(
        self, status: int, code: str | None, message: str, suggestion: str | None = None
    ) -> None:
        self.fail_next(status, code, message, method="POST", path="/launch", suggestion=suggestion)

    def no_capacity_next_launch(self) -> None:
        self.fail_next_launch(
            400,
            CAPACITY,
            "Not enough capacity to fulfill launch request.",
            "Choose an instance type with more availability, or try again later.",
        )

    def quota_next_launch(self) -> None:
        self.fail_next_launch(
            400, QUOTA, "Quota exceeded.", "Contact Support to increase your quota."
        )

    def unavailable_next_launch(self) -> None:
        self.fail_next_launch(503, None, "Service Unavailable")

    def drop_next_launch_response(self) -> None:
        self._drop_next_launch = True

    # -- the API ----------------------------------------------------------------------------

    def _new_instance(
        self, name: str | None, region: str, instance_type: str, keys: list[str], status: str
    ) -> str:
        number = next(self._ids)
        instance_id = f"{number:032x}"
        description, price, _ = _TYPES[instance_type]
        self.instances[instance_id] = {
            "id": instance_id,
            "name": name,
            "status": status,
            "ssh_key_names": keys,
            "file_system_names": [],
            "region": {"name": region, "description": _REGIONS.get(region, region)},
            "instance_type": {
                "name": instance_type,
                "description": description,
                "price_cents_per_hour": price,
            },
            "actions": {},
            "tags": [],
        }
        if status == "active":
            self.instances[instance_id].update(self._addresses(number))
        self._reads[instance_id] = 0
        return instance_id

    @staticmethod
    def _addresses(number: int) -> dict[str, str]:
        return {"ip": f"198.51.100.{number % 250}", "private_ip": f"10.0.0.{number % 250}"}

    def _read(self, instance_id: str) -> dict[str, Any]:
        """One read of an instance, which moves it along its life."""
        instance = self.instances[instance_id]
        self._reads[instance_id] += 1
        if instance["status"] == "booting" and self._reads[instance_id] > self.boot_reads:
            instance.update(status="active", **self._addresses(int(instance_id, 16)))
        elif instance["status"] == "terminating":
            instance["status"] = "terminated"
            return dict(instance, status="terminating")
        elif instance["status"] == "terminated":
            del self.instances[instance_id]
            raise _Answer(404, MISSING, "Specified instance does not exist.")
        return dict(instance)

    def _launch(self, body: dict[str, Any]) -> dict[str, Any]:
        region, type_name = body.get("region_name"), body.get("instance_type_name")
        keys, name = body.get("ssh_key_names"), body.get("name")
        if type_name not in _TYPES or region not in _REGIONS:
            raise _Answer(400, INVALID, "Invalid request data.", "Check the region and type.")
        if not isinstance(keys, list) or len(keys) != 1:
            raise _Answer(400, INVALID, "Exactly one SSH key must be specified.")
        if keys[0] not in {k["name"] for k in self.ssh_keys}:
            raise _Answer(400, INVALID, f"SSH key {keys[0]!r} does not exist.")
        if name is not None and (not isinstance(name, str) or len(name) > 64):
            raise _Answer(400, INVALID, "The name must be 64 characters or fewer.")
        for tag in body.get("tags") or []:
            if not _TAG_KEY.match(tag["key"]) or len(tag["key"]) > 55 or len(tag["value"]) > 128:
                raise _Answer(400, INVALID, f"Invalid tag {tag['key']!r}.")
        if len(str(body.get("user_data") or "").encode()) > 1 << 20:
            raise _Answer(400, INVALID, "user_data exceeds 1MB.")
        if region not in self.capacity.get(type_name, []):
            raise _Answer(400, CAPACITY, "Not enough capacity to fulfill launch request.")
        instance_id = self._new_instance(name, region, type_name, list(keys), "booting")
        self.instances[instance_id]["tags"] = list(body.get("tags") or [])
        self.launches.append(body)
        return {"instance_ids": [instance_id]}

    def _terminate(self, body: dict[str, Any]) -> dict[str, Any]:
        ids = body.get("instance_ids") or []
        gone = [i for i in ids if self.instances.get(i, {}).get("status") in (None, "terminated")]
        if gone:
            raise _Answer(404, MISSING, "Specified instance does not exist.")
        for instance_id in ids:
            self.instances[instance_id]["status"] = "terminating"
        return {"terminated_instances": [dict(self.instances[i]) for i in ids]}

    def _add_key(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body.get("name")
        if not isinstance(name, str) or not 1 <= len(name) <= 64:
            raise _Answer(400, INVALID, "Invalid SSH key name.")
        if any(k["name"] == name for k in self.ssh_keys):
            raise _Answer(400, "global/duplicate", f"An SSH key named {name!r} already exists.")
        key = {"id": f"key{len(self.ssh_keys) + 1}", "name": name}
        key["public_key"] = body.get("public_key") or "ssh-ed25519 AAAAgenerated generated"
        self.ssh_keys.append(key)
        if "public_key" not in body:
            return dict(key, private_key="-----BEGIN FAKE PRIVATE KEY-----")
        return dict(key)

    def _route(self, method: str, path: str, body: dict[str, Any]) -> Any:
        if method == "GET" and path == "/instance-types":
            return {
                name: {
                    "instance_type": {"name": name, "description": d, "price_cents_per_hour": p},
                    "regions_with_capacity_available": [
                        {"name": r, "description": _REGIONS.get(r, r)}
                        for r in self.capacity.get(name, [])
                    ],
                }
                for name, (d, p, _) in _TYPES.items()
            }
        if method == "GET" and path == "/instances":
            ids = [i for i, v in self.instances.items() if v["status"] != "terminated"]
            return [self._read(i) for i in ids]
        if method == "GET" and path.startswith("/instances/"):
            instance_id = path.removeprefix("/instances/")
            if instance_id not in self.instances:
                raise _Answer(404, MISSING, "Specified instance does not exist.")
            return self._read(instance_id)
        if method == "POST" and path == "/instance-operations/launch":
            return self._launch(body)
        if method == "POST" and path == "/instance-operations/terminate":
            return self._terminate(body)
        if method == "GET" and path == "/ssh-keys":
            return [dict(k) for k in self.ssh_keys]
        if method == "POST" and path == "/ssh-keys":
            return self._add_key(body)
        raise _Answer(404, MISSING, f"No route for {method} {path}.")

    def _authorized(self, header: str) -> bool:
        basic = base64.b64encode(f"{self.api_key}:".encode()).decode()
        return header in (f"Bearer {self.api_key}", f"Basic {basic}", f"Basic {self.api_key}")

    def _fault(self, method: str, path: str) -> _Fault | None:
        for fault in self._faults:
            if fault.method in (None, method) and (fault.path is None or fault.path in path):
                self._faults.remove(fault)
                return fault
        return None

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                path = self.path.split("?")[0].removeprefix(PREFIX)
                with fake._lock:
                    fake.requests.append((method, path))
                    fault = fake._fault(method, path)
                if fault is not None:
                    time.sleep(fault.delay_s)
                    if fault.code is None:
                        self._send(fault.status, fault.message.encode(), "text/plain")
                        return
                    self._error(_Answer(fault.status, fault.code, fault.message, fault.suggestion))
                    return
                if not fake._authorized(self.headers.get("Authorization", "")):
                    self._error(
                        _Answer(
                            401,
                            "global/invalid-api-key",
                            "API key was invalid, expired, or deleted.",
                            "Check your API key or create a new one, then try again.",
                        )
                    )
                    return
                try:
                    body = json.loads(raw) if raw else {}
                    with fake._lock:
                        data = fake._route(method, path, body)
                        drop = path.endswith("/launch") and fake._drop_next_launch
                        if drop:
                            fake._drop_next_launch = False
                except _Answer as answer:
                    self._error(answer)
                    return
                if drop:  # Lambda launched it; the answer never reaches the client
                    self.close_connection = True
                    return
                self._send(200, json.dumps({"data": data}).encode())

            def _error(self, answer: _Answer) -> None:
                error = {"code": answer.code, "message": answer.message}
                if answer.suggestion:
                    error["suggestion"] = answer.suggestion
                self._send(answer.status, json.dumps({"error": error}).encode())

            def _send(self, status: int, payload: bytes, kind: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        return Handler


@pytest.fixture(name="fake_lambda")
def fake_lambda_fixture() -> Iterator[FakeLambda]:
    """A running FakeLambda, stopped after the test."""
    with FakeLambda() as fake:
        yield fake
