"""Typed Python client of the brev REST API, shared by the CLI, the tests and users' scripts.

    from brev.client import BrevClient
    with BrevClient("http://127.0.0.1:8080", token, org="default") as brev:
        for instance in brev.instances():
            print(instance.name, instance.status)

Every failure is a `brev.errors.BrevError` with a message fit to show a person.
"""

from __future__ import annotations

import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar, overload

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from brev import api
from brev.api_errors import (
    ApiError,
    BadRequest,
    BodyTooLarge,
    Conflict,
    CsrfFailed,
    DatabaseUnavailable,
    Forbidden,
    InvalidJson,
    InvalidRequest,
    MethodNotAllowed,
    NoCapacity,
    NodeInstallFailed,
    NodeRemoved,
    NotFound,
    ProviderNotInstalled,
    ServerError,
    TokenLimit,
    Unauthenticated,
    error_for,
)
from brev.errors import BrevError

if TYPE_CHECKING:
    from brev.api.web import LoginLink

# httpx imports its own command-line tool (click, rich, pygments) from its __init__ when those
# are installed; blocking that submodule halves the import time of every brev command. httpx
# falls back to a stub `httpx.main` on ImportError, which nothing here uses.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
import httpx  # noqa: E402

# The API's errors (brev.api_errors), re-exported: `from brev.client import NotFound` works.
__all__ = [
    "ApiError",
    "BadRequest",
    "BodyTooLarge",
    "BrevClient",
    "BrevError",
    "Conflict",
    "CsrfFailed",
    "DatabaseUnavailable",
    "Forbidden",
    "InvalidJson",
    "InvalidRequest",
    "InvalidSetting",
    "MethodNotAllowed",
    "NoCapacity",
    "NoOrgSelected",
    "NodeInstallFailed",
    "NodeRemoved",
    "NotFound",
    "ProviderNotInstalled",
    "ServerError",
    "ServerUnreachable",
    "TokenLimit",
    "Unauthenticated",
]

Model = TypeVar("Model", bound=BaseModel)
T = TypeVar("T")


class ServerUnreachable(BrevError):
    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach the brev control plane at {url} ({reason})")
        self.url = url


class NoOrgSelected(BrevError):
    pass


class InvalidSetting(BrevError):
    """A URL or token that cannot be right, found before anything is sent."""


class BrevClient:
    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        org: str | None = None,
        timeout: float = 30.0,
        http: httpx.Client | None = None,
    ) -> None:
        self.url = _checked_url(url)
        self.org = org
        headers = {"Authorization": f"Bearer {_checked_token(token)}"} if token else {}
        if http is None:
            # An SSL context costs ~40 ms (it loads the CA bundle), so only https gets one.
            # Safe for http: redirects are not followed, so no request can move to TLS.
            https = self.url.startswith("https://")
            http = httpx.Client(base_url=self.url, timeout=timeout, verify=https)
        http.headers.update(headers)
        self._http = http

    def __enter__(self) -> BrevClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- plumbing ---------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        json: Any = None,
        *,
        timeout: float | None = None,
        **params: Any,
    ) -> httpx.Response:
        wait: Any = httpx.USE_CLIENT_DEFAULT if timeout is None else timeout
        try:
            response = self._http.request(
                method, path, json=json, params=params or None, timeout=wait
            )
        except (httpx.NetworkError, httpx.TimeoutException, httpx.RemoteProtocolError) as exc:
            raise ServerUnreachable(self.url, _transport_reason(exc)) from None
        except httpx.TransportError as exc:
            # Only the type: an HTTP library's message may quote a header, i.e. the token.
            raise BrevError(f"request to {self.url} failed ({type(exc).__name__})") from None
        if response.status_code >= 400:
            raise _api_error(response)
        return response

    @overload
    def _get(self, model: type[Model], path: str, **params: Any) -> Model: ...
    @overload
    def _get(self, model: TypeAdapter[T], path: str, **params: Any) -> T: ...
    def _get(self, model: type[Model] | TypeAdapter[T], path: str, **params: Any) -> Model | T:
        return _parse(model, self._request("GET", path, **params))

    def _org_path(self, org: str | None, suffix: str = "") -> str:
        org = org or self.org
        if not org:
            raise NoOrgSelected("no org selected: run `brev org use NAME` or set BREV_ORG")
        return f"{api.API_PREFIX}/orgs/{org}{suffix}"

    # -- the API ----------------------------------------------------------------------------

    def health(self) -> api.ServerHealth:
        return self._get(api.ServerHealth, "/healthz")

    def whoami(self) -> api.Whoami:
        return self._get(api.Whoami, f"{api.API_PREFIX}/whoami")

    def orgs(self) -> list[api.Org]:
        return self._get(_ORGS, f"{api.API_PREFIX}/orgs")

    def create_org(self, name: str) -> api.Org:
        response = self._request("POST", f"{api.API_PREFIX}/orgs", json={"name": name})
        return _parse(api.Org, response)

    def members(self, org: str | None = None) -> list[api.Member]:
        return self._get(_MEMBERS, self._org_path(org, "/members"))

    def add_member(
        self,
        email: str,
        role: api.Role | str = api.Role.MEMBER,
        name: str = "",
        org: str | None = None,
    ) -> api.MemberAdded:
        body = {"email": email, "role": role, "name": name}
        return _parse(api.MemberAdded, self._request("POST", self._org_path(org, "/members"), body))

    def set_member_role(self, email: str, role: api.Role, org: str | None = None) -> api.Member:
        body = api.MemberRole(role=role).model_dump(mode="json")
        path = self._org_path(org, f"/members/{email}")
        return _parse(api.Member, self._request("PUT", path, body))

    def remove_member(self, email: str, org: str | None = None) -> None:
        self._request("DELETE", self._org_path(org, f"/members/{email}"))

    def tokens(self, org: str | None = None) -> list[api.Token]:
        return self._get(_TOKENS, self._org_path(org, "/tokens"))

    def create_token(
        self,
        name: str,
        expires_in_seconds: int | None = None,
        org: str | None = None,
        *,
        scope: api.TokenScope | str | None = None,
        max_price_per_hour: float | None = None,
        max_gpus: int | None = None,
        max_ttl_seconds: int | None = None,
    ) -> api.TokenCreated:
        """A token of the caller for this org; scope `run` (with optional limits) for CI jobs:
        offers, and only the instances it creates."""
        body: dict[str, Any] = {"name": name, "expires_in_seconds": expires_in_seconds}
        limits = {
            "scope": str(scope) if scope is not None else None,
            "max_price_per_hour": max_price_per_hour,
            "max_gpus": max_gpus,
            "max_ttl_seconds": max_ttl_seconds,
        }
        body.update({key: value for key, value in limits.items() if value is not None})
        response = self._request("POST", self._org_path(org, "/tokens"), body)
        return _parse(api.TokenCreated, response)

    def revoke_token(self, name: str, org: str | None = None) -> api.Token:
        response = self._request("DELETE", self._org_path(org, f"/tokens/{name}"))
        return _parse(api.Token, response)

    def instances(self, org: str | None = None) -> list[api.Instance]:
        return self._get(_INSTANCES, self._org_path(org, "/instances"))

    def instance(self, name: str, org: str | None = None) -> api.InstanceDetail:
        return self._get(api.InstanceDetail, self._org_path(org, f"/instances/{name}"))

    def instance_metrics(
        self, name: str, since: datetime | None = None, org: str | None = None
    ) -> list[api.GpuSeries]:
        """Per GPU, its utilization, memory, power and temperature since `since` (default: the
        plane's, an hour): raw samples for the last hour, one-minute aggregates before."""
        params = {"since": since.isoformat()} if since is not None else {}
        return self._get(_GPU_SERIES, self._org_path(org, f"/instances/{name}/metrics"), **params)

    def create_instance(
        self, body: api.InstanceCreate, org: str | None = None
    ) -> api.InstanceDetail:
        return self.create_or_find_instance(body, org)[0]

    def create_or_find_instance(
        self, body: api.InstanceCreate, org: str | None = None
    ) -> tuple[api.InstanceDetail, bool]:
        """The instance, and True when this request made it; False when the idempotency key
        had made it before (the plane answers 200 instead of 201)."""
        payload = body.model_dump(mode="json", exclude_none=True)
        response = self._request("POST", self._org_path(org, "/instances"), payload)
        return _parse(api.InstanceDetail, response), response.status_code == 201

    def plan_instance(self, body: api.InstanceCreate, org: str | None = None) -> api.InstancePlan:
        payload = body.model_dump(mode="json", exclude_none=True)
        response = self._request("POST", self._org_path(org, "/instances/plan"), payload)
        return _parse(api.InstancePlan, response)

    def start_instance(self, name: str, org: str | None = None) -> api.InstanceDetail:
        response = self._request("POST", self._org_path(org, f"/instances/{name}/start"))
        return _parse(api.InstanceDetail, response)

    def stop_instance(self, name: str, org: str | None = None) -> api.InstanceDetail:
        response = self._request("POST", self._org_path(org, f"/instances/{name}/stop"))
        return _parse(api.InstanceDetail, response)

    def delete_instance(self, name: str, org: str | None = None) -> api.InstanceDetail:
        response = self._request("DELETE", self._org_path(org, f"/instances/{name}"))
        return _parse(api.InstanceDetail, response)

    def set_autostop(
        self, name: str, seconds: int | None, delete: bool = False, org: str | None = None
    ) -> api.InstanceDetail:
        body = {"seconds": seconds, "delete": delete}
        path = self._org_path(org, f"/instances/{name}/autostop")
        return _parse(api.InstanceDetail, self._request("PUT", path, body))

    def set_ttl(self, name: str, seconds: int | None, org: str | None = None) -> api.InstanceDetail:
        """Delete the instance `seconds` from now; None turns its TTL off."""
        path = self._org_path(org, f"/instances/{name}/ttl")
        return _parse(api.InstanceDetail, self._request("PUT", path, {"seconds": seconds}))

    def renew_lease(self, name: str, org: str | None = None) -> api.Lease:
        """Keep a `brev run` instance: its lease runs its length again from now."""
        path = self._org_path(org, f"/instances/{name}/lease")
        return _parse(api.Lease, self._request("POST", path))

    def release_lease(self, name: str, org: str | None = None) -> api.InstanceDetail:
        """The instance outlives its `brev run` (--keep): no lease; its TTL still applies."""
        path = self._org_path(org, f"/instances/{name}/lease")
        return _parse(api.InstanceDetail, self._request("DELETE", path))

    def provider_kinds(self) -> list[api.ProviderKind]:
        """The providers installed on the plane, configured or not."""
        return self._get(_PROVIDER_KINDS, f"{api.API_PREFIX}/providers")

    def providers(self, org: str | None = None) -> list[api.ProviderConfig]:
        return self._get(_PROVIDERS, self._org_path(org, "/providers"))

    def add_provider(
        self, provider: str, config: dict[str, str], org: str | None = None
    ) -> api.ProviderConfig:
        body = {"provider": provider, "config": config}
        return _parse(
            api.ProviderConfig, self._request("POST", self._org_path(org, "/providers"), body)
        )

    def remove_provider(self, provider: str, org: str | None = None) -> None:
        self._request("DELETE", self._org_path(org, f"/providers/{provider}"))

    def offers(
        self,
        gpu: str | None = None,
        *,
        providers: list[str] | None = None,
        region: str | None = None,
        max_price: float | None = None,
        min_vram: float | None = None,
        spot: bool = False,
        sort: api.OfferSort | str = api.OfferSort.PRICE,
        org: str | None = None,
    ) -> list[api.Offer]:
        params: dict[str, Any] = {"spot": spot, "sort": str(sort)}
        optional = {"gpu": gpu, "region": region, "max_price": max_price, "min_vram": min_vram}
        params.update({key: value for key, value in optional.items() if value is not None})
        if providers:
            params["provider"] = ",".join(providers)
        return self._get(_OFFERS, self._org_path(org, "/offers"), **params)

    def refresh_catalog(self, org: str | None = None) -> list[api.CatalogRefresh]:
        """Refresh the plane's offer catalog from the APIs of the org's providers (admins)."""
        response = self._request("POST", self._org_path(org, "/catalog/refresh"))
        return _parse(_CATALOG_REFRESHES, response)

    def events(
        self,
        limit: int = 100,
        org: str | None = None,
        *,
        instance: str | None = None,
        kind: str | None = None,
        actor: str | None = None,
        before: int | None = None,
    ) -> list[api.Event]:
        filters = {"instance": instance, "kind": kind, "actor": actor, "before": before}
        given = {k: v for k, v in filters.items() if v is not None}
        return self._get(_EVENTS, self._org_path(org, "/events"), limit=limit, **given)

    def nodes(self, org: str | None = None) -> list[api.Node]:
        return self._get(_NODES, self._org_path(org, "/nodes"))

    def node(self, name: str, org: str | None = None) -> api.NodeDetail:
        return self._get(api.NodeDetail, self._org_path(org, f"/nodes/{name}"))

    def node_host_key(self, host: str, port: int, org: str | None = None) -> api.HostKey:
        body = {"host": host, "port": port}
        response = self._request("POST", self._org_path(org, "/nodes/host-key"), body)
        return _parse(api.HostKey, response)

    def add_node(
        self, body: api.NodeAdd, org: str | None = None, timeout: float = 600.0
    ) -> api.NodeDetail:
        """Returns once the agent on the box has reported (an install takes seconds)."""
        payload = body.model_dump(mode="json", exclude_none=True)
        path = self._org_path(org, "/nodes")
        return _parse(api.NodeDetail, self._request("POST", path, payload, timeout=timeout))

    def register_node(self, body: api.NodeRegister, org: str | None = None) -> api.NodeRegistered:
        payload = body.model_dump(mode="json", exclude_none=True)
        response = self._request("POST", self._org_path(org, "/nodes/register"), payload)
        return _parse(api.NodeRegistered, response)

    def remove_node(self, name: str, force: bool = False, org: str | None = None) -> api.NodeDetail:
        path = self._org_path(org, f"/nodes/{name}")
        return _parse(api.NodeDetail, self._request("DELETE", path, force=force))

    def ssh_certificate(self, public_key: str, org: str | None = None) -> api.SshCertificate:
        """A certificate for `public_key` opening the org's machines, and those machines."""
        body = {"public_key": public_key}
        response = self._request("POST", self._org_path(org, "/ssh/certificate"), body)
        return _parse(api.SshCertificate, response)

    def create_login_link(self) -> LoginLink:
        from brev.api.web import LoginLink

        return _parse(LoginLink, self._request("POST", f"{api.API_PREFIX}/web/login-links"))

    def ssh_ca(self, org: str | None = None) -> api.SshCa:
        return self._get(api.SshCa, self._org_path(org, "/ssh/ca"))


_ORGS = TypeAdapter(list[api.Org], config=ConfigDict(defer_build=True))
_MEMBERS = TypeAdapter(list[api.Member], config=ConfigDict(defer_build=True))
_TOKENS = TypeAdapter(list[api.Token], config=ConfigDict(defer_build=True))
_INSTANCES = TypeAdapter(list[api.Instance], config=ConfigDict(defer_build=True))
_EVENTS = TypeAdapter(list[api.Event], config=ConfigDict(defer_build=True))
_GPU_SERIES = TypeAdapter(list[api.GpuSeries], config=ConfigDict(defer_build=True))
_PROVIDERS = TypeAdapter(list[api.ProviderConfig], config=ConfigDict(defer_build=True))
_PROVIDER_KINDS = TypeAdapter(list[api.ProviderKind], config=ConfigDict(defer_build=True))
_OFFERS = TypeAdapter(list[api.Offer], config=ConfigDict(defer_build=True))
_NODES = TypeAdapter(list[api.Node], config=ConfigDict(defer_build=True))
_CATALOG_REFRESHES = TypeAdapter(list[api.CatalogRefresh], config=ConfigDict(defer_build=True))


def _checked_url(url: str) -> str:
    url = url.strip().rstrip("/")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise InvalidSetting(f"invalid control plane URL {url!r} ({exc})") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise InvalidSetting(
            f"invalid control plane URL {url!r}: expected http://HOST:PORT or https://HOST"
        )
    return url


def _checked_token(token: str) -> str:
    # Never echo the token: the message names where it came from, not what it is.
    token = token.strip()
    if not token.isascii() or not token.isprintable() or " " in token:
        raise InvalidSetting(
            "the token contains characters that no brev token has (spaces, non-ASCII or "
            "control characters); check BREV_TOKEN or run `brev login` again"
        )
    return token


@overload
def _parse(model: type[Model], response: httpx.Response) -> Model: ...
@overload
def _parse(model: TypeAdapter[T], response: httpx.Response) -> T: ...
def _parse(model: type[Model] | TypeAdapter[T], response: httpx.Response) -> Model | T:
    try:
        if isinstance(model, TypeAdapter):
            return model.validate_json(response.content)
        return model.model_validate_json(response.content)
    except ValidationError as exc:
        raise BrevError(
            f"unexpected answer from {response.request.url}: {exc.error_count()} field(s) "
            f"do not match this client (version skew between CLI and server?)"
        ) from None


def _api_error(response: httpx.Response) -> ApiError:
    try:
        detail = api.ErrorBody.model_validate_json(response.content).error
    except ValidationError:
        text = response.text.strip().splitlines()[0][:200] if response.text.strip() else ""
        detail = api.ErrorDetail(
            code="http_error", message=f"HTTP {response.status_code} {text}".strip()
        )
    return error_for(response.status_code, detail.code, detail.message, detail.fields)


def _transport_reason(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.ConnectError):
        text = str(exc).lower()
        if "refused" in text:
            return "connection refused"
        if "name or service" in text or "nodename" in text or "resolution" in text:
            return "unknown host"
        return "cannot connect"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    return type(exc).__name__
