from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Request

from brev import api
from brev.server.deps import DbSession, InOrg
from brev.server.openapi_errors import ORG_ROUTES, WITH_BODY
from brev.server.services import ssh_access, ssh_ca

router = APIRouter(tags=["ssh"], responses=ORG_ROUTES)


@router.post("/orgs/{org}/ssh/certificate", responses=WITH_BODY)
def ssh_certificate(
    request: Request, session: DbSession, ctx: InOrg, body: api.SshCertificateRequest
) -> api.SshCertificate:
    """A certificate for the caller's key that opens the org's instances (and, for admins,
    nodes), and the machines with their addresses and pinned host keys."""
    lifetime = timedelta(hours=request.app.state.settings.ssh_certificate_hours)
    return ssh_access.certificate(session, ctx, request.app.state.secrets, body, lifetime)


@router.get("/orgs/{org}/ssh/ca")
def ssh_ca_key(request: Request, session: DbSession, ctx: InOrg) -> api.SshCa:
    """The CA's public key: machines that trust it (sshd's TrustedUserCAKeys) let brev in."""
    return api.SshCa(
        public_key=ssh_ca.public_key(session, request.app.state.secrets),
        install_principal=ssh_ca.install_principal(ctx.org.id),
    )
