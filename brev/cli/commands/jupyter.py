"""brev jupyter: a Jupyter server on an instance, started or found there
(brev.cli.jupyter_remote), reached through the tunnel of `brev port-forward`
(brev.cli.ssh_tunnels) until Ctrl-C."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from brev.cli import panels, ssh_tunnels
from brev.cli.jupyter_remote import JupyterFailed, on_instance
from brev.cli.options import Start, UseParamiko, Wait
from brev.cli.output import note
from brev.errors import BrevError
from brev.ssh import forwards


def should_open_browser(no_browser: bool) -> bool:
    if no_browser:
        return False
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _open_browser(url: str) -> None:
    import webbrowser

    try:
        opened = webbrowser.open(url)
    except Exception:  # a browser that fails must not end the tunnel
        opened = False
    if not opened:
        note("Could not open a browser; open the URL above yourself.")


def jupyter(
    name: Annotated[str, typer.Argument(help="instance (or node-NAME)")],
    port: Annotated[
        str | None,
        typer.Option(
            "--port",
            "-p",
            help="local port for the tunnel (default: a free one)",
            show_default=False,
        ),
    ] = None,
    no_browser: Annotated[
        bool, typer.Option("--no-browser", help="print the URL only; do not open a browser")
    ] = False,
    stop: Annotated[
        bool, typer.Option("--stop", help="stop the Jupyter server on the instance and exit")
    ] = False,
    start: Start = False,
    wait: Wait = "5m",
    paramiko: UseParamiko = False,
) -> None:
    """Start (or reuse) Jupyter on an instance and open it here through a tunnel."""
    try:
        if stop:
            answer = on_instance(name, "stop", "", start, wait)
            note(
                f"Stopped the Jupyter server on {name}."
                if answer.get("stopped")
                else f"No Jupyter server was running on {name}."
            )
            raise typer.Exit(0)
        local = forwards.parse_port("--port", port) if port is not None else None
        if local is not None:
            forwards.check_local_port(local)
        import secrets

        token = secrets.token_urlsafe(32)
        answer = on_instance(name, "start", token, start, wait)
    except JupyterFailed as failed:
        sys.stderr.write(f"error: {failed.message}\n")
        raise typer.Exit(failed.code) from None
    try:
        remote_port, token = int(answer["port"]), str(answer["token"])
    except (KeyError, TypeError, ValueError):
        raise BrevError(f"the Jupyter helper on {name} gave an unexpected answer") from None
    local = local or forwards.free_local_port()
    path = "/lab" if answer.get("kind") == "lab" else "/"
    url = f"http://127.0.0.1:{local}{path}?token={token}"
    how = "running" if answer.get("reused") else "started"
    where = answer.get("directory", "its working directory")

    def on_up() -> None:
        note(f"Jupyter {how} on {name} in {where} (its 127.0.0.1:{remote_port}); open:")
        print(url, flush=True)
        note("Ctrl-C closes the tunnel; the server keeps running (`--stop` ends it).")
        if should_open_browser(no_browser):
            _open_browser(url)

    def on_stop() -> None:
        note(f"Tunnel closed; Jupyter keeps running on {name} (`brev jupyter {name}` again).")

    forward = forwards.Forward(local=local, remote=remote_port)
    raise typer.Exit(
        ssh_tunnels.hold(
            name,
            [forward],
            start=start,
            wait=wait,
            force_paramiko=paramiko,
            on_up=on_up,
            on_stop=on_stop,
        )
    )


def register(app: typer.Typer) -> None:
    app.command(rich_help_panel=panels.ACCESS)(jupyter)
