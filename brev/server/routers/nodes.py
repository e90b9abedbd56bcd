from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import TypeAdapter

from brev import api
from brev.server.conditional import json_or_not_modified
from brev.server.deps import DbSession, InOrg, UntiedInOrg, admin_only
from brev.server.openapi_errors import NOT_MODIFIED, ORG_ROUTES, WITH_BODY, conflict
from brev.server.services import node_install, nodes, ssh_ca

router = APIRouter(tags=["nodes"], responses=ORG_ROUTES)
_NODES = TypeAdapter(list[api.Node])


@router.get("/orgs/{org}/nodes", response_model=list[api.Node], responses=NOT_MODIFIED)
def list_nodes(request: Request, session: DbSession, ctx: InOrg) -> Response:
    """The org's nodes. Sends an ETag; answers If-None-Match with 304."""
    return json_or_not_modified(request, _NODES, nodes.list_nodes(session, ctx))


@router.get("/orgs/{org}/nodes/{name}")
def get_node(session: DbSession, ctx: InOrg, name: str) -> api.NodeDetail:
    return nodes.get_detail(session, ctx, name)


@router.post(
    "/orgs/{org}/nodes/host-key",
    dependencies=[admin_only("adding nodes", untied=True)],
    responses=WITH_BODY,
)
def host_key(ctx: UntiedInOrg, body: api.HostKeyQuery) -> api.HostKey:
    """The host key the machine shows the plane, for a person to check before pinning it (org
    admins: it makes the plane connect where it is told)."""
    return node_install.host_key(body)


@router.post(
    "/orgs/{org}/nodes",
    status_code=201,
    dependencies=[admin_only("adding nodes", untied=True)],
    responses={**WITH_BODY, **conflict("a node of that name exists")},
)
def add_node(request: Request, ctx: UntiedInOrg, body: api.NodeAdd) -> api.NodeDetail:
    """Log in to the machine over SSH, install the agent, and return once it has reported;
    rolled back (machine cleaned, node forgotten) on any failure."""
    settings = request.app.state.settings
    options = node_install.InstallOptions(
        plane_url=body.plane_url or settings.public_url or str(request.base_url).rstrip("/"),
        report_interval_s=settings.node_report_interval,
        wait_s=settings.node_install_wait,
    )
    return node_install.add(
        request.app.state.sessions, request.app.state.secrets, ctx, body, options
    )


@router.post(
    "/orgs/{org}/nodes/register",
    status_code=201,
    dependencies=[admin_only("registering nodes")],
    responses={**WITH_BODY, **conflict("a node of that name exists")},
)
def register_node(
    request: Request, session: DbSession, ctx: InOrg, body: api.NodeRegister
) -> api.NodeRegistered:
    """`brev register` on the machine: the node and its agent token; the machine installs
    the agent."""
    settings = request.app.state.settings
    node, secret = nodes.create_row(
        session,
        ctx,
        name=body.name,
        facts=body.facts,
        host_keys=body.host_keys,
        price_per_hour=body.price_per_hour,
        ssh=(body.ssh_host, body.ssh_port, body.ssh_user) if body.ssh_host else None,
    )
    return api.NodeRegistered(
        node=nodes.get_detail(session, ctx, node.name),
        token=secret,
        plane_url=settings.public_url or str(request.base_url).rstrip("/"),
        ssh_ca_public_key=ssh_ca.public_key(session, request.app.state.secrets),
        report_interval_seconds=settings.node_report_interval,
    )


@router.delete(
    "/orgs/{org}/nodes/{name}",
    dependencies=[admin_only("removing nodes")],
    responses=conflict("instances live on it (see `force`)"),
)
def remove_node(session: DbSession, ctx: InOrg, name: str, force: bool = False) -> api.NodeDetail:
    """Refused while instances live on it, unless `force` (which deletes them). The agent
    uninstalls itself at its next report."""
    return nodes.remove(session, ctx, name, force=force)
