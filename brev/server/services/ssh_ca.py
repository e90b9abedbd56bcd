"""The plane's SSH certificate authority: one ed25519 key, sealed in the database so that every
replica signs with the same one, made the first time it is needed."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from brev.server.db.models import Plane
from brev.server.secrets import Secrets

# How long the plane's own certificate (for installing an agent) stays valid.
PLANE_CERTIFICATE_LIFETIME = timedelta(minutes=10)


def private_key(session: Session, secrets: Secrets) -> str:
    """The CA's private key (OpenSSH PEM). The first caller makes it; a concurrent first
    caller on another replica loses the conditional UPDATE and reads the winner's."""
    from brev.ssh import ca

    sealed = session.scalar(select(Plane.ssh_ca_key).limit(1))
    if sealed is None:
        candidate = secrets.seal({"private_key": ca.new_private_key()})
        session.execute(
            update(Plane).where(Plane.ssh_ca_key.is_(None)).values(ssh_ca_key=candidate)
        )
        sealed = session.scalar(select(Plane.ssh_ca_key).limit(1))
        assert sealed is not None
    return str(secrets.open(sealed)["private_key"])


def public_key(session: Session, secrets: Secrets) -> str:
    from brev.ssh import ca

    return ca.public_key_line(private_key(session, secrets), "brev-ca")


def install_principal(org_id: str) -> str:
    """The principal of the certificates the plane signs itself to install an agent for org
    `org_id`: a machine whose sshd lists principals (AuthorizedPrincipalsFile) lets such an install
    in only when its owner listed this org's. Per org: a member of another org can never make
    the plane log in to it. The node's agent does not keep it in the list."""
    return f"brev-install-{org_id}"


def plane_login(session: Session, secrets: Secrets, principal: str, org_id: str) -> tuple[str, str]:
    """A fresh key and a short certificate for it, for the plane to log in as `principal` on
    a machine that trusts the CA: (private key PEM, certificate line). Its principals are the
    login (sshd without a principals file requires it) and the plane's install principal."""
    from brev.ssh import ca

    key = ca.new_private_key()
    certificate = ca.sign_user_certificate(
        private_key(session, secrets),
        ca.public_key_line(key),
        key_id="brev-plane",
        principals=[principal, install_principal(org_id)],
        valid_for=PLANE_CERTIFICATE_LIFETIME,
    )
    return key, certificate
