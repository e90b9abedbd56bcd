"""Registered nodes: bodies of /orgs/{org}/nodes and the node views of `brev nodes`."""

from __future__ import annotations

import ipaddress
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from brev.api.agents import Assignment
from brev.api.base import Name, _Model
from brev.api.events import Event


def _host_name_or_address(value: str) -> str:
    """An IPv4 or IPv6 address, or a host name whose labels are 1 to 63 characters: checked
    here because a name the resolver cannot encode ("a..b", a label of 64) raised from deep
    inside socket.getaddrinfo (a 500) instead of saying what was wrong."""
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    if ":" in value:
        raise ValueError(f"{value!r} is not an IPv6 address")
    labels = value.removesuffix(".").split(".")
    for label in labels:
        if not label:
            raise ValueError("a host name has no empty labels (no '..', no leading '.')")
        if len(label) > 63:
            raise ValueError(f"a host name's labels are at most 63 characters ({len(label)})")
    return value


# These end up in users' ssh_config files: a host name, IPv4 or IPv6 address, and a login,
# nothing that could carry a space, a quote or a newline (a directive of its own).
Host = Annotated[
    str,
    Field(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9_.:-]+$"),
    AfterValidator(_host_name_or_address),
]
Login = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._][\w.-]*$")]


class NodeStatus(StrEnum):
    INSTALLING = "installing"  # added; its agent has not reported yet
    ONLINE = "online"
    OFFLINE = "offline"  # 3 reports missed: its instances are unhealthy, their GPUs kept


class NodeGpu(_Model):
    index: int
    uuid: str | None
    model: str | None = Field(description="as the catalog names it, e.g. 'H200'")
    name: str = Field(description="as the driver names it, e.g. 'NVIDIA H200'")
    memory_mib: float | None
    unified_memory: bool = Field(description="memory shared with the host (DGX Spark, GB10)")
    instance: str | None = Field(description="the instance it is allocated to; null: free")


class Node(_Model):
    id: str
    name: str
    org: str
    status: NodeStatus
    ssh_host: str | None
    ssh_port: int
    ssh_user: str | None
    os: str | None
    arch: str | None
    cpu_count: int | None
    memory_bytes: int | None
    driver_version: str | None
    cuda_version: str | None
    price_per_hour: float | None = Field(description="internal USD/h per GPU; null: free")
    gpus: list[NodeGpu]
    instances: list[str] = Field(description="live instances on the node")
    last_heartbeat_at: datetime | None
    created_by: str
    created_at: datetime


class NodeDetail(Node):
    host_keys: list[str] = Field(description="pinned OpenSSH host keys")
    node_home: str | None = Field(description="the agent's folder on the machine")
    install_mode: str | None = Field(description="systemd, or supervised (a restart loop)")
    python: str | None
    telemetry: dict[str, Any] = Field(description="the agent's last report")
    events: list[Event] = Field(description="newest first")


class HostKeyQuery(_Model):
    host: Host
    port: int = Field(22, ge=1, le=65535)


class HostKey(_Model):
    host: str
    port: int
    host_key: str = Field(description="OpenSSH public key line, what --host-key takes")
    fingerprint: str = Field(description="SHA256:..., as ssh-keygen -lf prints it")


class NodeAdd(_Model):
    """`brev nodes add`: the plane connects over SSH and installs the agent."""

    name: Name
    host: Host
    port: int = Field(22, ge=1, le=65535)
    user: Login
    host_key: Annotated[str, Field(max_length=16384)] = Field(
        description="the machine's OpenSSH host key, pinned; see POST .../nodes/host-key"
    )
    private_key: Annotated[str, Field(max_length=16384)] | None = Field(
        None,
        description="private key the machine accepts, used for the install and then forgotten; "
        "null: a certificate from the plane's SSH CA (for machines that trust it)",
    )
    price_per_hour: float | None = Field(None, ge=0, description="internal USD/h per GPU")
    plane_url: Annotated[str, Field(max_length=2048, pattern=r"^https?://[^\s]+$")] | None = Field(
        None, description="where the machine's agent reaches the plane; default: the URL called"
    )


class NodeRegister(_Model):
    """`brev register`, run on the machine itself: the plane makes the node and its agent token."""

    name: Name
    facts: dict[str, Any] = Field(description="the machine's probe: os, arch, python, node_home...")
    host_keys: list[str] = Field(default_factory=list, max_length=16)
    price_per_hour: float | None = Field(None, ge=0)
    ssh_host: Host | None = Field(None, description="where users reach the machine's sshd")
    ssh_port: int = Field(22, ge=1, le=65535)
    ssh_user: Login | None = None


class NodeRegistered(_Model):
    node: NodeDetail
    token: str = Field(description="the node's agent token; shown once, never again")
    plane_url: str
    ssh_ca_public_key: str
    report_interval_seconds: float = Field(10.0, description="how often the agent reports")


class AssignmentsWatch(_Model):
    """GET /agent/assignments: a node agent's long-poll, answered as soon as what the node
    must host changes (or when the wait ends)."""

    version: int = Field(
        description="the node's assignments version; ask again with after=version to wait "
        "for the next change"
    )
    assignments: list[Assignment] = Field(description="every instance the node hosts")
    node_principals: list[str] = Field(
        description="principals that log in to the node itself (org admins)"
    )
