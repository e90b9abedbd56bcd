"""Toy Cloud: a provider whose "machines" are JSON files in a folder, published as a plug-in.

It uses only what brev documents for plug-ins: the `brev.providers` interface and errors,
`ConfigKey` to declare its config, and an offers file beside the class. Machines go pending ->
running on the second describe, as a cloud's do; a create with the same idempotency key gives
the same machine.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar

from brev.providers.base import (
    TAG_INSTANCE_ID,
    TAG_MANAGED,
    TAG_ORG,
    TAG_PLANE,
    ConfigKey,
    CredentialsError,
    InstanceSpec,
    Machine,
    MachineState,
    NotFound,
    Placement,
    ProviderRef,
)


class ToyProvider:
    name = "toy"
    display_name: ClassVar[str] = "Toy Cloud"
    config_keys: ClassVar[tuple[ConfigKey, ...]] = (
        ConfigKey(
            "state_dir", "the folder that holds the machines", required=True, env="TOY_STATE_DIR"
        ),
        ConfigKey(
            "password", "the account's password", required=True, secret=True, env="TOY_PASSWORD"
        ),
    )
    offers_file: ClassVar[Path] = Path(__file__).with_name("offers.csv")

    def __init__(self, config: Mapping[str, Any]) -> None:
        self._dir = Path(str(config["state_dir"]))
        self._password = str(config.get("password", ""))

    def _check(self) -> None:
        if self._password != "hunter2":
            raise CredentialsError("Toy Cloud refused the password")

    def _path(self, machine_id: str) -> Path:
        return self._dir / f"{machine_id}.json"

    def _read(self, machine_id: str) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self._path(machine_id).read_text())
        except FileNotFoundError:
            raise NotFound(f"Toy Cloud has no machine {machine_id}") from None
        return data

    def _write(self, data: dict[str, Any]) -> None:
        self._dir.mkdir(parents=True, exist_ok=True)
        self._path(data["id"]).write_text(json.dumps(data))

    def _machine(self, data: dict[str, Any]) -> Machine:
        return Machine(
            ref=ProviderRef("toy", data["region"], data["zone"], data["id"]),
            state=MachineState(data["state"]),
            instance_type=data["instance_type"],
            public_ip="127.0.0.1",
            tags=data["tags"],
        )

    def validate(self) -> str:
        self._check()
        return f"Toy Cloud at {self._dir}"

    def create(self, spec: InstanceSpec, placement: Placement, idempotency_key: str) -> Machine:
        self._check()
        for data in self._all():
            if data["idempotency_key"] == idempotency_key:
                return self._machine(data)
        data = {
            "id": f"toy-{uuid.uuid4().hex[:8]}",
            "idempotency_key": idempotency_key,
            "region": placement.region,
            "zone": placement.zone,
            "instance_type": placement.instance_type,
            "state": MachineState.PENDING.value,
            "describes": 0,
            "tags": {
                TAG_INSTANCE_ID: spec.instance_id,
                TAG_ORG: spec.org,
                TAG_PLANE: spec.plane_id,
                TAG_MANAGED: "true",
            },
        }
        self._write(data)
        return self._machine(data)

    def describe(self, ref: ProviderRef) -> Machine | None:
        self._check()
        try:
            data = self._read(ref.id)
        except NotFound:
            return None
        data["describes"] += 1
        if data["state"] == MachineState.PENDING.value and data["describes"] >= 2:
            data["state"] = MachineState.RUNNING.value
        self._write(data)
        if data["state"] == MachineState.TERMINATED.value:
            return None
        return self._machine(data)

    def _set_state(self, ref: ProviderRef, state: MachineState) -> None:
        self._check()
        data = self._read(ref.id)
        data["state"] = state.value
        self._write(data)

    def start(self, ref: ProviderRef) -> None:
        self._set_state(ref, MachineState.RUNNING)

    def stop(self, ref: ProviderRef) -> None:
        self._set_state(ref, MachineState.STOPPED)

    def terminate(self, ref: ProviderRef) -> None:
        with contextlib.suppress(NotFound):  # already gone: done
            self._set_state(ref, MachineState.TERMINATED)

    def _all(self) -> list[dict[str, Any]]:
        if not self._dir.is_dir():
            return []
        return [json.loads(path.read_text()) for path in sorted(self._dir.glob("*.json"))]

    def list_owned(self, regions: Iterable[str]) -> Iterable[Machine]:
        self._check()
        wanted = set(regions)
        return [
            self._machine(data)
            for data in self._all()
            if data["region"] in wanted and data["state"] != MachineState.TERMINATED.value
        ]
