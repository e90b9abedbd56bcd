"""Into a machine with the user's own OpenSSH: the SSH state that `brev refresh`, `shell`,
`exec`, `cp`, `port-forward`, `jupyter` and `open` share.

The plane signs a short certificate for the user's key; `refresh_with` writes it with an
ssh_config entry and the pinned host keys of every machine of the org. The commands run the
real `ssh`/`scp` on those files, so what works here works with plain `ssh NAME` too."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from brev.cli.exit_codes import SSH_FAILED
from brev.cli.output import note
from brev.errors import BrevError
from brev.ssh import config as ssh_config

if TYPE_CHECKING:
    from brev import api
    from brev.client import BrevClient


def refresh_with(client: BrevClient, *, touch_user_config: bool = True) -> list[api.SshTarget]:
    """Get a fresh certificate and write ssh_config and known_hosts; the machines."""
    p = ssh_config.paths()
    access = client.ssh_certificate(ssh_config.ensure_key(p))
    entries = [
        ssh_config.Entry(
            alias=t.alias,
            host=t.host,
            port=t.port,
            user=t.user,
            host_keys=tuple(t.host_keys),
            status=t.status,
            certificate=t.certificate,
        )
        for t in access.targets
        if t.host and t.user
    ]
    refused = [e.alias for e in entries if not ssh_config.well_formed(e)]
    if refused:
        note(f"note: left out of ssh_config, values that are not plain names: {', '.join(refused)}")
        entries = [e for e in entries if ssh_config.well_formed(e)]
    include = touch_user_config and os.environ.get("BREV_SSH_CONFIG", "1") != "0"
    try:
        ssh_config.write(p, access.valid_before, entries, include_in_user_config=include)
    except OSError as exc:
        raise BrevError(
            f"cannot write the SSH files ({exc.strerror}: {exc.filename}); "
            f"BREV_SSH_CONFIG=0 leaves ~/.ssh alone"
        ) from None
    return access.targets


def refresh_quietly(client: BrevClient) -> None:
    """After login, create and start: keep ssh_config current, never failing the command."""
    try:
        refresh_with(client)
    except (BrevError, OSError) as exc:
        note(f"note: ssh_config not refreshed ({exc}); run `brev refresh`")


def resolve_target(client: BrevClient, name: str, *, start: bool, wait_s: float) -> api.SshTarget:
    """The machine, running and in ssh_config: waits for it, starts it when asked."""
    from brev.client import NotFound

    deadline = time.monotonic() + wait_s
    started = False
    while True:
        targets = {t.alias: t for t in refresh_with(client)}
        target = targets.get(name)
        if target is None:
            try:
                client.instance(name)
            except NotFound:
                raise BrevError(
                    f"no instance or node '{name}' in org '{client.org}'; see `brev ls`"
                ) from None
            raise BrevError(f"'{name}' has no SSH address yet; see `brev show {name}`")
        if target.status in ("running", "online") and target.host_keys:
            return target
        if target.status == "stopped" and not started:
            if not start:
                raise BrevError(
                    f"'{name}' is stopped: start it with `brev start {name}` or pass --start"
                )
            client.start_instance(name)
            started = True
            note(f"Starting {name} ...")
        if target.status in ("failed", "deleted", "deleting", "offline"):
            raise BrevError(f"'{name}' is {target.status}; see `brev show {name}`")
        if time.monotonic() > deadline:
            what = "its host key" if target.status == "running" else "it to run"
            raise BrevError(
                f"waited {wait_s:.0f} s for {what} ('{name}' is {target.status}); "
                f"try again later or see `brev show {name}`"
            )
        note(f"Waiting for {name} ({target.status}) ...")
        time.sleep(2)


def prepare(
    name: str,
    *,
    start: bool = False,
    wait: str = "5m",
    cached: bool = True,
    needs_ssh: bool = True,
) -> str:
    """The alias to hand to ssh for `name`, with a valid certificate and a running machine.
    Without asking the plane when the cached state says all is well (the fast path).
    `needs_ssh` False: the caller logs in without OpenSSH (the paramiko tunnel)."""
    if needs_ssh and shutil.which("ssh") is None:
        raise BrevError(
            "no `ssh` on PATH: install OpenSSH's client (apt-get install openssh-client)"
        )
    p = ssh_config.paths()
    if cached and ssh_config.cached_alias(p, name):
        return name
    from brev.cli.login_state import connect
    from brev.cli.options import duration

    wait_s = duration("--wait", wait)

    with connect() as client:
        return resolve_target(client, name, start=start, wait_s=wait_s).alias


def run_ssh(name: str, argv_for: Callable[[str], list[str]], *, start: bool, wait: str) -> int:
    """Run ssh (or scp) on `name`'s entry; its exit code. When ssh fails (255) after the fast
    path skipped the plane, ask the plane why: a machine that stopped or went away meanwhile
    is said so (and, stopped and `start`, started and tried again: the login was refused, so
    nothing ran the first time)."""
    p = ssh_config.paths()
    fast = ssh_config.cached_alias(p, name)
    alias = prepare(name, start=start, wait=wait)
    sys.stdout.flush()
    code = subprocess.call(argv_for(alias))
    if code == SSH_FAILED and fast:
        ssh_config.forget_cache(p)
        alias = prepare(name, start=start, wait=wait, cached=False)  # raises "is stopped" etc.
        code = subprocess.call(argv_for(alias)) if start else code
    explain_ssh_failure(name, code)
    return code


def explain_failure(name: str) -> None:
    """After ssh failed (255) on the cached fast path: forget the cache and ask the plane;
    BrevError when the machine stopped or went away, else the general advice."""
    ssh_config.forget_cache(ssh_config.paths())
    prepare(name, wait="1s", cached=False)
    explain_ssh_failure(name, SSH_FAILED)


def explain_ssh_failure(name: str, code: int) -> None:
    if code == SSH_FAILED:
        note(
            f"ssh could not get into {name} (exit 255). Check `brev show {name}`; run "
            f"`brev refresh` for a new certificate; a changed host key is refused on purpose "
            f"(the machine was replaced, or someone is in between)."
        )


def forget_ssh_cache() -> None:
    """`brev exec` must not take the fast path to a machine just stopped or deleted."""
    ssh_config.forget_cache(ssh_config.paths())
