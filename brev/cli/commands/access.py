"""brev refresh | shell | exec | cp: into a machine with the user's own OpenSSH
(brev.cli.ssh_access holds the certificate, ssh_config and the waiting)."""

from __future__ import annotations

import subprocess
from typing import Annotated

import typer

from brev.cli import panels
from brev.cli.exit_codes import SSH_FAILED
from brev.cli.options import JsonOutput, Start, Wait
from brev.cli.output import note, print_json
from brev.cli.ssh_access import explain_ssh_failure, prepare, refresh_with, run_ssh
from brev.errors import BrevError
from brev.ssh import config as ssh_config

NoSshConfig = Annotated[
    bool,
    typer.Option(
        "--no-ssh-config", help="leave ~/.ssh alone (also BREV_SSH_CONFIG=0)", show_default=False
    ),
]


def refresh(no_ssh_config: NoSshConfig = False, json_output: JsonOutput = False) -> None:
    """Renew the SSH certificate and rewrite the ssh_config entries of the org's machines."""
    from brev.cli.login_state import connect

    with connect() as client:
        targets = refresh_with(client, touch_user_config=not no_ssh_config)
    p = ssh_config.paths()
    reachable = [t for t in targets if t.host and t.user]
    if json_output:
        # Not the certificates: they are in the files, and long.
        machines = [t.model_dump(mode="json", exclude={"certificate"}) for t in reachable]
        print_json({"ssh_config": str(p.config), "machines": machines})
        return
    note(
        f"{len(reachable)} machine(s) in {p.config}: "
        + (", ".join(t.alias for t in reachable) or "none")
    )
    waiting = [t.alias for t in reachable if not t.host_keys]
    if waiting:
        note(f"no host key reported yet for {', '.join(waiting)}: ssh refuses them until it is")


def shell(
    name: Annotated[str, typer.Argument(help="instance (or node-NAME) to log in to")],
    start: Start = False,
    wait: Wait = "5m",
) -> None:
    """Open an interactive shell on an instance."""
    p = ssh_config.paths()
    raise typer.Exit(
        run_ssh(name, lambda alias: ssh_config.ssh_argv(p, alias), start=start, wait=wait)
    )


def exec_command(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="instance (or node-NAME)")],
    start: Start = False,
    wait: Wait = "5m",
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
    wait: Wait = "5m",
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
        explain_ssh_failure(alias, SSH_FAILED if code == SSH_FAILED else code)
    raise typer.Exit(code)


def _is_remote(arg: str) -> bool:
    head, colon, _ = arg.partition(":")
    # ./a:b and /x:y are local paths with a colon in them, as scp reads them.
    return bool(colon) and "/" not in head and bool(head)


def register(app: typer.Typer) -> None:
    app.command(rich_help_panel=panels.ACCESS)(refresh)
    app.command(rich_help_panel=panels.ACCESS)(shell)
    app.command(
        "exec",
        rich_help_panel=panels.ACCESS,
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )(exec_command)
    app.command(rich_help_panel=panels.ACCESS)(cp)
