"""Lambda Cloud's on-demand instances, through its public REST API v1 (httpx, sync).

Checked against Lambda's OpenAPI spec 1.8.3 (https://cloud.lambda.ai/api/v1/openapi.json; API
browser at https://docs-api.lambda.ai/api/cloud): the production server is
`https://cloud.lambda.ai` (`cloud.lambdalabs.com` is listed as deprecated), every path is under
`/api/v1`, a key goes in `Authorization: Bearer`, and errors come as
`{"error": {"code", "message", "suggestion"}}`.

How Lambda differs from the clouds brev was written against:

- No client token: `create` first looks for an instance named `brev-<instance id>` (the name is
  at most 64 characters) and returns it, so a crash between Lambda's launch and the database
  write heals itself. The lookup is by instance, not by attempt: a later attempt of the same
  instance gets an earlier attempt's machine, wherever it is, rather than a second one.
- `list_owned` finds brev's machines by that name (`brev-` and the instance id), and
  `Machine.tags` has TAG_INSTANCE_ID (from the name) and TAG_MANAGED. The launch also sends
  TAG_ORG, TAG_PLANE and TAG_INSTANCE_ID as Lambda instance tags (documented since spec 1.8);
  where Lambda returns them they are in `Machine.tags` too, so the sweep (which touches only
  machines carrying this plane's TAG_PLANE) can clean up; where it does not, brev's Lambda
  machines carry no plane and the sweep leaves them alone.
- Launch takes exactly one SSH key, by name: the first of `spec.ssh_public_keys` is registered
  once as `brev-<hash of the key>` (or an existing entry with the same key is reused). Without
  one, Lambda generates a key named `brev-generated` whose private half nobody keeps: brev's
  machines trust the plane's SSH CA through the boot script instead.
- The boot script goes in `user_data` (plain-text cloud-init user data, at most 1 MB).
- The disk is fixed by the instance type (`disk_gb` is ignored); there are no zones and no spot
  instances (a spot placement is NoCapacity, so the plane moves on); instances cannot be
  stopped, only terminated (`start`/`stop` raise InvalidRequest).
- Statuses: booting -> PENDING; active -> RUNNING; unhealthy -> RUNNING (it exists and is
  billed; Lambda's own restart is the remedy, not a second machine); terminating and preempted
  -> TERMINATED; terminated -> `describe` says None.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar
from urllib.parse import quote

import httpx

from brev.providers.base import (
    TAG_INSTANCE_ID,
    TAG_MANAGED,
    TAG_ORG,
    TAG_PLANE,
    ConfigKey,
    CredentialsError,
    InstanceSpec,
    InvalidRequest,
    Machine,
    MachineState,
    NoCapacity,
    NotFound,
    Placement,
    ProviderError,
    ProviderRef,
    QuotaExceeded,
    Transient,
)

DEFAULT_ENDPOINT = "https://cloud.lambda.ai/api/v1"
NAME_PREFIX = "brev-"
NAME_MAX = 64  # Lambda's limit on an instance's name
TAG_VALUE_MAX = 128
GENERATED_KEY_NAME = "brev-generated"
CANNOT_STOP = "Lambda Cloud instances cannot be stopped, only deleted"
CAPACITY_TTL_S = 30.0  # how long an answer of GET /instance-types counts as "now"

_NAME = re.compile(rf"^{NAME_PREFIX}([0-9A-Za-z_-]+)$")
_IMAGE_ID = re.compile(r"^[0-9a-f]{32}$")
_STATES = {
    "booting": MachineState.PENDING,
    "active": MachineState.RUNNING,
    "unhealthy": MachineState.RUNNING,
    "terminating": MachineState.TERMINATED,
    "preempted": MachineState.TERMINATED,
    "terminated": MachineState.TERMINATED,
}
_GONE = frozenset({"terminating", "preempted", "terminated"})
_CODES: dict[str, type[ProviderError]] = {
    "instance-operations/launch/insufficient-capacity": NoCapacity,
    "global/quota-exceeded": QuotaExceeded,
    "global/invalid-api-key": CredentialsError,
    "global/account-inactive": CredentialsError,
    "global/invalid-address": CredentialsError,  # the billing address: a person must fix it
    "global/invalid-parameters": InvalidRequest,
    "global/object-does-not-exist": NotFound,
}


def instance_name(instance_id: str) -> str:
    """Lambda's name for brev's instance: the only place a Lambda instance keeps brev's id."""
    name = NAME_PREFIX + instance_id
    if not _NAME.match(name) or len(name) > NAME_MAX:
        raise InvalidRequest(f"instance id {instance_id!r} does not fit a Lambda instance name")
    return name


def instance_id_of(name: object) -> str | None:
    match = _NAME.match(name) if isinstance(name, str) else None
    return match.group(1) if match else None


def ssh_key_name(public_key: str) -> str:
    """`brev-` and a hash of the key's type and body (its comment does not count)."""
    return NAME_PREFIX + hashlib.sha256(_key_material(public_key).encode()).hexdigest()[:16]


def _key_material(public_key: str) -> str:
    return " ".join(public_key.split()[:2])


def _kind(code: str, status: int) -> type[ProviderError]:
    if code in _CODES:
        return _CODES[code]
    if code.startswith("provider/"):  # an upstream outage, per Lambda's docs
        return Transient
    if status in (401, 403):
        return CredentialsError
    if status == 404:
        return NotFound
    if status in (408, 429) or status >= 500:
        return Transient
    return InvalidRequest  # any other 4xx (and a redirect: the endpoint is wrong)


def translate(response: httpx.Response, action: str) -> ProviderError:
    """Lambda's error answer as one of brev's typed errors; the message names Lambda, what
    failed, Lambda's message and suggestion, and the code (never a header, so never the key)."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    error = error if isinstance(error, dict) else {}
    code = str(error.get("code") or f"http-{response.status_code}")
    message = str(error.get("message") or response.reason_phrase or "no message").rstrip(".")
    suggestion = error.get("suggestion")
    text = f"Lambda Cloud could not {action}: {message}."
    if suggestion:
        text += f" {str(suggestion).rstrip('.')}."
    return _kind(code, response.status_code)(f"{text} [{code}]", code=code)


class LambdaProvider:
    """Config: `api_key` (required), `endpoint_url` (tests: a local fake of the API)."""

    name = "lambda"
    display_name: ClassVar[str] = "Lambda Cloud"
    config_keys: ClassVar[tuple[ConfigKey, ...]] = (
        ConfigKey(
            "api_key", "Lambda Cloud API key", required=True, secret=True, env="LAMBDA_API_KEY"
        ),
        ConfigKey("endpoint_url", "an API endpoint other than Lambda's own (tests)"),
    )

    def __init__(self, config: Mapping[str, Any], *, timeout_s: float = 60.0) -> None:
        self._capacity: tuple[float, dict[str, frozenset[str]]] | None = None
        self._capacity_lock = threading.Lock()
        self._has_key = bool(config.get("api_key"))
        self._client = httpx.Client(
            base_url=str(config.get("endpoint_url") or DEFAULT_ENDPOINT),
            headers={
                "Authorization": f"Bearer {config.get('api_key') or ''}",
                "Accept": "application/json",
            },
            # One attempt per call: the reconciler owns retries and back-off.
            timeout=httpx.Timeout(timeout_s, connect=min(10.0, timeout_s)),
        )

    def close(self) -> None:
        self._client.close()

    def _call(self, method: str, path: str, action: str, body: Any = None) -> Any:
        if not self._has_key:
            raise CredentialsError("no Lambda Cloud API key is configured", code="no-api-key")
        try:
            response = self._client.request(method, path, json=body)
        except httpx.RequestError as error:  # timeouts, refused and dropped connections
            kind = type(error).__name__
            raise Transient(
                f"Lambda Cloud could not {action}: no answer ({kind}: {error}) [{kind}]", code=kind
            ) from None
        if not response.is_success:
            raise translate(response, action)
        try:
            return response.json()["data"]
        except (ValueError, KeyError, TypeError):
            raise Transient(
                f"Lambda Cloud could not {action}: its answer was not the API's JSON "
                "[malformed-response]",
                code="malformed-response",
            ) from None

    def validate(self) -> str:
        types = self._call("GET", "/instance-types", "list instance types")
        return f"Lambda Cloud account ({len(types)} instance types)"

    def regions_with_capacity(self) -> dict[str, frozenset[str]]:
        """Instance type name -> the regions where Lambda has capacity for it now; asked at
        most every CAPACITY_TTL_S (Lambda allows about one request a second)."""
        with self._capacity_lock:
            cached = self._capacity
            if cached is not None and time.monotonic() - cached[0] < CAPACITY_TTL_S:
                return cached[1]
            types = self._call("GET", "/instance-types", "list instance types")
            capacity = {
                name: frozenset(r["name"] for r in item.get("regions_with_capacity_available", []))
                for name, item in types.items()
            }
            self._capacity = (time.monotonic(), capacity)
            return capacity

    # -- create -------------------------------------------------------------------------

    def create(self, spec: InstanceSpec, placement: Placement, idempotency_key: str) -> Machine:
        name = instance_name(spec.instance_id)
        for instance in self._instances():
            if instance.get("name") == name and instance.get("status") not in _GONE:
                return self._machine(instance)
        if placement.spot:
            raise NoCapacity("Lambda Cloud has no spot instances", code="spot-unsupported")
        tags = {
            TAG_INSTANCE_ID: spec.instance_id,
            TAG_ORG: spec.org,
            TAG_PLANE: spec.plane_id,
            TAG_MANAGED: "true",
        }
        body: dict[str, Any] = {
            "region_name": placement.region,
            "instance_type_name": placement.instance_type,
            "ssh_key_names": [self._ssh_key(spec.ssh_public_keys)],
            "name": name,
            "user_data": spec.user_script(),
            "tags": [{"key": k, "value": v[:TAG_VALUE_MAX]} for k, v in tags.items()],
        }
        if spec.image:
            body["image"] = {"id" if _IMAGE_ID.match(spec.image) else "family": spec.image}
        action = f"launch {placement.instance_type} in {placement.region}"
        try:
            launched = self._call("POST", "/instance-operations/launch", action, body)
        except NotFound as error:  # an SSH key, image or file system: not the machine
            raise InvalidRequest(error.message, code=error.code) from None
        ids = launched.get("instance_ids") or []
        if not ids:
            raise Transient(f"Lambda Cloud could not {action}: it launched nothing [no-ids]")
        return Machine(
            ref=ProviderRef(provider=self.name, region=placement.region, zone=None, id=ids[0]),
            state=MachineState.PENDING,
            instance_type=placement.instance_type,
            tags={**tags, TAG_ORG: tags[TAG_ORG][:TAG_VALUE_MAX]},
        )

    def _ssh_key(self, public_keys: tuple[str, ...]) -> str:
        """The name of the account's SSH key for these keys, registered on first use."""
        existing = self._call("GET", "/ssh-keys", "list SSH keys")
        body: dict[str, str]
        if public_keys:
            material = _key_material(public_keys[0])
            name = ssh_key_name(public_keys[0])
            for key in existing:
                if key.get("name") == name or _key_material(key.get("public_key", "")) == material:
                    return str(key["name"])
            body = {"name": name, "public_key": public_keys[0].strip()}
        else:
            name = GENERATED_KEY_NAME
            if any(key.get("name") == name for key in existing):
                return name
            body = {"name": name}  # Lambda makes the pair; the private key is not kept
        try:
            self._call("POST", "/ssh-keys", f"add SSH key {name}", body)
        except InvalidRequest as error:
            if error.code != "global/duplicate":  # made by a concurrent create: use it
                raise
        return name

    # -- lifecycle ----------------------------------------------------------------------

    def describe(self, ref: ProviderRef) -> Machine | None:
        try:
            instance = self._call(
                "GET", f"/instances/{quote(ref.id, safe='')}", f"read instance {ref.id}"
            )
        except NotFound:
            return None
        if instance.get("status") == "terminated":
            return None
        return self._machine(instance)

    def start(self, ref: ProviderRef) -> None:
        raise InvalidRequest(CANNOT_STOP, code="unsupported")

    def stop(self, ref: ProviderRef) -> None:
        raise InvalidRequest(CANNOT_STOP, code="unsupported")

    def terminate(self, ref: ProviderRef) -> None:
        body = {"instance_ids": [ref.id]}
        try:
            self._call("POST", "/instance-operations/terminate", f"terminate {ref.id}", body)
        except NotFound:
            return
        except InvalidRequest:
            machine = self.describe(ref)  # refused because it is already going?
            if machine is not None and machine.state != MachineState.TERMINATED:
                raise

    def list_owned(self, regions: Iterable[str]) -> list[Machine]:
        wanted = set(regions)
        return [
            self._machine(instance)
            for instance in self._instances()
            if instance_id_of(instance.get("name")) is not None
            and _region(instance) in wanted
            and instance.get("status") not in _GONE
        ]

    def _instances(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/instances", "list instances"))

    def _machine(self, instance: Mapping[str, Any]) -> Machine:
        tags = {
            str(t["key"]): str(t["value"])
            for t in instance.get("tags") or []
            if isinstance(t, Mapping) and "key" in t and "value" in t
        }
        instance_id = instance_id_of(instance.get("name"))
        if instance_id is not None:
            tags.update({TAG_INSTANCE_ID: instance_id, TAG_MANAGED: "true"})
        return Machine(
            ref=ProviderRef(
                provider=self.name, region=_region(instance), zone=None, id=str(instance["id"])
            ),
            state=_STATES.get(str(instance.get("status")), MachineState.PENDING),
            instance_type=(instance.get("instance_type") or {}).get("name"),
            public_ip=instance.get("ip") or None,
            private_ip=instance.get("private_ip") or None,
            tags=tags,
        )


def _region(instance: Mapping[str, Any]) -> str:
    return str((instance.get("region") or {}).get("name", ""))
