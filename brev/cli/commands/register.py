"""brev register: run on a machine, it joins the org as a node, without SSH from outside
(like NVIDIA Brev's register for a DGX Spark). The agent is installed here, and sshd is told to
trust the plane's SSH CA, which needs root."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from brev.cli import panels
from brev.cli.login_state import connect
from brev.cli.options import JsonOutput
from brev.cli.output import note, print_json
from brev.errors import BrevError

if TYPE_CHECKING:
    from brev import api
    from brev.client import BrevClient

# How long the agent has to report for the first time (BREV_NODE_INSTALL_WAIT, as the plane's).
ONLINE_WAIT_S = float(os.environ.get("BREV_NODE_INSTALL_WAIT", "60"))
CA_FILE = "brev_user_ca.pub"


def register_node(
    name: Annotated[
        str | None, typer.Option(help="the node's name; default: this machine's host name")
    ] = None,
    price: Annotated[
        float | None, typer.Option(help="internal USD per GPU-hour shown in offers", min=0)
    ] = None,
    plane_url: Annotated[
        str | None, typer.Option(help="where this machine reaches the plane; default: the plane's")
    ] = None,
    trust_ca: Annotated[
        bool, typer.Option(help="let sshd trust the plane's SSH CA (needs root)")
    ] = True,
    ssh_host: Annotated[
        str | None, typer.Option(help="where users reach this machine's sshd; default: its FQDN")
    ] = None,
    ssh_port: Annotated[int, typer.Option(help="its sshd's port", min=1, max=65535)] = 22,
    json_output: JsonOutput = False,
) -> None:
    """Register THIS machine as a node of the current org: install the agent here."""
    import dataclasses
    import getpass
    import socket

    from brev import api
    from brev.agent.host import ssh_host_keys
    from brev.node import installer
    from brev.ssh.local import run_local

    if plane_url and not re.match(r"^https?://[^\s/]+", plane_url):
        raise BrevError(f"--plane-url: '{plane_url}' is not http(s)://HOST[:PORT]")
    node_name = name or _name_from_hostname()
    try:
        facts = installer.probe(run_local, "this machine")
        installer.refuse_existing(run_local, "this machine", facts.node_home)
    except installer.InstallError as error:
        raise BrevError(error.message) from None
    with connect() as client:
        body = api.NodeRegister(
            name=node_name,
            facts=dataclasses.asdict(facts),
            host_keys=ssh_host_keys(),
            price_per_hour=price,
            ssh_host=ssh_host or socket.getfqdn(),
            ssh_port=ssh_port,
            # Sessions run as the user the agent runs as: the one registering.
            ssh_user=getpass.getuser(),
        )
        registered = client.register_node(body)
        note(f"Registered {node_name}; installing the agent in {facts.node_home} ...")
        try:
            installer.install(
                run_local,
                "this machine",
                facts,
                token=registered.token,
                plane_url=plane_url or registered.plane_url,
                interval_s=registered.report_interval_seconds,
            )
            node = _wait_online(client, node_name, facts.node_home)
        except BaseException:
            installer.uninstall(run_local, facts.node_home)
            client.remove_node(node_name, force=True)
            raise
    if trust_ca:
        _trust_ca(registered.ssh_ca_public_key, Path(facts.node_home))
    if json_output:
        print_json(node)
    else:
        note(f"Node {node.name} is {node.status}: {len(node.gpus)} GPU(s).")


def _name_from_hostname() -> str:
    import socket

    cleaned = re.sub(r"[^a-z0-9-]+", "-", socket.gethostname().split(".")[0].lower()).strip("-")
    return cleaned[:63].strip("-") or "node"


def _wait_online(client: BrevClient, name: str, node_home: str) -> api.NodeDetail:
    from brev import api
    from brev.node import installer
    from brev.ssh.local import run_local

    deadline = time.monotonic() + ONLINE_WAIT_S
    while time.monotonic() < deadline:
        node = client.node(name)
        if node.status == api.NodeStatus.ONLINE:
            return node
        time.sleep(0.5)
    seen = installer.agent_log_tail(run_local, node_home)
    raise BrevError(
        f"the agent did not reach the plane within {ONLINE_WAIT_S:.0f} s; check that this "
        f"machine can reach it (--plane-url). Registration rolled back."
        + (f" Agent log: {seen}" if seen else "")
    )


def _trust_ca(public_key: str, node_home: Path) -> None:
    """Make this machine's sshd accept certificates from the plane's CA (a drop-in file), for
    the principals the agent lists (each instance's enters that instance)."""
    from brev.node import installer
    from brev.ssh.local import run_local

    ssh_dir = Path(os.environ.get("BREV_SSHD_CONFIG_DIR", "/etc/ssh"))
    principals = node_home / "authorized_principals"
    if os.geteuid() != 0:
        note(
            "Not root: sshd was not told to trust the plane's SSH CA, so `brev shell` into "
            "this node will not work yet. As root, run:\n"
            f"  echo '{public_key}' > {ssh_dir}/{CA_FILE}\n"
            f"  printf 'TrustedUserCAKeys {ssh_dir}/{CA_FILE}\\nAuthorizedPrincipalsFile "
            f"{principals}\\n' > {ssh_dir}/sshd_config.d/brev.conf\n"
            f"  systemctl reload ssh"
        )
        return
    try:
        installer.trust_ca(run_local, "this machine", public_key, str(node_home))
    except installer.InstallError as error:
        note(f"note: {error.message}")
        return
    main_config = ssh_dir / "sshd_config"
    if main_config.exists() and "sshd_config.d" not in main_config.read_text():
        note(
            f"note: {main_config} does not Include sshd_config.d/*.conf; copy the lines of "
            f"{ssh_dir}/sshd_config.d/brev.conf into it"
        )
    note(f"sshd trusts the plane's SSH CA ({ssh_dir}/sshd_config.d/brev.conf).")


def register(app: typer.Typer) -> None:
    app.command("register", rich_help_panel=panels.INSTANCES)(register_node)
