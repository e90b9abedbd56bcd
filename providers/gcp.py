"""Google Compute Engine, through google-cloud-compute's REST transport.

`google.cloud.compute_v1` costs about 2 s to import, so it is imported inside methods only,
after `sdks.GCP` said it is installed (`brev[gcp]`; the registry asks before building one).
Every call passes `retry=None` and a timeout: the reconciler owns retries and backoff, and the
library's own defaults would retry some calls for up to 600 s inside one reconcile pass.

Operations are waited on with our own `ZoneOperationsClient`, built with the same endpoint: the
extended operation that `insert()` returns would poll the real Google host, whatever endpoint
the instances client was given.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from .base import (
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
    NotFound,
    Placement,
    ProviderRef,
    Transient,
)
from .gcp_errors import AlreadyExists, operation_error, translated
from .sdks import GCP

if TYPE_CHECKING:
    from google.auth.credentials import Credentials
    from google.cloud import compute_v1

# Fixed forever: the same idempotency key must give the same requestId in every process.
_REQUEST_ID_NAMESPACE = uuid.UUID("5b0f3c2e-8d7a-4e61-9c3f-1a2b3c4d5e6f")

_DLVM_FAMILIES = "projects/deeplearning-platform-release/global/images/family/"
# A Deep Learning VM image: NVIDIA driver and CUDA preinstalled, so a GPU works at first boot.
DEFAULT_IMAGE = _DLVM_FAMILIES + "common-cu128-ubuntu-2204-nvidia-570"
SSH_USER = "ubuntu"  # the login the guest agent creates for `ssh-keys` on Ubuntu images
# These families carry their GPUs in the machine type; adding guestAccelerators is an error.
_BUILT_IN_GPU_FAMILIES = frozenset({"a2", "a3", "a4", "a4x", "g2", "g4"})
# Newer machine types boot from Hyperdisk only; the rest take pd-balanced.
_HYPERDISK_ONLY = ("a3-ultragpu", "a4-", "a4x-", "g4-")
# N1 machines take GPUs as accelerators; the catalog names the model, GCP wants its type.
_ACCELERATOR_TYPES = {model: f"nvidia-tesla-{model}" for model in ("t4", "v100", "p100", "p4")}
# GCP's TERMINATED means stopped (the disk is kept); a deleted instance is simply gone (404).
_STATES = {
    **dict.fromkeys(["PROVISIONING", "STAGING", "REPAIRING"], MachineState.PENDING),
    "RUNNING": MachineState.RUNNING,
    **dict.fromkeys(["STOPPING", "SUSPENDING", "PENDING_STOP"], MachineState.STOPPING),
    **dict.fromkeys(["STOPPED", "SUSPENDED", "TERMINATED"], MachineState.STOPPED),
}
_CALL_TIMEOUT_S = 60.0
_NO_RETRY: dict[str, Any] = {"retry": None, "timeout": _CALL_TIMEOUT_S}
_WAIT_CALL_S = 150.0  # operations.wait long-polls for up to 2 minutes on the server


def request_id(idempotency_key: str, zone: str) -> str:
    """GCP wants a UUID; the zone is part of it because one requestId names one request."""
    return str(uuid.uuid5(_REQUEST_ID_NAMESPACE, f"{idempotency_key}/{zone}"))


def instance_name(instance_id: str) -> str:
    """`brev-<id>`: lowercase, starts with a letter, at most 63 characters, no trailing dash."""
    slug = re.sub(r"[^a-z0-9-]+", "-", instance_id.lower()).strip("-")
    return f"brev-{slug}"[:63].rstrip("-")


def label_value(value: str) -> str:
    """GCP label values: lowercase letters, digits, `_` and `-`, at most 63 characters."""
    return re.sub(r"[^a-z0-9_-]", "-", value.lower())[:63]


def region_of(zone: str) -> str:
    return zone.rpartition("-")[0]


@dataclass(frozen=True)
class _Clients:
    instances: compute_v1.InstancesClient
    operations: compute_v1.ZoneOperationsClient
    projects: compute_v1.ProjectsClient
    account: str | None


class GcpProvider:
    """Config: `project` (required), `credentials_json` (a service-account key), `endpoint_url`
    (tests: a local server speaking the Compute REST API, with anonymous credentials). Without
    either of the last two, Application Default Credentials are used."""

    name = "gcp"
    display_name: ClassVar[str] = "GCP"
    sdk = GCP
    config_keys: ClassVar[tuple[ConfigKey, ...]] = (
        ConfigKey("project", "GCP project id", required=True, env="GOOGLE_CLOUD_PROJECT"),
        ConfigKey(
            "credentials_json",
            "service-account JSON key",
            secret=True,
            env="GOOGLE_APPLICATION_CREDENTIALS",
            from_file=True,
            flag="credentials-file",
        ),
        ConfigKey("endpoint_url", "a Compute endpoint other than Google's own (tests)"),
    )

    @classmethod
    def discover(cls, values: dict[str, str]) -> dict[str, str]:
        """The key file must be a JSON key; without one only a test endpoint will do."""
        text = values.get("credentials_json")
        if text is not None:
            try:
                json.loads(text)
            except ValueError:
                raise InvalidRequest(
                    "the --credentials-file is not a JSON service-account key"
                ) from None
        elif not values.get("endpoint_url"):
            raise CredentialsError(
                "no GCP credentials: pass --credentials-file KEY.json "
                "or set GOOGLE_APPLICATION_CREDENTIALS"
            )
        return values

    def __init__(
        self,
        config: Mapping[str, Any],
        *,
        operation_timeout_s: float = 600.0,
        poll_interval_s: float = 2.0,
    ) -> None:
        project = config.get("project")
        if not isinstance(project, str) or not project:
            raise InvalidRequest("the GCP provider needs a project")
        self.project = project
        self._credentials_json: str | None = config.get("credentials_json")
        self._endpoint_url: str | None = config.get("endpoint_url")
        self._operation_timeout_s = operation_timeout_s
        self._poll_interval_s = poll_interval_s
        self._lock = threading.Lock()
        self._clients: _Clients | None = None

    # -- the Provider interface ----------------------------------------------------------------

    def validate(self) -> str:
        clients = self._get_clients()
        with translated("check the GCP credentials"):
            project = clients.projects.get(project=self.project, **_NO_RETRY)
        who = f" as {clients.account}" if clients.account else ""
        return f"project {project.name}{who}"

    def create(self, spec: InstanceSpec, placement: Placement, idempotency_key: str) -> Machine:
        zone = placement.zone
        if not zone:
            raise InvalidRequest("a GCP placement needs a zone")
        if placement.region and region_of(zone) != placement.region:
            raise InvalidRequest(f"zone {zone} is not in region {placement.region}")
        from google.cloud import compute_v1

        clients = self._get_clients()
        name = instance_name(spec.instance_id)
        action = f"create {placement.instance_type} in {zone}"
        request = compute_v1.InsertInstanceRequest(
            project=self.project,
            zone=zone,
            instance_resource=_instance_resource(spec, placement, zone, name),
            request_id=request_id(idempotency_key, zone),
        )
        ref = ProviderRef("gcp", region_of(zone), zone, name)
        try:
            with translated(action):
                operation = clients.instances.insert_unary(request=request, **_NO_RETRY)
        except AlreadyExists:
            # A retry after a crash found our name taken: the label says whose it is.
            machine = self.describe(ref)
            if machine is None:
                raise Transient(
                    f"{action}: instance {name} was gone right after its creation"
                ) from None
            if machine.tags.get(TAG_INSTANCE_ID) != label_value(spec.instance_id):
                raise InvalidRequest(
                    f"{action}: {name} exists and belongs to another instance"
                ) from None
            return machine
        # The insert runs for tens of seconds: its handle goes back now, not its outcome.
        return Machine(
            ref=ref,
            state=MachineState.PENDING,
            instance_type=placement.instance_type,
            tags={TAG_INSTANCE_ID: label_value(spec.instance_id)},
            # The handle: the operation's name, and the machine type for its messages.
            operation=f"{operation.name} {placement.instance_type}",
        )

    def operation_done(self, ref: ProviderRef, operation: str) -> bool:
        """Whether the insert (or another zone operation) on `ref` ended; its error if failed."""
        from google.cloud import compute_v1

        zone = _zone(ref)
        name, _, machine_type = operation.partition(" ")
        action = f"create {machine_type or ref.id} in {zone}"
        with translated(action):
            answer = self._get_clients().operations.get(
                project=self.project, zone=zone, operation=name, **_NO_RETRY
            )
        if answer.status != compute_v1.Operation.Status.DONE:
            return False
        if answer.error.errors:
            raise operation_error(answer, action, zone)
        return True

    def describe(self, ref: ProviderRef) -> Machine | None:
        instances = self._get_clients().instances
        try:
            with translated(f"describe {ref.id}"):
                instance = instances.get(**self._target(ref))
        except NotFound:
            return None
        return _machine(instance)

    def start(self, ref: ProviderRef) -> None:
        self._act(ref, "start", self._get_clients().instances.start_unary)

    def stop(self, ref: ProviderRef) -> None:
        self._act(ref, "stop", self._get_clients().instances.stop_unary)

    def terminate(self, ref: ProviderRef) -> None:
        try:
            self._act(ref, "terminate", self._get_clients().instances.delete_unary)
        except NotFound:
            return  # already gone, perhaps deleted by a concurrent pass: that is success

    def list_owned(self, regions: Iterable[str]) -> list[Machine]:
        wanted = set(regions)
        if not wanted:
            return []
        from google.cloud import compute_v1

        clients = self._get_clients()
        request = compute_v1.AggregatedListInstancesRequest(
            project=self.project, filter=f"labels.{TAG_MANAGED}=true"
        )
        machines: list[Machine] = []
        # Pages are fetched while iterating, so the whole loop sits inside the translation.
        with translated("list brev instances"):
            for scope, scoped in clients.instances.aggregated_list(request=request, **_NO_RETRY):
                if region_of(scope.rpartition("/")[2]) not in wanted:
                    continue
                # Checked again here: a leak sweep must never act on someone else's machine.
                machines.extend(
                    _machine(i) for i in scoped.instances if i.labels.get(TAG_MANAGED) == "true"
                )
        return machines

    # -- plumbing --------------------------------------------------------------------------------

    def _target(self, ref: ProviderRef) -> dict[str, Any]:
        """The arguments that name one instance, with our retry and timeout policy."""
        return {"project": self.project, "zone": _zone(ref), "instance": ref.id, **_NO_RETRY}

    def _act(self, ref: ProviderRef, verb: str, call: Callable[..., compute_v1.Operation]) -> None:
        with translated(f"{verb} {ref.id}"):
            operation = call(**self._target(ref))
        self._wait(operation, _zone(ref), f"{verb} {ref.id}")

    def _get_clients(self) -> _Clients:
        with self._lock:
            if self._clients is None:
                self._clients = self._build_clients()
            return self._clients

    def _build_clients(self) -> _Clients:
        from google.cloud import compute_v1

        credentials, account = self._credentials()
        options = {"api_endpoint": self._endpoint_url} if self._endpoint_url else None
        with translated("load the GCP credentials"):
            return _Clients(
                compute_v1.InstancesClient(credentials=credentials, client_options=options),
                compute_v1.ZoneOperationsClient(credentials=credentials, client_options=options),
                compute_v1.ProjectsClient(credentials=credentials, client_options=options),
                account,
            )

    def _credentials(self) -> tuple[Credentials | None, str | None]:
        if self._endpoint_url:
            from google.auth import credentials as auth_credentials

            anonymous: Any = auth_credentials.AnonymousCredentials  # its __init__ is untyped
            return anonymous(), None
        if self._credentials_json is None:
            return None, None  # the client falls back to Application Default Credentials
        from google.oauth2 import service_account

        try:
            info = json.loads(self._credentials_json)
            load: Any = service_account.Credentials.from_service_account_info  # untyped
            credentials: service_account.Credentials = load(
                info, scopes=["https://www.googleapis.com/auth/compute"]
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            # The key's text must not reach a message: say what is wrong, not what it holds.
            raise CredentialsError("credentials_json is not a service-account key") from None
        return credentials, credentials.service_account_email

    def _wait(self, operation: compute_v1.Operation, zone: str, action: str) -> None:
        from google.cloud import compute_v1

        done = compute_v1.Operation.Status.DONE
        deadline = time.monotonic() + self._operation_timeout_s
        while operation.status != done:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Transient(f"{action}: operation {operation.name} is still running")
            with translated(action):
                operation = self._get_clients().operations.wait(
                    project=self.project,
                    zone=zone,
                    operation=operation.name,
                    retry=None,
                    timeout=min(remaining, _WAIT_CALL_S),
                )
            if operation.status != done:
                time.sleep(min(self._poll_interval_s, max(0.0, deadline - time.monotonic())))
        if operation.error.errors:
            raise operation_error(operation, action, zone)


def _zone(ref: ProviderRef) -> str:
    if not ref.zone:
        raise InvalidRequest(f"GCP instance {ref.id} has no zone in its reference")
    return ref.zone


def _instance_resource(
    spec: InstanceSpec, placement: Placement, zone: str, name: str
) -> compute_v1.Instance:
    from google.cloud import compute_v1

    family = placement.instance_type.split("-", 1)[0]
    accelerators: list[dict[str, Any]] = []
    if placement.gpu_count and family not in _BUILT_IN_GPU_FAMILIES:
        model = (placement.gpu_model or "").lower()
        accelerator = model if model.startswith("nvidia-") else _ACCELERATOR_TYPES.get(model)
        if accelerator is None:
            raise InvalidRequest(f"GPU {placement.gpu_model!r} cannot be attached on GCP")
        accelerators.append(
            {
                "accelerator_type": f"zones/{zone}/acceleratorTypes/{accelerator}",
                "accelerator_count": placement.gpu_count,
            }
        )
    has_gpu = bool(accelerators) or family in _BUILT_IN_GPU_FAMILIES
    # GPUs cannot live-migrate, and Spot machines may not restart by themselves.
    scheduling = compute_v1.Scheduling(
        on_host_maintenance="TERMINATE" if has_gpu or placement.spot else "MIGRATE",
        automatic_restart=not placement.spot,
    )
    if placement.spot:
        scheduling.provisioning_model = "SPOT"
        scheduling.instance_termination_action = "STOP"  # preemption keeps the disk
    image = spec.image or DEFAULT_IMAGE
    if "/" not in image:
        image = _DLVM_FAMILIES + image  # a bare name is a Deep Learning VM image family
    hyperdisk = placement.instance_type.startswith(_HYPERDISK_ONLY)
    disk_type = "hyperdisk-balanced" if hyperdisk else "pd-balanced"
    # GCP runs it at every boot: the plane's part is idempotent (brev.server.services.first_boot).
    items = [{"key": "startup-script", "value": spec.user_script()}]
    if spec.ssh_public_keys:
        keys = "\n".join(f"{SSH_USER}:{key.strip()}" for key in spec.ssh_public_keys)
        items.append({"key": "ssh-keys", "value": keys})
    labels = {
        TAG_INSTANCE_ID: label_value(spec.instance_id),
        TAG_ORG: label_value(spec.org),
        TAG_PLANE: label_value(spec.plane_id),
    }
    disk = {
        "source_image": image,
        "disk_size_gb": spec.disk_gb,
        "disk_type": f"zones/{zone}/diskTypes/{disk_type}",
    }
    nat = {"name": "External NAT", "type_": "ONE_TO_ONE_NAT"}  # a public IP for SSH
    return compute_v1.Instance(
        name=name,
        description=spec.name,
        machine_type=f"zones/{zone}/machineTypes/{placement.instance_type}",
        labels=labels | {TAG_MANAGED: "true"},
        disks=[{"boot": True, "auto_delete": True, "initialize_params": disk}],
        network_interfaces=[{"network": "global/networks/default", "access_configs": [nat]}],
        guest_accelerators=accelerators,
        scheduling=scheduling,
        metadata={"items": items},
    )


def _machine(instance: compute_v1.Instance) -> Machine:
    zone = instance.zone.rpartition("/")[2]
    nics = instance.network_interfaces
    public = next((c.nat_i_p for nic in nics for c in nic.access_configs if c.nat_i_p), None)
    launched = None
    if instance.creation_timestamp:
        try:
            launched = datetime.fromisoformat(instance.creation_timestamp)
        except ValueError:
            launched = None  # an odd timestamp is no reason to lose sight of a machine
    return Machine(
        ref=ProviderRef("gcp", region_of(zone), zone, instance.name),
        # An unknown, newer status is treated as in-between: the next pass looks again.
        state=_STATES.get(instance.status, MachineState.PENDING),
        instance_type=instance.machine_type.rpartition("/")[2] or None,
        public_ip=public,
        private_ip=(nics[0].network_i_p or None) if nics else None,
        tags=dict(instance.labels),
        launched_at=launched,
    )
