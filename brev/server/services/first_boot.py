"""What a cloud instance runs at first boot, before the user's startup script: trust the
plane's SSH CA for this instance's principal only, and install and start the agent.

The agent's token must be in the user data, and the same user data must come out of every
attempt of a create (a retry after a crash finds the machine the first call made, with the
user data of that call). So the token is derived, not drawn: an HMAC of the instance's id
under the plane's secret key. Only its hash is stored, like every token's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import shlex

from sqlalchemy import select
from sqlalchemy.orm import Session

from brev.server.auth import TOKEN_PREFIX, hash_secret, visible_prefix
from brev.server.db.models import ApiToken, Instance, utcnow
from brev.server.secrets import Secrets
from brev.server.services import ssh_access, ssh_ca

# Where the agent lives on a cloud instance (a node's default is ~/.brev-node).
AGENT_HOME = "/opt/brev-agent"
REPORT_INTERVAL_S = 10.0


def boot_token(secrets: Secrets, instance_id: str) -> str:
    digest = hmac.new(secrets.derivation_key(), f"agent:{instance_id}".encode(), hashlib.sha256)
    return TOKEN_PREFIX + base64.urlsafe_b64encode(digest.digest()).decode().rstrip("=")


def ensure_boot_token(session: Session, instance: Instance, secrets: Secrets) -> str:
    """The instance's first-boot agent token, its row made the first time."""
    secret = boot_token(secrets, instance.id)
    hashed = hash_secret(secret)
    if session.scalar(select(ApiToken.id).where(ApiToken.secret_hash == hashed)) is None:
        session.add(
            ApiToken(
                user_id=instance.created_by_id,
                org_id=instance.org_id,
                name=f"agent-boot-{instance.id}",
                prefix=visible_prefix(secret),
                secret_hash=hashed,
                kind="agent",
                instance_id=instance.id,
                created_at=utcnow(),
            )
        )
        session.flush()
    return secret


def script(session: Session, instance: Instance, secrets: Secrets, plane_url: str | None) -> str:
    """The first-boot shell script (bash, as root, from cloud-init or GCP's startup script)."""
    parts = ["# brev: first boot (SSH CA trust, agent)", _trust_ca(session, instance, secrets)]
    if plane_url:
        parts.append(_agent(session, instance, secrets, plane_url))
    else:
        parts.append("echo 'brev: the plane has no BREV_PUBLIC_URL: no agent on this instance' >&2")
    return "\n".join(parts) + "\n"


def _trust_ca(session: Session, instance: Instance, secrets: Secrets) -> str:
    ca_key = shlex.quote(ssh_ca.public_key(session, secrets))
    principal = shlex.quote(ssh_access.instance_principal(instance.id))
    return f"""(
    set -e
    ssh_dir=${{BREV_SSHD_CONFIG_DIR:-/etc/ssh}}
    mkdir -p "$ssh_dir/sshd_config.d"
    printf '%s\\n' {ca_key} > "$ssh_dir/brev_user_ca.pub"
    printf '%s\\n' {principal} > "$ssh_dir/brev_principals"
    printf 'TrustedUserCAKeys %s\\nAuthorizedPrincipalsFile %s\\n' \\
        "$ssh_dir/brev_user_ca.pub" "$ssh_dir/brev_principals" > "$ssh_dir/sshd_config.d/brev.conf"
    if [ "$ssh_dir" = /etc/ssh ]; then
        systemctl reload ssh 2>/dev/null || systemctl reload sshd 2>/dev/null || true
    fi
) || echo 'brev: could not set up SSH CA trust' >&2"""


def _agent(session: Session, instance: Instance, secrets: Secrets, plane_url: str) -> str:
    token = ensure_boot_token(session, instance, secrets)
    url = shlex.quote(plane_url.rstrip("/"))
    wheel_url = shlex.quote(plane_url.rstrip("/") + "/api/v1/agent/wheel")
    # The wheel comes from the plane (no PyPI needed), the token is in a 0600 file before
    # any command line could show it, and brev.node.boot installs as `brev nodes add` does.
    return f"""(
    set -e
    home=${{BREV_NODE_HOME:-{AGENT_HOME}}}
    # GCP runs startup scripts at every boot: once installed, the agent restarts by itself.
    if [ -f "$home/.brev-node" ]; then exit 0; fi
    umask 077
    mkdir -p "$home"
    printf '%s' {shlex.quote(token)} > "$home/agent.token"
    boot=$(mktemp -d)
    for attempt in 1 2 3 4 5 6 7 8 9 10; do
        if curl -fsS -H @- -o "$boot/brev-agent.whl" {wheel_url} <<BREV_AUTH; then break; fi
Authorization: Bearer $(cat "$home/agent.token")
BREV_AUTH
        sleep 6
    done
    python3 -m zipfile -e "$boot/brev-agent.whl" "$boot/lib"
    BREV_NODE_HOME="$home" PYTHONPATH="$boot/lib" python3 -m brev.node.boot \\
        --url {url} --wheel "$boot/brev-agent.whl" --interval {REPORT_INTERVAL_S:g}
    rm -rf "$boot"
) || echo 'brev: the agent could not be installed; see the lines above' >&2"""
