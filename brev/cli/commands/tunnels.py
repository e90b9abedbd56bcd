"""brev port-forward: ports of this machine's 127.0.0.1 carried to ports of an instance's
127.0.0.1, held until Ctrl-C, reconnecting when the connection drops (brev.cli.ssh_tunnels)."""

from __future__ import annotations

from typing import Annotated

import typer

from brev.cli import panels
from brev.cli.options import Start, UseParamiko, Wait
from brev.cli.ssh_tunnels import hold
from brev.ssh.forwards import parse_forwards

PortSpecs = Annotated[
    list[str] | None,
    typer.Option(
        "--port",
        "-p",
        help="LOCAL:REMOTE (8080:80), or PORT for the same port on both sides; repeatable",
        show_default=False,
    ),
]


def port_forward(
    name: Annotated[str, typer.Argument(help="instance (or node-NAME)")],
    port: PortSpecs = None,
    start: Start = False,
    wait: Wait = "5m",
    paramiko: UseParamiko = False,
) -> None:
    """Forward local ports to an instance's ports until Ctrl-C: -p 8080:80 [-p 6006 ...]."""
    forwards = parse_forwards(port or [])
    raise typer.Exit(hold(name, forwards, start=start, wait=wait, force_paramiko=paramiko))


def register(app: typer.Typer) -> None:
    app.command("port-forward", rich_help_panel=panels.ACCESS)(port_forward)
