"""`brev nodes add`: the plane logs in to a machine over SSH, checks it, installs the agent, and
waits for the agent's first report. Anything short of that first report is rolled back: the
machine is cleaned and the node forgotten, so there is never a half-registered node.

The request runs for seconds (an upload, an install, a report), so it holds no database
transaction while it talks to the machine: each write is its own short transaction.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session, sessionmaker

from brev import api
from brev.server.db.engine import transaction
from brev.server.db.models import Node
from brev.server.errors import InvalidInput, NodeInstallFailed
from brev.server.secrets import Secrets
from brev.server.services import events, node_instances, nodes, ssh_ca
from brev.server.services.scope import OrgContext

if TYPE_CHECKING:
    from brev.node.scripts import NodeFacts
    from brev.ssh.remote import SshConnection


log = logging.getLogger("brev.server.nodes")


@dataclass(frozen=True)
class InstallOptions:
    plane_url: str
    report_interval_s: float
    wait_s: float


def host_key(body: api.HostKeyQuery) -> api.HostKey:
    """What the machine at host:port shows as its host key, for a person to check and pin."""
    from brev.ssh import ca, remote

    try:
        key = remote.fetch_host_key(body.host, body.port)
    except remote.SshError as error:
        raise InvalidInput("host", error.message) from None
    return api.HostKey(
        host=body.host, port=body.port, host_key=key, fingerprint=ca.fingerprint(key)
    )


def add(
    sessions: sessionmaker[Session],
    secrets: Secrets,
    ctx: OrgContext,
    body: api.NodeAdd,
    options: InstallOptions,
) -> api.NodeDetail:
    from brev.ssh import ca, remote

    with transaction(sessions) as session:
        if node_instances.node_named(session, ctx.org.id, body.name) is not None:
            raise InvalidInput(
                "name", f"a node named '{body.name}' already exists; see `brev nodes ls`"
            )
        if body.private_key is None:
            key, certificate = ssh_ca.plane_login(session, secrets, body.user, ctx.org.id)
        else:
            key, certificate = body.private_key, None
    try:
        ca.parse_public_key_line(body.host_key)
    except ca.InvalidKey as error:
        raise InvalidInput("host_key", error.message) from None
    target = remote.SshTarget(body.host, body.port, body.user)
    try:
        with remote.SshConnection(
            target, host_key=body.host_key, private_key_pem=key, certificate=certificate
        ) as conn:
            facts = _probe(conn)
            node_id, secret = _create_node(sessions, ctx, body, facts)
            try:
                _install(conn, facts, secret, options)
                _wait_for_first_report(sessions, node_id, conn, facts, options)
            except BaseException:
                _roll_back(sessions, conn, node_id, facts)
                raise
            _trust_ca(sessions, secrets, conn, node_id, facts)
    except remote.HostKeyChanged as error:
        raise InvalidInput("host_key", error.message) from None
    except remote.SshAuthRefused as error:
        raise InvalidInput("private_key", error.message) from None
    except remote.SshError as error:
        raise InvalidInput("host", error.message) from None
    with transaction(sessions) as session:
        return nodes.get_detail(session, ctx, body.name)


def _probe(conn: SshConnection) -> NodeFacts:
    from brev.node import installer

    try:
        facts = installer.probe(conn.run, conn.target.address)
        installer.refuse_existing(conn.run, conn.target.address, facts.node_home)
    except installer.InstallError as error:
        raise InvalidInput("host", error.message) from None
    return facts


def _create_node(
    sessions: sessionmaker[Session], ctx: OrgContext, body: api.NodeAdd, facts: NodeFacts
) -> tuple[str, str]:
    with transaction(sessions) as session:
        node, secret = nodes.create_row(
            session,
            ctx,
            name=body.name,
            facts=dataclasses.asdict(facts),
            host_keys=[body.host_key.strip()],
            price_per_hour=body.price_per_hour,
            ssh=(body.host, body.port, body.user),
        )
        return node.id, secret


def _install(conn: SshConnection, facts: NodeFacts, secret: str, options: InstallOptions) -> None:
    from brev.node import installer

    try:
        installer.install(
            conn.run,
            conn.target.address,
            facts,
            token=secret,
            plane_url=options.plane_url,
            interval_s=options.report_interval_s,
        )
    except installer.InstallError as error:
        raise NodeInstallFailed(f"{error.message}; the install was rolled back") from None


def _trust_ca(
    sessions: sessionmaker[Session],
    secrets: Secrets,
    conn: SshConnection,
    node_id: str,
    facts: NodeFacts,
) -> None:
    """Logged in as root: set up the machine's sshd for users' certificates. Not as root, or when
    it fails, the node works all the same; the event says what an admin must do."""
    from brev.node import installer

    with transaction(sessions) as session:
        ca_key = ssh_ca.public_key(session, secrets)
    outcome: dict[str, object] = {"trusted": False}
    if not facts.root:
        outcome["reason"] = "not root: add TrustedUserCAKeys and AuthorizedPrincipalsFile yourself"
    else:
        from brev.ssh.remote import SshError

        try:
            installer.trust_ca(conn.run, conn.target.address, ca_key, facts.node_home)
            outcome["trusted"] = True
        except (installer.InstallError, SshError) as error:
            # The node is added and reporting: this part failing must not say otherwise.
            outcome["reason"] = error.message
    with transaction(sessions) as session:
        node = session.get_one(Node, node_id)
        events.record(
            session,
            org_id=node.org_id,
            actor_id=None,
            action="node.ssh_ca",
            object_type="node",
            object_id=node.id,
            object_name=node.name,
            details=outcome,
        )


def _wait_for_first_report(
    sessions: sessionmaker[Session],
    node_id: str,
    conn: SshConnection,
    facts: NodeFacts,
    options: InstallOptions,
) -> None:
    deadline = time.monotonic() + options.wait_s
    while time.monotonic() < deadline:
        with transaction(sessions) as session:
            node = session.get_one(Node, node_id)
            if node.last_heartbeat_at is not None:
                return
        time.sleep(0.25)
    from brev.node import installer

    seen = installer.agent_log_tail(conn.run, facts.node_home)
    raise NodeInstallFailed(
        f"the agent started on {conn.target.address} but did not reach the plane at "
        f"{options.plane_url} within {options.wait_s:.0f} s; check that the machine can reach that "
        f"URL (set it with --plane-url or BREV_PUBLIC_URL). The install was rolled back."
        + (f" Agent log: {seen}" if seen else "")
    )


def _roll_back(
    sessions: sessionmaker[Session], conn: SshConnection, node_id: str, facts: NodeFacts
) -> None:
    from brev.node import installer
    from brev.ssh.remote import SshError

    try:
        installer.uninstall(conn.run, facts.node_home)
    except SshError as error:  # the install's own error is the one to report
        log.warning("rolling back node %s: uninstall failed: %s", node_id, error.message)
    finally:
        with transaction(sessions) as session:
            nodes.forget(session, node_id)
