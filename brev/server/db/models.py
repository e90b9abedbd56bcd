"""Tables of the control plane.

Every org-owned row carries `org_id`; services filter on it in every query. Statuses and roles
are stored as short strings (see `brev.api` for the values), so adding a state needs no
migration.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    event,
    inspect,
    text,
)
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, Mapper, mapped_column


def new_id() -> str:
    return uuid.uuid4().hex


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


# Stable constraint names: alembic can drop and compare them on both backends.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON}


class Plane(Base):
    """This control plane's identity: one row, made by the migration that added the table.
    Machines are tagged with it, so a sweep touches only its own plane's machines."""

    __tablename__ = "plane"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    ssh_ca_key: Mapped[str | None] = mapped_column(
        Text, doc="the SSH CA's private key, sealed (brev.server.secrets); made on first use"
    )


class Replica(Base):
    """A server process reconciling on this database, and when it last said it was alive: the
    leases of a replica that stopped heartbeating are free (brev.server.reconciler.replicas)."""

    __tablename__ = "replicas"

    id: Mapped[str] = mapped_column(String(64), primary_key=True, doc="= instances.lease_owner")
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    disabled_at: Mapped[datetime | None]


class Org(Base):
    __tablename__ = "orgs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Membership(Base):
    __tablename__ = "memberships"

    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    org_id: Mapped[str] = mapped_column(
        ForeignKey("orgs.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiToken(Base):
    """A bearer token. Only its SHA-256 is stored; `prefix` lets people recognise it in lists.

    `kind` is `user` for people and CI, `agent` for the agent of one instance or node (those
    rows set `instance_id` or `node_id` and can do nothing but report for it). A token with
    `org_id` acts only in that org; without, in every org of its user.
    """

    __tablename__ = "api_tokens"
    __table_args__ = (
        # A name is reusable once the token carrying it is revoked.
        Index(
            "uq_api_tokens_user_id_name_active",
            "user_id",
            "name",
            unique=True,
            sqlite_where=text("revoked_at IS NULL"),
            postgresql_where=text("revoked_at IS NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    org_id: Mapped[str | None] = mapped_column(
        ForeignKey("orgs.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16), default="user")
    instance_id: Mapped[str | None] = mapped_column(ForeignKey("instances.id", ondelete="CASCADE"))
    node_id: Mapped[str | None] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(63))
    prefix: Mapped[str] = mapped_column(String(16))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    # `run`: a CI token (brev.server.services.run_tokens): offers, and only the instances it
    # created, within these limits. None: everything its user may do.
    scope: Mapped[str | None] = mapped_column(String(16))
    max_price_per_hour: Mapped[float | None] = mapped_column(Float)
    max_gpus: Mapped[int | None] = mapped_column(Integer)
    max_ttl_seconds: Mapped[int | None] = mapped_column(Integer)


class WebSession(Base):
    """A browser signed in to the dashboard (brev.server.services.web_sessions).

    It acts as the token it was started with, so revoking that token ends it too. The browser
    holds the secret in an HttpOnly cookie; only its SHA-256 is here. `csrf_token` is not a
    secret of the same kind: the page's script holds it and sends it back on every write,
    which a cross-site form cannot.
    """

    __tablename__ = "web_sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    token_id: Mapped[str] = mapped_column(
        ForeignKey("api_tokens.id", ondelete="CASCADE"), index=True
    )
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    ended_at: Mapped[datetime | None] = mapped_column(doc="signed out")


class LoginLink(Base):
    """A single-use, short-lived code that `brev dashboard` puts in the URL it opens."""

    __tablename__ = "login_links"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    token_id: Mapped[str] = mapped_column(ForeignKey("api_tokens.id", ondelete="CASCADE"))
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class Node(Base):
    """A machine the team owns (DGX Spark, workstation, rack server), registered with the plane."""

    __tablename__ = "nodes"
    __table_args__ = (
        # A removed node keeps its row (its instances' history points at it) and frees its name.
        Index(
            "uq_nodes_org_id_name_live",
            "org_id",
            "name",
            unique=True,
            sqlite_where=text("removed_at IS NULL"),
            postgresql_where=text("removed_at IS NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(63))
    ssh_host: Mapped[str | None] = mapped_column(String(255))
    ssh_port: Mapped[int] = mapped_column(Integer, default=22)
    ssh_user: Mapped[str | None] = mapped_column(String(64))
    host_keys: Mapped[str | None] = mapped_column(Text, doc="pinned OpenSSH host keys, one a line")
    status: Mapped[str] = mapped_column(String(16), default="offline")
    price_per_hour: Mapped[float | None] = mapped_column(Float)
    os: Mapped[str | None] = mapped_column(String(100))
    arch: Mapped[str | None] = mapped_column(String(32))
    cpu_count: Mapped[int | None]
    memory_bytes: Mapped[int | None] = mapped_column(BigInteger)
    hardware: Mapped[dict[str, Any]] = mapped_column(default=dict, doc="last agent inventory")
    created_by_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_heartbeat_at: Mapped[datetime | None]
    removed_at: Mapped[datetime | None]
    node_home: Mapped[str | None] = mapped_column(
        String(255), doc="the agent's folder on the machine"
    )
    install_mode: Mapped[str | None] = mapped_column(String(16), doc="systemd or supervised")
    python: Mapped[str | None] = mapped_column(String(255))
    # As for instances: the sequence number of the agent's newest report, to drop re-sends.
    last_report_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    report_interval_seconds: Mapped[float | None] = mapped_column(Float)
    # Bumped whenever what the node's agent must host changes; the agent waits on it.
    assignments_version: Mapped[int] = mapped_column(BigInteger, default=0)


class GpuAllocation(Base):
    """One GPU of a node given to one instance. The primary key is what makes double-booking
    impossible: two transactions that pick the same GPU cannot both commit, on any number of
    server processes."""

    __tablename__ = "gpu_allocations"

    node_id: Mapped[str] = mapped_column(
        ForeignKey("nodes.id", ondelete="CASCADE"), primary_key=True
    )
    gpu_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    instance_id: Mapped[str] = mapped_column(
        ForeignKey("instances.id", ondelete="CASCADE"), index=True
    )
    gpu_uuid: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Instance(Base):
    """A GPU (or CPU) machine the org asked for, on a cloud provider or a registered node.

    `desired_status` is what the user wants; `status` is what the reconcilers last saw.
    """

    __tablename__ = "instances"
    __table_args__ = (
        # Deleted instances keep their row (billing and audit) and free their name.
        Index(
            "uq_instances_org_id_name_live",
            "org_id",
            "name",
            unique=True,
            sqlite_where=text("deleted_at IS NULL"),
            postgresql_where=text("deleted_at IS NULL"),
        ),
        Index("ix_instances_status", "status"),
        Index("ix_instances_next_check_at", "next_check_at"),
        # The dashboard's live poll (brev.server.fleet_watch) reads only this index.
        Index("ix_instances_org_id_changes", "org_id", "updated_at", "last_heartbeat_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(63))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    desired_status: Mapped[str] = mapped_column(String(16), default="running")
    health: Mapped[str] = mapped_column(String(16), default="unknown")
    status_reason: Mapped[str | None] = mapped_column(Text)
    gpu_spec: Mapped[str | None] = mapped_column(String(64))
    gpu_model: Mapped[str | None] = mapped_column(String(64))
    gpu_count: Mapped[int] = mapped_column(Integer, default=0)
    provider: Mapped[str | None] = mapped_column(String(32))
    region: Mapped[str | None] = mapped_column(String(64))
    zone: Mapped[str | None] = mapped_column(String(64))
    instance_type: Mapped[str | None] = mapped_column(String(64))
    spot: Mapped[bool] = mapped_column(Boolean, default=False)
    disk_gb: Mapped[int | None]
    image: Mapped[str | None] = mapped_column(String(255))
    price_per_hour: Mapped[float | None] = mapped_column(Float)
    node_id: Mapped[str | None] = mapped_column(ForeignKey("nodes.id"), index=True)
    provider_ref: Mapped[str | None] = mapped_column(String(255), doc="the provider's own id")
    provider_operation: Mapped[str | None] = mapped_column(
        String(255), doc="a create in flight at the provider: its handle, polled"
    )
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True, default=new_id)
    autostop_idle_seconds: Mapped[int | None]
    expires_at: Mapped[datetime | None] = mapped_column(doc="TTL: deleted at this time")
    # `brev run`: the CLI renews the lease while it runs; a lapsed lease deletes the instance.
    run_lease_seconds: Mapped[int | None]
    run_lease_until: Mapped[datetime | None]
    # Not a foreign key: api_tokens already points here (agent tokens), and a cycle of
    # foreign keys complicates creating and dropping both tables.
    created_by_token_id: Mapped[str | None] = mapped_column(String(32), index=True)
    ssh_host: Mapped[str | None] = mapped_column(String(255))
    ssh_port: Mapped[int | None]
    host_keys: Mapped[str | None] = mapped_column(Text)
    created_by_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # When what the instance is last changed; moved by `_note_a_change` below, not onupdate.
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_heartbeat_at: Mapped[datetime | None]
    deleted_at: Mapped[datetime | None]
    # The reconciler's bookkeeping. `plan` is the ordered list of placements to try (failover);
    # `attempt` indexes it and, with `idempotency_key`, names each provider create so a retry
    # after a crash finds the machine the first call made.
    startup_script: Mapped[str | None] = mapped_column(Text)
    plan: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    transient_failures: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None]
    next_check_at: Mapped[datetime | None] = mapped_column(doc="not before: back-off, polling")
    # `running` means reachable: a machine the provider calls running boots until its agent's
    # first report after `boot_started_at` (or its sshd's answer); a first boot not reachable
    # by `boot_deadline_at` is given back and the next placement tried.
    boot_started_at: Mapped[datetime | None]
    boot_deadline_at: Mapped[datetime | None]
    # The agent's last report (brev.agent.report.AgentReport as JSON) and its sequence number:
    # a report with a number already seen is a re-send after an outage, and is dropped.
    telemetry: Mapped[dict[str, Any]] = mapped_column(default=dict)
    last_report_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    report_interval_seconds: Mapped[float | None] = mapped_column(Float, doc="the agent's pace")
    # Autostop: since when every report said idle (GPUs under 5 %, no SSH session); None: busy.
    idle_since: Mapped[datetime | None]
    autostop_delete: Mapped[bool] = mapped_column(Boolean, default=False)


# Columns whose change is bookkeeping, not a change of the instance: an agent's report (its
# readings, idleness, pace, pinned host keys) and a reconciler's lease and schedule. The
# instances list's ETag and the dashboard's live version follow `updated_at`, so a fleet of
# reporting agents would otherwise make every open page re-read every list every second.
INSTANCE_BOOKKEEPING = frozenset(
    {
        "telemetry",
        "last_report_seq",
        "report_interval_seconds",
        "last_heartbeat_at",
        "idle_since",
        "host_keys",
        "lease_owner",
        "lease_expires_at",
        "next_check_at",
        "transient_failures",
    }
)


@event.listens_for(Instance, "before_update")
def _note_a_change(_mapper: Mapper[Instance], _connection: Connection, target: Instance) -> None:
    """ORM writes move `updated_at` unless they touched bookkeeping only (or set it
    themselves). A Core `update(Instance)` sets it itself where it changes what the row is."""
    state = inspect(target)
    # Only the attributes set since the load (committed_state's keys) can have changed: asking
    # each of the ~50 for its history was 8% of a replica's time at saturation.
    changed = {key for key in state.committed_state if state.attrs[key].history.has_changes()}
    if "updated_at" not in changed and not changed <= INSTANCE_BOOKKEEPING:
        target.updated_at = utcnow()


class ProviderConfig(Base):
    """An org's credentials for one provider, encrypted at rest (see brev.server.secrets)."""

    __tablename__ = "provider_configs"
    __table_args__ = (UniqueConstraint("org_id", "provider"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(32))
    encrypted_config: Mapped[str] = mapped_column(Text)
    identity: Mapped[str] = mapped_column(String(255), doc="who the credentials are, not them")
    created_by_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Event(Base):
    """The audit log: who did what to which object, and when. Rows are never updated."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_org_id_id", "org_id", "id"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    org_id: Mapped[str | None] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"))
    actor_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    action: Mapped[str] = mapped_column(String(64))
    object_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[str | None] = mapped_column(String(32))
    object_name: Mapped[str | None] = mapped_column(String(255))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class GpuSample(Base):
    """One GPU's reading from one agent report. Kept an hour, then rolled into `gpu_minutes`
    (brev.server.services.gpu_metrics), so storage per instance stays bounded."""

    __tablename__ = "gpu_samples"
    __table_args__ = (Index("ix_gpu_samples_instance_id_at", "instance_id", "at"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    instance_id: Mapped[str] = mapped_column(ForeignKey("instances.id", ondelete="CASCADE"))
    gpu_index: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime]
    utilization_pct: Mapped[float | None] = mapped_column(Float)
    memory_used_mib: Mapped[float | None] = mapped_column(Float)
    power_w: Mapped[float | None] = mapped_column(Float)
    temperature_c: Mapped[float | None] = mapped_column(Float)


class GpuMinute(Base):
    """One GPU's samples of one minute, summed up; kept seven days. The key is the index."""

    __tablename__ = "gpu_minutes"

    instance_id: Mapped[str] = mapped_column(
        ForeignKey("instances.id", ondelete="CASCADE"), primary_key=True
    )
    minute: Mapped[datetime] = mapped_column(primary_key=True)
    gpu_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    utilization_pct: Mapped[float | None] = mapped_column(Float, doc="average")
    memory_used_mib: Mapped[float | None] = mapped_column(Float, doc="maximum")
    power_w: Mapped[float | None] = mapped_column(Float, doc="average")
    temperature_c: Mapped[float | None] = mapped_column(Float, doc="maximum")
    samples: Mapped[int] = mapped_column(Integer)
