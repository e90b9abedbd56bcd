"""SSH access: short-lived user certificates from the plane's CA, one per machine.

Each certificate carries one principal: `brev-i-<instance id>` for an instance of the org, or
`brev-n-<node id>` for a node (org admins only). Machines accept only their own principals (a
node: each instance's, with a forced `brev-enter NAME` that the node's agent writes; a cloud
instance: its own, from user data), so a certificate opens exactly one machine its holder may
reach, and a person removed from the org gets no new certificate at once. One principal per
certificate matters on a node: sshd takes the first line that matches any principal, so a
certificate for two instances there would always enter the same one."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from brev import api
from brev.server.db.models import Instance, Node, utcnow
from brev.server.errors import InvalidInput
from brev.server.secrets import Secrets
from brev.server.services import run_tokens, scheduler, ssh_ca
from brev.server.services.scope import OrgContext

# The login on the clouds' GPU images (AWS Deep Learning AMIs, GCP Deep Learning VMs).
CLOUD_LOGIN = "ubuntu"


def instance_principal(instance_id: str) -> str:
    return f"brev-i-{instance_id}"


def node_principal(node_id: str) -> str:
    return f"brev-n-{node_id}"


def certificate(
    session: Session,
    ctx: OrgContext,
    secrets: Secrets,
    body: api.SshCertificateRequest,
    lifetime: timedelta,
) -> api.SshCertificate:
    from brev.ssh import ca

    try:
        ca.parse_public_key_line(body.public_key)
    except ca.InvalidKey as error:
        raise InvalidInput("public_key", error.message) from None
    instances = list(
        session.scalars(
            select(Instance)
            .where(*run_tokens.visible(ctx), Instance.deleted_at.is_(None))
            .order_by(Instance.name)
        )
    )
    nodes = {n.id: n for n in scheduler.live_nodes(session, ctx.org.id)}
    machines: list[tuple[api.SshTarget, str]] = [
        (_instance_target(i, nodes.get(i.node_id or "")), instance_principal(i.id))
        for i in instances
    ]
    if ctx.role == api.Role.ADMIN and not run_tokens.is_run(ctx.principal):
        machines += [(_node_target(n), node_principal(n.id)) for n in nodes.values()]
    now = utcnow()
    ca_key = ssh_ca.private_key(session, secrets)
    targets = [
        target.model_copy(
            update={
                "principal": principal,
                "certificate": ca.sign_user_certificate(
                    ca_key,
                    body.public_key,
                    key_id=f"{ctx.principal.email} in {ctx.org.name}: {target.alias}",
                    principals=[principal],
                    valid_for=lifetime,
                    now=now,
                ),
            }
        )
        for target, principal in machines
    ]
    return api.SshCertificate(valid_before=now + lifetime, targets=targets)


def _instance_target(instance: Instance, node: Node | None) -> api.SshTarget:
    if node is not None:
        host, port, user = node.ssh_host, node.ssh_port, node.ssh_user
        keys = node.host_keys
    else:
        host, port, user = instance.ssh_host, instance.ssh_port or 22, CLOUD_LOGIN
        keys = instance.host_keys
    return api.SshTarget(
        alias=instance.name,
        kind="instance",
        name=instance.name,
        status=instance.status,
        host=host,
        port=port,
        user=user,
        host_keys=_lines(keys),
        principal="",
        certificate="",
    )


def _node_target(node: Node) -> api.SshTarget:
    return api.SshTarget(
        alias=f"node-{node.name}",
        kind="node",
        name=node.name,
        status=scheduler.node_status(node),
        host=node.ssh_host,
        port=node.ssh_port,
        user=node.ssh_user,
        host_keys=_lines(node.host_keys),
        principal="",
        certificate="",
    )


def _lines(text: str | None) -> list[str]:
    return [line.strip() for line in (text or "").splitlines() if line.strip()]
