"""Request and response bodies of the REST API, shared by the server and `brev.client`.

Field names here are the API's contract and the shape of every `--json` output: rename nothing
without a new API version.

One module per resource (`base` holds what they all share: the base model, names, counts, the
error body); every public name is re-exported here, so `from brev import api` then `api.Instance`
is how the code uses them.
"""

from brev.api.access import SshCa, SshCertificate, SshCertificateRequest, SshTarget
from brev.api.agents import (
    AgentReportIn,
    AgentReports,
    AgentReportsAccepted,
    AgentToken,
    Assignment,
)
from brev.api.base import (
    API_PREFIX,
    NAME_PATTERN,
    NAME_RULE,
    Count,
    ErrorBody,
    ErrorDetail,
    FieldError,
    Name,
    ServerHealth,
    check_name,
)
from brev.api.events import Event
from brev.api.fleet import FleetGpu, FleetOverview, GpuSource
from brev.api.instances import (
    Autostop,
    Health,
    Instance,
    InstanceCreate,
    InstanceDetail,
    InstancePlan,
    InstanceStatus,
    Lease,
    Placement,
    Ttl,
)
from brev.api.metrics import GpuPoint, GpuSeries
from brev.api.nodes import (
    AssignmentsWatch,
    HostKey,
    HostKeyQuery,
    Node,
    NodeAdd,
    NodeDetail,
    NodeGpu,
    NodeRegister,
    NodeRegistered,
    NodeStatus,
)
from brev.api.offers import CatalogRefresh, CatalogSkip, Offer, OfferSort
from brev.api.orgs import (
    Member,
    MemberAdd,
    MemberAdded,
    MemberRole,
    Membership,
    Org,
    OrgCreate,
    Role,
    User,
    Whoami,
)
from brev.api.providers import ProviderConfig, ProviderConfigAdd, ProviderConfigKey, ProviderKind
from brev.api.tokens import Token, TokenCreate, TokenCreated, TokenScope
from brev.api.web import LoginLink, WebSession, WebSessionCreate

__all__ = [
    "API_PREFIX",
    "NAME_PATTERN",
    "NAME_RULE",
    "AgentReportIn",
    "AgentReports",
    "AgentReportsAccepted",
    "AgentToken",
    "Assignment",
    "AssignmentsWatch",
    "Autostop",
    "CatalogRefresh",
    "CatalogSkip",
    "Count",
    "ErrorBody",
    "ErrorDetail",
    "Event",
    "FieldError",
    "FleetGpu",
    "FleetOverview",
    "GpuPoint",
    "GpuSeries",
    "GpuSource",
    "Health",
    "HostKey",
    "HostKeyQuery",
    "Instance",
    "InstanceCreate",
    "InstanceDetail",
    "InstancePlan",
    "InstanceStatus",
    "Lease",
    "LoginLink",
    "Member",
    "MemberAdd",
    "MemberAdded",
    "MemberRole",
    "Membership",
    "Name",
    "Node",
    "NodeAdd",
    "NodeDetail",
    "NodeGpu",
    "NodeRegister",
    "NodeRegistered",
    "NodeStatus",
    "Offer",
    "OfferSort",
    "Org",
    "OrgCreate",
    "Placement",
    "ProviderConfig",
    "ProviderConfigAdd",
    "ProviderConfigKey",
    "ProviderKind",
    "Role",
    "ServerHealth",
    "SshCa",
    "SshCertificate",
    "SshCertificateRequest",
    "SshTarget",
    "Token",
    "TokenCreate",
    "TokenCreated",
    "TokenScope",
    "Ttl",
    "User",
    "WebSession",
    "WebSessionCreate",
    "Whoami",
    "check_name",
]
