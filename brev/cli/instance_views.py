"""What `brev show` and `brev create` print of one instance: its fields, the placements tried
and why each failed, its events."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from brev.cli.gpus import print_gpu_table
from brev.cli.output import age, note, print_table, until, when

if TYPE_CHECKING:
    from brev import api


def print_instance(instance: api.InstanceDetail) -> None:
    """`brev show`'s tables: the fields, the last GPU report, the attempts, the events."""
    rows = [
        ["name", instance.name],
        [
            "status",
            instance.status
            + (
                f" (wanted: {instance.desired_status})"
                if instance.desired_status != instance.status
                else ""
            ),
        ],
        ["reason", instance.status_reason or "-"],
        ["gpu", f"{instance.gpu_model} x{instance.gpu_count}" if instance.gpu_count else "cpu"],
        ["provider", " ".join(p for p in (instance.provider, instance.instance_type) if p) or "-"],
        ["where", instance.zone or instance.region or "-"],
        ["spot", "yes" if instance.spot else "no"],
        ["$/h", f"{instance.price_per_hour:.2f}" if instance.price_per_hour is not None else "-"],
        ["machine", instance.provider_ref or "-"],
        ["address", instance.public_ip or "-"],
        [
            "created",
            f"{when(instance.created_at)} by {instance.created_by}, {age(instance.created_at)} ago",
        ],
        ["ttl", _deadline(instance.expires_at, "deleted")],
        ["lease", _deadline(instance.run_lease_until, "deleted unless `brev run` renews it")],
    ]
    print_table(["field", "value"], rows)
    if instance.last_heartbeat_at is not None:
        gpus = instance.telemetry.get("gpus") or []
        note(f"Last agent report {age(instance.last_heartbeat_at)} ago; health {instance.health}.")
        if gpus:
            print_gpu_table(gpus)
    print_attempts(instance)
    if instance.events:
        print_table(
            ["when", "event", "details"],
            [[when(e.created_at), e.action, _details(e.details)] for e in instance.events],
        )


def _deadline(moment: datetime | None, what: str) -> str:
    if moment is None:
        return "-"
    return f"{what} {until(moment)} ({when(moment)} UTC)"


def print_attempts(instance: api.InstanceDetail) -> None:
    tried = [
        e
        for e in reversed(instance.events)
        if e.action in ("instance.attempt_failed", "instance.provisioned")
    ]
    if not tried:
        return
    rows = [
        [
            str(e.details.get("attempt", "")),
            str(e.details.get("provider", "")),
            str(e.details.get("instance_type", "")),
            str(e.details.get("zone") or e.details.get("region", "")),
            "ok" if e.action == "instance.provisioned" else str(e.details.get("reason", "")),
        ]
        for e in tried
    ]
    print_table(["#", "provider", "type", "where", "outcome"], rows)


def print_placements(placements: list[api.Placement]) -> None:
    print_table(
        ["#", "provider", "type", "gpu", "where", "$/h"],
        [
            [
                str(n),
                p.provider,
                p.instance_type,
                f"{p.gpu_model} x{p.gpu_count:g}" if p.gpu_model else "cpu",
                p.zone or p.region,
                f"{p.price_per_hour:.2f}" if p.price_per_hour is not None else "-",
            ]
            for n, p in enumerate(placements, 1)
        ],
    )


def _details(details: dict[str, object]) -> str:
    return ", ".join(f"{k}={v}" for k, v in details.items() if v not in (None, ""))
