"""brev refresh | shell | exec | cp: into a machine with the user's own OpenSSH.

The plane signs a short certificate for the user's key; `refresh` writes it with an ssh_config
entry and the pinned host keys of every machine of the org. `shell`, `exec` and `cp` run the
real `ssh`/`scp` on those files, so what works here works with plain `ssh NAME` too."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from brev.cli.exit_codes import SSH_FAILED
from brev.cli.output import note
from brev.errors import BrevError
from brev.ssh import config as ssh_config

if TYPE_CHECKING:
    from brev import api
    from brev.client import BrevClient

PANEL = "Access"
NoSshConfig = Annotated[
    bool,
    typer.Option(
        "--no-ssh-config", help="leave ~/.ssh alone (also BREV_SSH_CONFIG=0)", show_default=False
    ),
]


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


def refresh(no_ssh_config: NoSshConfig = False) -> None:
    """Renew the SSH certificate and rewrite the ssh_config entries of the org's machines."""
    from brev.cli.login_state import connect

    with connect() as client:
        targets = refresh_with(client, touch_user_config=not no_ssh_config)
    p = ssh_config.paths()
    reachable = [t for t in targets if t.host and t.user]
    note(
        f"{len(reachable)} machine(s) in {p.config}: "
        + (", ".join(t.alias for t in reachable) or "none")
    )
    waiting = [t.alias for t in reachable if not t.host_keys]
    if waiting:
        note(f"no host key reported yet for {', '.join(waiting)}: ssh refuses them until it is")


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
    from brev.duration import InvalidDuration, parse_duration

    if needs_ssh and shutil.which("ssh") is None:
        raise BrevError(
            "no `ssh` on PATH: install OpenSSH's client (apt-get install openssh-client)"
        )
    p = ssh_config.paths()
    if cached and ssh_config.cached_alias(p, name):
        return name
    try:
        wait_s = parse_duration(wait)
    except InvalidDuration as exc:
        raise BrevError(f"--wait: {exc}") from None
    from brev.cli.login_state import connect

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
    _explain_ssh_failure(name, code)
    return code


def explain_failure(name: str) -> None:
    """After ssh failed (255) on the cached fast path: forget the cache and ask the plane;
    BrevError when the machine stopped or went away, else the general advice."""
    ssh_config.forget_cache(ssh_config.paths())
    prepare(name, wait="1s", cached=False)
    _explain_ssh_failure(name, SSH_FAILED)


def _explain_ssh_failure(name: str, code: int) -> None:
    if code == SSH_FAILED:
        note(
            f"ssh could not get into {name} (exit 255). Check `brev show {name}`; run "
            f"`brev refresh` for a new certificate; a changed host key is refused on purpose "
            f"(the machine was replaced, or someone is in between)."
        )


def shell(
    name: Annotated[str, typer.Argument(help="instance (or node-NAME) to log in to")],
    start: Annotated[bool, typer.Option(help="start it first if it is stopped")] = False,
    wait: Annotated[str, typer.Option(help="how long to wait for it to be reachable")] = "5m",
) -> None:
    """Open an interactive shell on an instance."""
    p = ssh_config.paths()
    raise typer.Exit(
        run_ssh(name, lambda alias: ssh_config.ssh_argv(p, alias), start=start, wait=wait)
    )


def exec_command(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="instance (or node-NAME)")],
    start: Annotated[bool, typer.Option(help="start it first if it is stopped")] = False,
    wait: Annotated[str, typer.Option(help="how long to wait for it to be reachable")] = "5m",
) -> None:
    """Run a command on an instance: brev exec NAME -- CMD...; its output and exit code."""
    command = list(ctx.args)
    if not command:
        raise BrevError("no command: brev exec NAME -- CMD [ARGS...]")
    p = ssh_config.paths()
    # As ssh does: the words joined by spaces are a command line for the remote shell, so
    # `brev exec box -- 'echo $HOME'` expands there.
    line = " ".join(command)
    code = run_ssh(
        name, lambda alias: ssh_config.ssh_argv(p, alias, "--", line), start=start, wait=wait
    )
    raise typer.Exit(code)


def cp(
    source: Annotated[str, typer.Argument(help="LOCAL or NAME:PATH")],
    destination: Annotated[str, typer.Argument(help="NAME:PATH or LOCAL")],
    wait: Annotated[str, typer.Option(help="how long to wait for it to be reachable")] = "5m",
) -> None:
    """Copy files to or from an instance (recursively): brev cp ./data NAME:data."""
    remote = [arg.split(":", 1)[0] for arg in (source, destination) if _is_remote(arg)]
    if len(remote) != 1:
        raise BrevError("one side must be NAME:PATH and the other a local path")
    alias = prepare(remote[0], wait=wait)
    p = ssh_config.paths()
    code = subprocess.call(["scp", "-F", str(p.config), "-r", "-q", source, destination])
    if code != 0:
        note(f"scp exited {code}")
        _explain_ssh_failure(alias, SSH_FAILED if code == SSH_FAILED else code)
    raise typer.Exit(code)


def _is_remote(arg: str) -> bool:
    head, colon, _ = arg.partition(":")
    # ./a:b and /x:y are local paths with a colon in them, as scp reads them.
    return bool(colon) and "/" not in head and bool(head)


def register(app: typer.Typer) -> None:
    app.command(rich_help_panel=PANEL)(refresh)
    app.command(rich_help_panel=PANEL)(shell)
    app.command(
        "exec",
        rich_help_panel=PANEL,
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )(exec_command)
    app.command(rich_help_panel=PANEL)(cp)
