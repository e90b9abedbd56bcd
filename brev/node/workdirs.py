"""Instances' working directories on a node: `<node_home>/instances/<name>/`, each with a
`.brev/env` that `brev-enter` sources, so a shell or command of an instance sees its GPUs only.

The plane decides which GPUs belong to which instance and sends the whole list with every
answer to the agent; `apply` makes the directories match it. Standard library only: this runs
inside the agent on the node.
"""

from __future__ import annotations

import re
import shlex
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from brev.errors import BrevError

# The plane's instance names; anything else could climb out of instances/ (`..`, `a/b`).
NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
# GPU-<uuid> and MIG-<uuid> (older drivers: MIG-GPU-<uuid>/<gi>/<ci>); empty where the plane
# never learnt it.
_UUID = re.compile(r"^([A-Za-z0-9][A-Za-z0-9/_.:-]{0,127})?$")
INSTANCES = "instances"
# sshd's AuthorizedPrincipalsFile on a node: which certificate principals may log in, and for
# an instance's principal, the forced command that puts the session inside that instance.
PRINCIPALS = "authorized_principals"
_PRINCIPAL = re.compile(r"^brev-[in]-[0-9a-f]{32}$")


class InvalidAssignment(BrevError):
    """The plane sent an assignment this node will not apply."""


@dataclass(frozen=True)
class Assignment:
    instance: str
    gpu_indices: tuple[int, ...]
    gpu_uuids: tuple[str, ...]
    principal: str | None = None
    active: bool = True


def parse(raw: Mapping[str, Any]) -> Assignment:
    """One assignment as the plane sends it, checked: {"instance", "gpu_indices", "gpu_uuids"}."""
    if not isinstance(raw, Mapping):
        raise InvalidAssignment(f"an assignment is not an object: {raw!r:.100}")
    name = raw.get("instance")
    if not isinstance(name, str) or not NAME.match(name):
        raise InvalidAssignment(f"invalid instance name in an assignment: {name!r}")
    indices = raw.get("gpu_indices")
    if not isinstance(indices, list) or not all(type(i) is int and 0 <= i < 4096 for i in indices):
        raise InvalidAssignment(f"{name}: gpu_indices must be a list of GPU indices")
    if len(set(indices)) != len(indices):
        raise InvalidAssignment(f"{name}: a GPU index appears twice in {indices}")
    uuids = raw.get("gpu_uuids", [])
    if not isinstance(uuids, list) or not all(isinstance(u, str) and _UUID.match(u) for u in uuids):
        raise InvalidAssignment(f"{name}: gpu_uuids must be a list of GPU UUIDs")
    principal = raw.get("principal")
    if principal is not None and not (isinstance(principal, str) and _PRINCIPAL.match(principal)):
        raise InvalidAssignment(f"{name}: not a brev SSH principal: {principal!r:.80}")
    return Assignment(name, tuple(indices), tuple(uuids), principal, raw.get("active") is not False)


def env_text(assignment: Assignment) -> str:
    """The `.brev/env` of an instance: shell `export` lines, every value quoted."""
    indices = ",".join(str(i) for i in assignment.gpu_indices)
    values = {
        "BREV_INSTANCE": assignment.instance,
        "BREV_GPU_UUIDS": ",".join(assignment.gpu_uuids),
        # CUDA numbers GPUs fastest first unless told otherwise; in PCI bus order its indices
        # are the ones nvidia-smi shows, which are the ones the plane assigns.
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
        # Set but empty hides every GPU from CUDA; unset would show them all.
        "CUDA_VISIBLE_DEVICES": indices,
        # For containers started from this shell: the NVIDIA runtime reads "void" as no GPU,
        # while an empty value means its default (often every GPU).
        "NVIDIA_VISIBLE_DEVICES": indices or "void",
    }
    lines = [
        "# Written by the brev agent from the plane's GPU assignment; rewritten when it changes.",
        *(f"export {key}={shlex.quote(value)}" for key, value in values.items()),
    ]
    return "\n".join(lines) + "\n"


def present(node_home: Path) -> list[str]:
    """The instances whose working directory exists on this node, sorted."""
    try:
        entries = list((node_home / INSTANCES).iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(path.name for path in entries if _ours(path))


def apply(
    node_home: Path,
    assignments: Sequence[Mapping[str, Any]],
    node_principals: Sequence[str] = (),
) -> bool:
    """Make `<node_home>/instances` and the SSH principals file match `assignments` (the
    plane's whole list); True when anything changed. Everything is checked before anything
    is touched."""
    wanted = [parse(raw) for raw in assignments]
    for principal in node_principals:
        if not (isinstance(principal, str) and _PRINCIPAL.match(principal)):
            raise InvalidAssignment(f"not a brev SSH principal: {principal!r:.80}")
    names = [a.instance for a in wanted]
    if len(set(names)) != len(names):
        raise InvalidAssignment(f"an instance is assigned twice: {sorted(names)}")
    root = node_home / INSTANCES
    # Without parents: the home of a node being uninstalled must not come back.
    root.mkdir(exist_ok=True)
    changed = False
    for assignment in wanted:
        changed |= _write_env(root / assignment.instance, env_text(assignment))
    for name in present(node_home):
        if name not in names:
            shutil.rmtree(root / name)
            changed = True
    changed |= _write_if_changed(
        node_home / PRINCIPALS, principals_text(node_home, wanted, node_principals)
    )
    return changed


def principals_text(
    node_home: Path, assignments: Sequence[Assignment], node_principals: Sequence[str]
) -> str:
    """sshd's AuthorizedPrincipalsFile: the node's own principals (org admins and the plane's
    installs: a plain login), and each running instance's, forced into `brev-enter NAME` (its
    directory, its GPUs). A stopped instance has no line: its certificate opens nothing until
    it runs again."""
    enter = node_home / "bin" / "brev-enter"
    lines = [
        "# Written by the brev agent from the plane's assignments; rewritten when they change."
    ]
    lines.extend(node_principals)
    for a in assignments:
        if a.principal and a.active:
            # sshd runs it with the user's shell; a path with a double quote cannot be written.
            command = f"{shlex.quote(str(enter))} {a.instance}"
            if '"' in command:
                raise InvalidAssignment(f"the node home {node_home} holds a double quote")
            lines.append(f'command="{command}",no-agent-forwarding {a.principal}')
    return "\n".join(lines) + "\n"


def _ours(path: Path) -> bool:
    """A directory this module made: only those are ever removed."""
    return (
        NAME.match(path.name) is not None
        and path.is_dir()
        and not path.is_symlink()
        and (path / ".brev" / "env").is_file()
    )


def _write_env(workdir: Path, text: str) -> bool:
    env = workdir / ".brev" / "env"
    env.parent.mkdir(parents=True, exist_ok=True)
    return _write_if_changed(env, text)


def _write_if_changed(path: Path, text: str) -> bool:
    try:
        if path.read_text() == text:
            return False
    except (FileNotFoundError, NotADirectoryError):
        pass
    # Replaced in one step: neither `brev-enter` nor sshd ever reads half a file.
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    partial.replace(path)
    return True
