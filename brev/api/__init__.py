"""Request and response bodies of the REST API, shared by the server and `brev.client`.

Field names here are the API's contract and the shape of every `--json` output: rename nothing
without a new API version.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

API_PREFIX = "/api/v1"

# Names appear in URLs, SSH host aliases and cloud tags, so they stay DNS-label shaped.
NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
NAME_RULE = (
    "lowercase letters, digits and '-', 1 to 63 characters, "
    "starting and ending with a letter or digit"
)


def check_name(value: str) -> str:
    if not re.fullmatch(NAME_PATTERN, value):
        raise PydanticCustomError(
            "name", "invalid name {value}: use {rule}", {"value": repr(value), "rule": NAME_RULE}
        )
    return value


Name = Annotated[
    str,
    AfterValidator(check_name),
    Field(description=NAME_RULE, json_schema_extra={"pattern": NAME_PATTERN}),
]


class Role(StrEnum):
    ADMIN = "admin"
    MEMBER = "member"


class InstanceStatus(StrEnum):
    PENDING = "pending"
    PROVISIONING = "provisioning"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    DELETING = "deleting"
    DELETED = "deleted"
    FAILED = "failed"


class Health(StrEnum):
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    UNKNOWN = "unknown"


class _Model(BaseModel):
    # Finite numbers only: PostgreSQL's JSON refuses NaN and Infinity (a 500 there, stored on
    # SQLite), and no price, count or reading is infinite.
    model_config = ConfigDict(from_attributes=True, allow_inf_nan=False)


class ErrorDetail(_Model):
    code: str
    message: str
    fields: list[FieldError] = Field(default_factory=list)


class FieldError(_Model):
    field: str
    reason: str


class ErrorBody(_Model):
    """Every 4xx and 5xx response carries this body."""

    error: ErrorDetail


class ServerHealth(_Model):
    status: str
    version: str
    database: str


class User(_Model):
    id: str
    email: str
    name: str
    created_at: datetime


class Membership(_Model):
    org: str
    role: Role


class Whoami(_Model):
    user: User
    memberships: list[Membership]
    token_name: str
    token_org: str | None = Field(description="the only org this token may act in; null: any")
    default_org: str | None


class Org(_Model):
    id: str
    name: str
    created_at: datetime
    role: Role = Field(description="the caller's role in this org")


class OrgCreate(_Model):
    name: Name


class Member(_Model):
    email: str
    name: str
    role: Role
    joined_at: datetime


class MemberAdd(_Model):
    email: Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$", max_length=254)]
    name: Annotated[str, Field(max_length=100)] = ""
    role: Role = Role.MEMBER


class MemberRole(_Model):
    role: Role


class MemberAdded(_Model):
    member: Member
    login_token: str | None = Field(
        description="a token for a user created by this call; shown once, never again"
    )


class Token(_Model):
    id: str
    name: str
    prefix: str = Field(description="the first characters of the token, to recognise it")
    org: str | None
    owner: str = Field(description="email of the user the token acts as")
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    scope: TokenScope | None = Field(
        None, description="run: a CI token (offers, and only the instances it created); null: all"
    )
    max_price_per_hour: float | None = Field(None, description="run tokens: USD per hour at most")
    max_gpus: int | None = Field(None, description="run tokens: GPUs per instance at most")
    max_ttl_seconds: int | None = Field(
        None, description="run tokens: every instance they create expires within this"
    )


class TokenScope(StrEnum):
    RUN = "run"


class TokenCreate(_Model):
    name: Name
    expires_in_seconds: Annotated[int, Field(gt=0, le=10 * 365 * 24 * 3600)] | None = None
    scope: TokenScope | None = Field(None, description="run: a token for CI jobs' `brev run`")
    max_price_per_hour: float | None = Field(None, gt=0, le=10_000, description="run scope only")
    max_gpus: int | None = Field(None, ge=0, le=1024, description="run scope only")
    max_ttl_seconds: int | None = Field(None, gt=0, le=30 * 86400, description="run scope only")


class TokenCreated(_Model):
    token: Token
    secret: str = Field(description="the token itself; shown once, never again")


class Instance(_Model):
    id: str
    name: str
    org: str
    status: InstanceStatus
    health: Health
    status_reason: str | None
    gpu_spec: str | None = Field(description="what was asked for, e.g. 'A100:8'; null: CPU only")
    gpu_model: str | None
    gpu_count: int
    provider: str | None
    region: str | None
    instance_type: str | None
    price_per_hour: float | None
    node: str | None = Field(None, description="the registered node it runs on; null: a cloud")
    created_by: str = Field(description="email of the user who created it")
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None = Field(None, description="TTL: the plane deletes it then")
    run_lease_until: datetime | None = Field(
        None, description="`brev run`: deleted then unless the running CLI renews its lease"
    )


class Event(_Model):
    id: int
    created_at: datetime
    actor: str | None = Field(description="email of the user, or null for the control plane")
    action: str
    object_type: str
    object_name: str | None
    details: dict[str, object]


def _whole_as_int(value: int | float) -> int | float:
    return int(value) if float(value).is_integer() else value


# A count that is whole prints as 8, not 8.0; some clouds sell fractions of a GPU.
Count = Annotated[int | float, AfterValidator(_whole_as_int)]


class OfferSort(StrEnum):
    PRICE = "price"
    VRAM = "vram"
    GPUS = "gpus"


class Offer(_Model):
    """An instance type in a region that an org can get, with its price."""

    provider: str
    instance_type: str
    gpu_model: str | None = Field(description="e.g. 'A100-80GB'; null for a CPU-only offer")
    gpu_count: Count = Field(description="GPUs per instance (a fraction on some clouds)")
    gpu_memory_gib: float | None = Field(description="memory of one GPU")
    vcpus: Count | None
    memory_gib: float | None
    region: str
    zones: list[str] = Field(description="zones with this type; empty where zones do not apply")
    price_per_hour: float | None = Field(description="on-demand USD per hour; null: not sold")
    spot_price_per_hour: float | None = Field(description="lowest spot USD per hour; null: none")
    node: str | None = Field(None, description="a registered node's name: the offer is its GPUs")
    capacity_now: bool | None = Field(
        None,
        description="whether the provider has capacity for this type in this region right now, "
        "where it says and the org has it configured (Lambda); null: not known (AWS, GCP)",
    )


class CatalogSkip(_Model):
    region: str
    reason: str


class CatalogRefresh(_Model):
    """What a catalog refresh did for one provider."""

    provider: str
    rows: int = Field(description="offers of this provider in the catalog after the refresh")
    regions: list[str] = Field(description="regions refreshed from the provider's API")
    skipped: list[CatalogSkip] = Field(
        description="regions not refreshed, and why: their offers stay as they were"
    )
    unpriced: int = Field(0, description="offers the API lists with no known price: left out")
    error: str | None = Field(None, description="why nothing was refreshed; null otherwise")


class InstanceCreate(_Model):
    name: Name | None = Field(None, description="generated when absent, e.g. a100-brisk-otter")
    gpu: str | None = Field(None, description="GPU spec: a100, A100:8, a100-80gb, any, cpu")
    providers: list[str] | None = Field(None, max_length=16, description="only these providers")
    region: str | None = None
    spot: bool = False
    disk_gb: int = Field(200, ge=20, le=16384)
    max_price: float | None = Field(None, gt=0, description="USD per hour")
    image: Annotated[str, Field(max_length=255)] | None = None
    startup_script: Annotated[str, Field(max_length=16384)] | None = None
    idempotency_key: (
        Annotated[str, Field(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")] | None
    ) = Field(None, description="the same key twice returns the first instance")
    autostop_seconds: int | None = Field(
        None, gt=0, le=30 * 86400, description="stop after this long idle (GPUs < 5 %, no SSH)"
    )
    autostop_delete: bool = Field(False, description="autostop deletes instead of stopping")
    node: Name | None = Field(None, description="only this registered node")
    ttl_seconds: int | None = Field(
        None, gt=0, le=365 * 86400, description="delete it this long after creation"
    )
    run_lease_seconds: int | None = Field(
        None,
        ge=5,
        le=86400,
        description="`brev run`: deleted unless its lease is renewed within this (POST .../lease)",
    )


class Autostop(_Model):
    seconds: int | None = Field(gt=0, le=30 * 86400, description="null: autostop off")
    delete: bool = False


class Ttl(_Model):
    seconds: int | None = Field(
        gt=0, le=365 * 86400, description="delete the instance this long from now; null: no TTL"
    )


class Lease(_Model):
    instance: str
    run_lease_until: datetime = Field(description="deleted then unless renewed again")


class Placement(_Model):
    """One place the plane will try: an instance type in a region (and zone), or GPUs of a
    registered node (provider "local", `node` its name). The one shape from the plan to the
    provider: brev.server.services.placements converts and applies it."""

    provider: str
    instance_type: str
    region: str
    zone: str | None
    spot: bool
    gpu_model: str | None
    gpu_count: Count
    price_per_hour: float | None
    node: str | None = Field(None, description="the registered node this placement is on")


class InstancePlan(_Model):
    gpu: str
    placements: list[Placement] = Field(description="tried in this order until one succeeds")


class InstanceDetail(Instance):
    zone: str | None
    spot: bool
    disk_gb: int | None
    image: str | None
    desired_status: InstanceStatus
    provider_ref: str | None
    public_ip: str | None
    plan: list[Placement]
    attempt: int = Field(description="index in plan of the placement tried last")
    last_heartbeat_at: datetime | None = Field(description="the agent's last report")
    autostop_idle_seconds: int | None = Field(description="autostop window; null: off")
    autostop_delete: bool
    idle_since: datetime | None = Field(description="idle (for autostop) since; null: busy")
    telemetry: dict[str, Any] = Field(description="the agent's last report: GPUs and host")
    events: list[Event] = Field(description="newest first")


class AgentToken(_Model):
    instance: str
    token: str = Field(description="for this instance's agent only; shown once, never again")


class AgentReportIn(_Model):
    seq: int = Field(ge=1, description="increasing per agent; a seq already seen is dropped")
    report: dict[str, Any] = Field(description="brev.agent.report.AgentReport as JSON")


class AgentReports(_Model):
    reports: list[AgentReportIn] = Field(max_length=1000, description="oldest first")
    interval_seconds: float = Field(
        10.0, gt=0, le=3600, description="how often the agent reports: 3 missed = unhealthy"
    )


class Assignment(_Model):
    """An instance a node's agent keeps a working directory for, and the GPUs its sessions see."""

    instance: str
    gpu_indices: list[int] = Field(description="empty: no GPU (CPU instance, or stopped)")
    gpu_uuids: list[str]
    principal: str | None = Field(
        None, description="the SSH certificate principal that enters it (brev-enter NAME)"
    )
    active: bool = Field(True, description="false while stopped: the directory stays, no login")


class AgentReportsAccepted(_Model):
    accepted: int = Field(description="reports new to the plane; re-sent ones are not counted")
    last_seq: int
    assignments: list[Assignment] | None = Field(
        None, description="a node's agent only: every instance it hosts; null for instances"
    )
    node_principals: list[str] | None = Field(
        None,
        description="a node's agent only: principals that log in to the node itself "
        "(org admins, and the plane for installs)",
    )
    assignments_version: int | None = Field(
        None,
        description="a node's agent only: the version these assignments are at least as new "
        "as (an agent drops an answer older than what it applied; see GET /agent/assignments)",
    )


ErrorDetail.model_rebuild()


class GpuPoint(_Model):
    """One GPU at one moment: a raw sample, or the aggregate of a minute starting at `at`."""

    at: datetime
    utilization_pct: float | None = Field(description="a minute: average")
    memory_used_mib: float | None = Field(description="a minute: maximum")
    power_w: float | None = Field(description="a minute: average")
    temperature_c: float | None = Field(description="a minute: maximum")
    resolution: Literal["raw", "minute"] = Field(
        description="raw: one agent sample (kept an hour); minute: aggregate (kept 7 days)"
    )


class GpuSeries(_Model):
    gpu_index: int
    points: list[GpuPoint] = Field(description="oldest first")


# Registered nodes and SSH access live in their own modules; every name is brev.api's.
from brev.api.access import (
    SshCa as SshCa,
)
from brev.api.access import (
    SshCertificate as SshCertificate,
)
from brev.api.access import (
    SshCertificateRequest as SshCertificateRequest,
)
from brev.api.access import (
    SshTarget as SshTarget,
)
from brev.api.nodes import (
    AssignmentsWatch as AssignmentsWatch,
)
from brev.api.nodes import (
    HostKey as HostKey,
)
from brev.api.nodes import (
    HostKeyQuery as HostKeyQuery,
)
from brev.api.nodes import (
    Node as Node,
)
from brev.api.nodes import (
    NodeAdd as NodeAdd,
)
from brev.api.nodes import (
    NodeDetail as NodeDetail,
)
from brev.api.nodes import (
    NodeGpu as NodeGpu,
)
from brev.api.nodes import (
    NodeRegister as NodeRegister,
)
from brev.api.nodes import (
    NodeRegistered as NodeRegistered,
)
from brev.api.nodes import (
    NodeStatus as NodeStatus,
)
from brev.api.providers import (
    ProviderConfig as ProviderConfig,
)
from brev.api.providers import (
    ProviderConfigAdd as ProviderConfigAdd,
)
from brev.api.providers import (
    ProviderConfigKey as ProviderConfigKey,
)
from brev.api.providers import (
    ProviderKind as ProviderKind,
)
