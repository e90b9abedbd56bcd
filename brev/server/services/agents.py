"""Agents: a token per instance that can do nothing but report, and the reports themselves."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import update
from sqlalchemy.orm import Session

from brev import api
from brev.api.report_shape import ReportShape
from brev.server.auth import Principal
from brev.server.db.models import ApiToken, Instance, utcnow
from brev.server.errors import Forbidden, InvalidInput, NotFound
from brev.server.services import events, gpu_metrics, report_seq, tokens
from brev.server.services.instances import find
from brev.server.services.scope import OrgContext


def issue_token(session: Session, ctx: OrgContext, name: str) -> api.AgentToken:
    """A new agent token for the instance; the previous one stops working."""
    instance = find(session, ctx, name)
    if ctx.role != api.Role.ADMIN and instance.created_by_id != ctx.principal.user_id:
        raise Forbidden(f"only an org admin or the creator of '{name}' may make its agent token")
    now = utcnow()
    session.execute(
        update(ApiToken)
        .where(ApiToken.instance_id == instance.id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    token, secret = tokens.issue(
        session, user_id=instance.created_by_id, org_id=instance.org_id, name=f"agent-{instance.id}"
    )
    token.kind = "agent"
    token.instance_id = instance.id
    events.about_instance(
        session, instance, "agent.token", {"prefix": token.prefix}, actor_id=ctx.principal.user_id
    )
    return api.AgentToken(instance=instance.name, token=secret)


def accept_reports(
    session: Session, agent: Principal, body: api.AgentReports
) -> api.AgentReportsAccepted:
    """Keep the newest report; drop any whose seq was seen (a re-send after an outage)."""
    instance = session.get(Instance, agent.token_instance_id)
    if instance is None or instance.deleted_at is not None:
        raise NotFound("this agent's instance no longer exists")
    fresh = report_seq.unseen(body.reports, instance.last_report_seq)
    for item in fresh:
        _record_faults(session, instance, item.report)
        instance.telemetry = item.report
        gpu_metrics.record(session, instance.id, item.report)
        instance.last_report_seq = item.seq
    accepted = len(fresh)
    if accepted:
        _mark_alive(session, instance, body.reports[-1].report, body.interval_seconds)
    return api.AgentReportsAccepted(accepted=accepted, last_seq=instance.last_report_seq)


# How deep a report may nest: brev's agent writes 4 levels (report, gpus, a GPU, its errors);
# a report 256 deep was stored and then failed every read of the instance's page.
MAX_REPORT_DEPTH = 16


def _check_finite_and_shallow(container: dict[str, Any] | list[Any], depth: int = 1) -> None:
    """InvalidInput for a NaN or an infinity anywhere in the report (PostgreSQL's JSON refuses
    them), or nesting deeper than MAX_REPORT_DEPTH. Recursive (at most MAX_REPORT_DEPTH deep):
    every report passes through here, and a walk with a stack of (value, depth) pairs made
    check_shape cost 90-100 us for a 4 KiB 8-GPU report, twice json.loads of it; now 20."""
    children = container.values() if isinstance(container, dict) else container
    if children and depth >= MAX_REPORT_DEPTH:
        raise InvalidInput("reports.report", f"nests deeper than {MAX_REPORT_DEPTH} levels")
    for child in children:
        if isinstance(child, float):
            if child - child != 0.0:  # inf - inf and nan - nan are nan
                raise InvalidInput("reports.report", f"numbers must be finite, not {child}")
        elif isinstance(child, dict | list):
            _check_finite_and_shallow(child, depth + 1)


def check_shape(body: api.AgentReports) -> None:
    """Every field of a report that the plane reads has the type it reads it as
    (brev.api.report_shape); else 422 naming the field. Run before a report joins a batch
    (brev.server.ingest): one bad report must never fail the others, nor be stored to fail
    later reads."""
    for number, item in enumerate(body.reports):
        _check_finite_and_shallow(item.report)
        try:
            ReportShape.model_validate(item.report)
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise InvalidInput(f"reports.{number}.report.{where}", first["msg"]) from None


def record_report(
    session: Session, instance: Instance, report: dict[str, Any], interval_s: float
) -> None:
    """One new report about the instance from elsewhere (its node's agent): faults, the
    latest telemetry, health and idleness; metrics are the caller's."""
    _record_faults(session, instance, report)
    instance.telemetry = report
    _mark_alive(session, instance, report, interval_s)


def _record_faults(session: Session, instance: Instance, report: dict[str, Any]) -> None:
    for action, details in fault_events(instance.telemetry, report):
        events.about_instance(session, instance, action, details)


Fault = tuple[str, dict[str, Any]]  # an event's action and details


def fault_events(before: dict[str, Any], report: dict[str, Any]) -> list[Fault]:
    """What a report says went wrong since the one before it (the instance's telemetry)."""
    return [*_vanished_gpus(before, report), *_ecc_errors(before, report), *_xid_errors(report)]


def _mark_alive(
    session: Session, instance: Instance, newest: dict[str, Any], interval_s: float
) -> None:
    _pin_host_keys(instance, newest)
    instance.idle_since = idle_since(instance.idle_since, newest)
    instance.last_heartbeat_at = utcnow()
    instance.report_interval_seconds = interval_s
    if instance.status == api.InstanceStatus.STARTING and instance.node_id is None:
        # A booting machine's agent is here: it is reachable, so the reconciler calls it
        # running at its next pass rather than at its next poll.
        instance.next_check_at = utcnow()
    if instance.health == api.Health.UNHEALTHY:
        events.about_instance(session, instance, "instance.healthy", {"reason": "reports resumed"})
    instance.health = api.Health.HEALTHY


def _pin_host_keys(instance: Instance, report: dict[str, Any]) -> None:
    """A cloud instance's SSH host keys, from its agent's first report that has them: the
    agent's token proves the machine, so this first contact is authenticated (no trust on
    first use). Pinned once; `brev shell` and `ssh` refuse any other key from then on."""
    if instance.host_keys or instance.node_id is not None:
        return
    from brev.ssh.ca import normalized_host_keys

    reported = reported_host_keys(report)
    keys = normalized_host_keys(reported) if reported else []
    if keys:
        instance.host_keys = "\n".join(keys)


def reported_host_keys(report: dict[str, Any]) -> list[Any]:
    """The SSH host keys a report carries, not yet checked."""
    host = report.get("host")
    reported = host.get("ssh_host_keys") if isinstance(host, dict) else None
    return reported if isinstance(reported, list) else []


# Autostop counts a GPU as idle under this utilization (percent).
IDLE_UTILIZATION_PCT = 5.0


def idle_since(previous: datetime | None, report: dict[str, Any]) -> datetime | None:
    """When the current idle stretch began (`previous`, or now); None while the newest report
    says busy."""
    gpus = report.get("gpus") or []
    host = report.get("host") or {}
    busy_gpu = any(
        (g.get("utilization_gpu_pct") or 0) >= IDLE_UTILIZATION_PCT
        for g in gpus
        if isinstance(g, dict)
    )
    if busy_gpu or (host.get("ssh_sessions") or 0) > 0:
        return None
    return previous or utcnow()


def _gpu_ids(report: dict[str, Any]) -> dict[str, str]:
    gpus = report.get("gpus")
    if not isinstance(gpus, list):
        return {}
    return {
        str(g.get("uuid")): str(g.get("name", "GPU"))
        for g in gpus
        if isinstance(g, dict) and g.get("uuid")
    }


def _vanished_gpus(telemetry: dict[str, Any], report: dict[str, Any]) -> list[Fault]:
    """A GPU in the last report and not in this one fell off the bus or lost its driver."""
    before, now = _gpu_ids(telemetry), _gpu_ids(report)
    return [
        ("gpu.vanished", {"uuid": uuid, "name": before[uuid]})
        for uuid in sorted(set(before) - set(now))
    ]


def _ecc_errors(telemetry: dict[str, Any], report: dict[str, Any]) -> list[Fault]:
    """Uncorrected ECC errors that appeared since the last report: the GPU's memory is failing."""
    before = _ecc_counts(telemetry)
    faults: list[Fault] = []
    for uuid, (name, count) in _ecc_counts(report).items():
        previous = before.get(uuid, (name, 0.0))[1]
        if count > previous:
            details = {"uuid": uuid, "name": name, "total": count, "new": count - previous}
            faults.append(("gpu.ecc_errors", details))
    return faults


def _xid_errors(report: dict[str, Any]) -> list[Fault]:
    """A `gpu.xid` event for each XID the driver logged since the agent's previous report. Each
    report is recorded once (a re-sent seq is dropped), so no XID is counted twice."""
    # NVIDIA's names for the XIDs most often seen on data-center GPUs (docs.nvidia.com/deploy/
    # xid-errors); 999 is NVML's for an XID it does not know.
    meanings = {
        13: "graphics engine exception",
        31: "GPU memory page fault",
        32: "invalid or corrupted push buffer stream",
        43: "GPU stopped processing",
        45: "preemptive cleanup, due to previous errors",
        48: "double-bit ECC error",
        61: "internal micro-controller breakpoint/warning",
        62: "internal micro-controller halt",
        63: "ECC page retirement or row remapping recording event",
        64: "ECC page retirement or row remapper recording failure",
        69: "graphics engine class error",
        74: "NVLink error",
        79: "GPU has fallen off the bus",
        92: "high single-bit ECC error rate",
        94: "contained ECC error",
        95: "uncontained ECC error",
        119: "GSP RPC timeout",
        120: "GSP error",
        999: "an XID that NVML does not know",
    }
    gpus = report.get("gpus")
    if not isinstance(gpus, list):
        return []
    faults: list[Fault] = []
    for gpu in gpus[:64]:
        errors = gpu.get("xid_errors") if isinstance(gpu, dict) else None
        if not isinstance(errors, list):
            continue
        uuid, name = gpu.get("uuid"), gpu.get("name")
        for error in errors[:50]:  # what one agent report holds at most
            xid = error.get("xid") if isinstance(error, dict) else None
            if not isinstance(xid, int) or isinstance(xid, bool):
                continue
            message, at = error.get("message"), error.get("at")
            details = {
                "uuid": str(uuid) if uuid else None,
                "name": str(name) if name else "GPU",
                "xid": xid,
                "message": message[:300] if isinstance(message, str) else None,
                "meaning": meanings.get(xid),
                "at": at[:40] if isinstance(at, str) else None,
            }
            faults.append(("gpu.xid", details))
    return faults


def _ecc_counts(report: dict[str, Any]) -> dict[str, tuple[str, float]]:
    gpus = report.get("gpus")
    if not isinstance(gpus, list):
        return {}
    return {
        str(g["uuid"]): (str(g.get("name", "GPU")), float(g["ecc_uncorrected"]))
        for g in gpus
        if isinstance(g, dict)
        and g.get("uuid")
        and isinstance(g.get("ecc_uncorrected"), int | float)
    }
