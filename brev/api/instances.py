"""Instances: their statuses, bodies of /orgs/{org}/instances, plans and placements, TTLs,
autostop and run leases."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import Field

from brev.api.base import Count, Name, _Model
from brev.api.events import Event


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
