"""The interface every provider implements, and the typed errors it raises.

A provider turns an offer (an instance type in a region, from the catalog) into a machine and
reports on it. It never touches the database: the reconciler calls it outside transactions and
records what it returns. Every call must be safe to repeat:

- `create` with the same idempotency key returns the same machine (AWS ClientToken, GCP
  requestId), so a crash between "the cloud made it" and "the database knows" heals itself;
- every machine carries TAG_INSTANCE_ID, TAG_ORG, TAG_PLANE and TAG_MANAGED (as tags or
  labels), so `list_owned` finds machines the database lost track of, and the sweep can
  delete them;
- `terminate` of a machine that is already gone succeeds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Protocol, runtime_checkable

TAG_INSTANCE_ID = "brev-instance-id"
TAG_ORG = "brev-org"
TAG_MANAGED = "brev-managed"
# Which control plane made the machine: the sweep of one plane never touches another's, even
# when two planes (staging and production, two teams) share a cloud account.
TAG_PLANE = "brev-plane"


class MachineState(StrEnum):
    """What the provider says about a machine, in brev's words."""

    PENDING = "pending"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    TERMINATED = "terminated"


@dataclass(frozen=True)
class Placement:
    """One place to try an offer: a region and, where the provider has them, a zone."""

    instance_type: str
    region: str
    zone: str | None
    spot: bool
    gpu_model: str | None
    gpu_count: int
    price_per_hour: float | None


@dataclass(frozen=True)
class InstanceSpec:
    """What to create. `instance_id`, `org` and `plane_id` become tags; `name` a readable label."""

    instance_id: str
    org: str
    name: str
    disk_gb: int
    plane_id: str
    image: str | None = None
    startup_script: str | None = None
    ssh_public_keys: tuple[str, ...] = ()
    # The plane's first-boot script (SSH CA trust, the agent), run before the user's.
    boot_script: str | None = None

    def user_script(self) -> str:
        """What the machine runs at first boot, as root: the plane's part, then the user's."""
        parts = ["#!/bin/bash", f"# brev instance {self.instance_id} ({self.name}) of {self.org}"]
        if self.boot_script:
            parts.append(self.boot_script)
        if self.startup_script:
            parts += ["# the user's startup script", self.startup_script]
        return "\n".join(parts) + "\n"


@dataclass(frozen=True)
class ProviderRef:
    """Enough to find a machine again: the provider's id, where it lives."""

    provider: str
    region: str
    zone: str | None
    id: str


@dataclass(frozen=True)
class Machine:
    ref: ProviderRef
    state: MachineState
    instance_type: str | None = None
    public_ip: str | None = None
    private_ip: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    launched_at: datetime | None = None
    # A create still in flight at the provider (GCP's insert operation): the reconciler keeps
    # this handle and asks `operation_done` at later steps instead of holding a worker.
    operation: str | None = None


class ProviderError(Exception):
    """Base of the typed errors. `message` is fit to show a user; never a secret in it."""

    retryable = False

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class NoCapacity(ProviderError):
    """This zone or region has no machines of this type now: try the next placement."""


class QuotaExceeded(ProviderError):
    """The account may not have more of these here: try the next region or offer."""


class InvalidRequest(ProviderError):
    """The request can never succeed as it is (bad image, unknown type): stop and tell the user."""


class CredentialsError(ProviderError):
    """The credentials are wrong, expired, or lack a permission: stop and tell the user."""


class Transient(ProviderError):
    """Throttling, a timeout, a 5xx: the same call may succeed later."""

    retryable = True


class NotFound(ProviderError):
    """The machine is not there (any more): a delete of it is done, a describe says None."""


class Disposition(StrEnum):
    """What the plane does after a provider error: one policy for create, converge and delete."""

    NEXT_PLACEMENT = "next_placement"  # no capacity, quota: this placement cannot be had now
    RETRY = "retry"  # throttling, 5xx, timeouts: the same call again, after a back-off
    FAIL = "fail"  # a bad request, credentials: nothing will change until a person acts
    GONE = "gone"  # the machine does not exist: a delete succeeded, a describe is None


def disposition(error: ProviderError) -> Disposition:
    """The one classification of provider errors; an untyped ProviderError is a failure (a
    provider that knows better raises a subclass)."""
    if isinstance(error, NotFound):
        return Disposition.GONE
    if isinstance(error, (NoCapacity, QuotaExceeded)):
        return Disposition.NEXT_PLACEMENT
    if error.retryable:
        return Disposition.RETRY
    return Disposition.FAIL


class SdkMissing(CredentialsError):
    """The provider's SDK is not installed on the plane: a person must install it."""

    def __init__(self, display_name: str, extra: str) -> None:
        super().__init__(
            f"{display_name} support is not installed on the plane: pip install 'brev[{extra}]'",
            code="sdk_missing",
        )


@dataclass(frozen=True)
class ConfigKey:
    """One key of a provider's config, as `brev provider add NAME` collects it.

    The CLI takes it as `--FLAG VALUE` (FLAG: `flag`, else the name with dashes), else from the
    environment variable `env`; `from_file`: the flag names a file whose text is the value.
    `local`: only the CLI's discovery reads it (an AWS profile name); it is not sent."""

    name: str
    help: str
    required: bool = False
    secret: bool = False  # never printed; the dashboard asks for it in a password field
    env: str | None = None
    from_file: bool = False
    flag: str | None = None
    local: bool = False

    @property
    def option(self) -> str:
        return "--" + (self.flag or self.name.replace("_", "-"))


class Provider(Protocol):
    name: str
    # What a plug-in declares, read by `brev provider add`, the plane's checks and the dashboard.
    display_name: ClassVar[str]
    config_keys: ClassVar[tuple[ConfigKey, ...]]

    def validate(self) -> str:
        """Check the credentials with a cheap read-only call; return who they are."""
        ...

    def create(self, spec: InstanceSpec, placement: Placement, idempotency_key: str) -> Machine: ...

    def describe(self, ref: ProviderRef) -> Machine | None:
        """The machine as the provider sees it now; None when it no longer exists."""
        ...

    def start(self, ref: ProviderRef) -> None: ...

    def stop(self, ref: ProviderRef) -> None: ...

    def terminate(self, ref: ProviderRef) -> None:
        """Idempotent: terminating a machine that is gone is not an error."""
        ...

    def list_owned(self, regions: Iterable[str]) -> Iterable[Machine]:
        """Every machine in these regions carrying TAG_MANAGED, whatever its org."""
        ...


@runtime_checkable
class LiveCapacity(Protocol):
    """What a provider that can say where it has capacity now also implements (Lambda Cloud):
    the reconciler skips a placement without capacity instead of asking for it."""

    def regions_with_capacity(self) -> Mapping[str, frozenset[str]]:
        """Instance type -> the regions with capacity for it now (cached briefly: providers
        limit their request rates)."""
        ...


@runtime_checkable
class LongOperations(Protocol):
    """What a provider whose `create` may return before the machine exists also implements
    (Machine.operation set): the reconciler polls it at its next steps."""

    def operation_done(self, ref: ProviderRef, operation: str) -> bool:
        """True when the operation ended well, False while it runs; its typed error (a
        ProviderError) when it failed."""
        ...


class ProviderFactory(Protocol):
    """What the `brev.providers` entry point names: builds a provider from an org's config."""

    def __call__(self, config: Mapping[str, Any]) -> Provider: ...
