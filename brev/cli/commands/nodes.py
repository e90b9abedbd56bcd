"""brev nodes add | ls | show | rm: machines the team owns, in the same pool as the clouds."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from brev.cli import panels, prompts
from brev.cli.gpus import print_gpu_table
from brev.cli.login_state import connect
from brev.cli.options import JsonOutput
from brev.cli.output import age, note, print_json, print_table, when
from brev.errors import BrevError

if TYPE_CHECKING:
    from brev import api
    from brev.client import BrevClient

group = typer.Typer(
    help="Registered machines (DGX Spark, workstations, servers).",
    no_args_is_help=True,
    rich_markup_mode=None,
)
_DESTINATION = re.compile(
    r"^(?P<user>[^@\s]+)@(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:\s]+))(?::(?P<port>\d+))?$"
)


def parse_destination(text: str) -> tuple[str, str, int]:
    """`user@host[:port]` (IPv6 in brackets) -> (user, host, port)."""
    match = _DESTINATION.match(text.strip())
    if not match:
        raise BrevError(
            f"'{text}' is not user@host[:port], e.g. root@10.0.0.5 or ubuntu@spark:2222"
        )
    port = int(match["port"] or 22)
    if not 1 <= port <= 65535:
        raise BrevError(f"port {port} in '{text}' is out of range (1-65535)")
    return match["user"], match["v6"] or match["host"], port


@group.command("add")
def add(
    name: Annotated[str, typer.Argument(help="the node's name in brev, e.g. spark-1")],
    destination: Annotated[str, typer.Argument(help="user@host[:port] the plane logs in to")],
    identity: Annotated[
        Path | None,
        typer.Option(
            "--identity",
            "-i",
            help="private key the box accepts; used once for the install, not stored. "
            "Default: a certificate from the plane's SSH CA (boxes that trust it)",
        ),
    ] = None,
    host_key: Annotated[
        str | None,
        typer.Option(help="the box's host key ('ssh-ed25519 AAAA...') or its SHA256: fingerprint"),
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="pin the host key the box shows without asking")
    ] = False,
    price: Annotated[
        float | None, typer.Option(help="internal USD per GPU-hour shown in offers", min=0)
    ] = None,
    plane_url: Annotated[
        str | None, typer.Option(help="where the box reaches the plane; default: the login URL")
    ] = None,
    json_output: JsonOutput = False,
) -> None:
    """Add a machine over SSH: check it, install the agent, pin its host key."""
    from brev import api

    user, host, port = parse_destination(destination)
    private_key = _read_identity(identity) if identity else None
    with connect() as client:
        pinned = _pin_host_key(client, host, port, host_key, yes)
        note(f"Installing the agent on {user}@{host}:{port} ...")
        body = api.NodeAdd(
            name=name,
            host=host,
            port=port,
            user=user,
            host_key=pinned,
            private_key=private_key,
            price_per_hour=price,
            plane_url=plane_url,
        )
        node = client.add_node(body)
    if json_output:
        print_json(node)
        return
    note(f"Node {node.name} is {node.status}: {_gpus(node)}, {node.os or '-'}.")


def _read_identity(path: Path) -> str:
    try:
        text = path.expanduser().read_text()
    except OSError as exc:
        raise BrevError(f"--identity: cannot read {path} ({exc.strerror})") from None
    if "PRIVATE KEY" not in text:
        raise BrevError(f"--identity: {path} is not a private key (give the file without .pub)")
    return text


def _pin_host_key(client: BrevClient, host: str, port: int, given: str | None, yes: bool) -> str:
    """The key to pin: the one given, or the one the box shows once a person accepts it."""
    if given and not given.startswith("SHA256:"):
        return given.strip()
    shown = client.node_host_key(host, port)
    if given:  # a fingerprint: pin what the box shows only if it matches
        if shown.fingerprint != given.strip():
            raise BrevError(
                f"{host}:{port} shows host key {shown.fingerprint}, not {given}: refusing it. "
                f"Check the key on the box (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub)"
            )
        return shown.host_key
    note(f"{host}:{port} shows host key {shown.fingerprint} ({shown.host_key.split()[0]}).")
    if yes:
        return shown.host_key
    if not prompts.confirm(
        "Pin this host key and continue?",
        without_terminal=f"first contact with {host}:{port}: check the fingerprint above on the "
        f"box (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub), then pass "
        f"--host-key {shown.fingerprint} (or --yes to trust it as shown)",
    ):
        raise BrevError("host key not pinned; nothing was changed")
    return shown.host_key


@group.command("ls")
def ls(json_output: JsonOutput = False) -> None:
    """List the org's nodes: status, GPUs (free or allocated), CPU, RAM, OS, driver."""
    with connect() as client:
        nodes = client.nodes()
    if json_output:
        print_json(nodes)
        return
    if not nodes:
        note(
            f"No nodes in org '{client.org}'. Add one with `brev nodes add NAME user@host` "
            f"or run `brev register` on it."
        )
        return
    rows = [
        [
            n.name,
            n.status.value,
            _gpus(n),
            str(n.cpu_count or "-"),
            _gib(n.memory_bytes),
            n.os or "-",
            f"{n.driver_version or '-'} / {n.cuda_version or '-'}",
            ", ".join(n.instances) or "-",
            age(n.last_heartbeat_at) + " ago" if n.last_heartbeat_at else "never",
        ]
        for n in nodes
    ]
    columns = ["name", "status", "gpus", "cpus", "ram", "os", "driver/cuda", "instances", "report"]
    print_table(columns, rows)


@group.command("show")
def show(
    name: Annotated[str, typer.Argument(help="node name")], json_output: JsonOutput = False
) -> None:
    """Show a node: its hardware, GPUs and who holds them, its last report, its events."""
    with connect() as client:
        node = client.node(name)
    if json_output:
        print_json(node)
        return
    address = f"{node.ssh_user}@{node.ssh_host}:{node.ssh_port}" if node.ssh_host else "-"
    rows = [
        ["name", node.name],
        ["status", node.status.value],
        ["address", address],
        ["os", f"{node.os or '-'} ({node.arch or '-'})"],
        ["cpus / ram", f"{node.cpu_count or '-'} / {_gib(node.memory_bytes)}"],
        ["driver / cuda", f"{node.driver_version or '-'} / {node.cuda_version or '-'}"],
        ["agent", f"{node.install_mode or '-'} in {node.node_home or '-'}"],
        ["$/gpu-h", f"{node.price_per_hour:.2f}" if node.price_per_hour is not None else "free"],
        ["created", f"{when(node.created_at)} by {node.created_by}"],
    ]
    print_table(["field", "value"], rows)
    if node.gpus:
        print_table(
            ["gpu", "model", "memory", "allocated to"],
            [
                [
                    str(g.index),
                    g.model or g.name,
                    _mib(g.memory_mib) + (" (unified)" if g.unified_memory else ""),
                    g.instance or "free",
                ]
                for g in node.gpus
            ],
        )
    if node.last_heartbeat_at is not None:
        note(f"Last agent report {age(node.last_heartbeat_at)} ago.")
        gpus = node.telemetry.get("gpus") or []
        if gpus:
            print_gpu_table(gpus)
    else:
        note("No agent report yet.")


@group.command("rm")
def rm(
    name: Annotated[str, typer.Argument(help="node name")],
    force: Annotated[bool, typer.Option(help="also delete the instances on it")] = False,
    json_output: JsonOutput = False,
) -> None:
    """Remove a node; its agent uninstalls itself at its next report."""
    with connect() as client:
        node = client.remove_node(name, force=force)
    if json_output:
        print_json(node)
        return
    gone = f"; deleted {', '.join(node.instances)}" if node.instances and force else ""
    note(f"Removed {node.name}{gone}. Its agent uninstalls itself at its next report.")


def _gpus(node: api.Node) -> str:
    if not node.gpus:
        return "no GPU"
    models = sorted({g.model or g.name for g in node.gpus})
    free = sum(1 for g in node.gpus if g.instance is None)
    return f"{len(node.gpus)} x {'/'.join(models)} ({free} free)"


def _gib(value: int | None) -> str:
    return f"{value / 2**30:.0f} GiB" if value else "-"


def _mib(value: float | None) -> str:
    return f"{value / 1024:.0f} GiB" if value else "-"


def register(app: typer.Typer) -> None:
    app.add_typer(group, name="nodes", rich_help_panel=panels.INSTANCES)
