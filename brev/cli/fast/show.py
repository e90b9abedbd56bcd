"""`brev show NAME [--json]` without typer, httpx and pydantic: the instance asked on the
standard library (brev.cli.fast.plane) and printed as brev.cli.lifecycle.show prints it, from
the answer's JSON instead of its model. An answer whose fields are not the ones this release
knows (a plane of another release) goes to the full CLI, as does every other command line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from brev.cli.fast.plane import get_org_json, is_plain_name, prints_alike, write_json

TYPE_CHECKING = False  # as in brev.cli.fast.plane: no typing at run time
if TYPE_CHECKING:
    from typing import Any

# The fields of brev.api.InstanceDetail, Placement and Event, in their order.
DETAIL_FIELDS = (
    "id",
    "name",
    "org",
    "status",
    "health",
    "status_reason",
    "gpu_spec",
    "gpu_model",
    "gpu_count",
    "provider",
    "region",
    "instance_type",
    "price_per_hour",
    "node",
    "created_by",
    "created_at",
    "updated_at",
    "expires_at",
    "run_lease_until",
    "zone",
    "spot",
    "disk_gb",
    "image",
    "desired_status",
    "provider_ref",
    "public_ip",
    "plan",
    "attempt",
    "last_heartbeat_at",
    "autostop_idle_seconds",
    "autostop_delete",
    "idle_since",
    "telemetry",
    "events",
)
PLACEMENT_FIELDS = (
    "provider",
    "instance_type",
    "region",
    "zone",
    "spot",
    "gpu_model",
    "gpu_count",
    "price_per_hour",
    "node",
)
EVENT_FIELDS = ("id", "created_at", "actor", "action", "object_type", "object_name", "details")
MOMENTS = ("created_at", "updated_at", "expires_at", "run_lease_until", "last_heartbeat_at")


def parse(args: Sequence[str]) -> tuple[str, bool] | None:
    """(NAME, --json given) of `brev show ARGS`; None for any other command line."""
    words = list(args)
    json_output = "--json" in words
    if json_output:
        words.remove("--json")
    if len(words) != 1 or not is_plain_name(words[0]) or words[0].startswith("-"):
        return None
    return words[0], json_output


def fast_show(args: Sequence[str]) -> bool:
    """Print the instance; False when the full CLI should."""
    parsed = parse(args)
    if parsed is None:
        return False
    name, json_output = parsed
    answer = get_org_json(f"/instances/{name}")
    if answer is None or not _known_shape(answer[1]):
        return False
    instance: dict[str, Any] = answer[1]
    if json_output:
        if not prints_alike(instance):
            return False
        write_json(instance)
        return True
    try:
        moments = {key: _moment(instance[key]) for key in MOMENTS}
        events = [
            {**event, "created_at": _moment(event["created_at"])} for event in instance["events"]
        ]
    except ValueError:
        return False
    if moments["created_at"] is None:  # always there: an answer the full CLI should judge
        return False
    print_instance(instance, moments, events)
    return True


def _known_shape(instance: Any) -> bool:
    def fields(value: Any, names: tuple[str, ...]) -> bool:
        return isinstance(value, dict) and tuple(value) == names

    return (
        fields(instance, DETAIL_FIELDS)
        and isinstance(instance["plan"], list)
        and all(fields(placement, PLACEMENT_FIELDS) for placement in instance["plan"])
        and isinstance(instance["events"], list)
        and all(fields(event, EVENT_FIELDS) for event in instance["events"])
        and all(isinstance(event["details"], dict) for event in instance["events"])
        and isinstance(instance["telemetry"], dict)
        and isinstance(instance["telemetry"].get("gpus") or [], list)
        and all(isinstance(gpu, dict) for gpu in instance["telemetry"].get("gpus") or [])
    )


def _moment(text: Any) -> datetime | None:
    """A time in the answer; ValueError where pydantic's datetime might read it otherwise (not
    a string, no time zone)."""
    if text is None:
        return None
    moment = datetime.fromisoformat(text) if isinstance(text, str) else None
    if moment is None or moment.tzinfo is None:
        raise ValueError(text)
    return moment


def print_instance(
    instance: Mapping[str, Any],
    moments: Mapping[str, datetime | None],
    events: Sequence[Mapping[str, Any]],
) -> None:
    """brev.cli.lifecycle.show's table, notes and GPU, attempt and event tables."""
    from brev.cli.gpus import print_gpu_table
    from brev.cli.output import age, note, print_table, when

    i = instance
    created = moments["created_at"]
    assert created is not None  # fast_show made sure
    price = i["price_per_hour"]
    rows = [
        ["name", i["name"]],
        [
            "status",
            i["status"]
            + (f" (wanted: {i['desired_status']})" if i["desired_status"] != i["status"] else ""),
        ],
        ["reason", i["status_reason"] or "-"],
        ["gpu", f"{i['gpu_model']} x{i['gpu_count']}" if i["gpu_count"] else "cpu"],
        ["provider", " ".join(p for p in (i["provider"], i["instance_type"]) if p) or "-"],
        ["where", i["zone"] or i["region"] or "-"],
        ["spot", "yes" if i["spot"] else "no"],
        ["$/h", f"{price:.2f}" if price is not None else "-"],
        ["machine", i["provider_ref"] or "-"],
        ["address", i["public_ip"] or "-"],
        ["created", f"{when(created)} by {i['created_by']}, {age(created)} ago"],
        ["ttl", _deadline(moments["expires_at"], "deleted")],
        ["lease", _deadline(moments["run_lease_until"], "deleted unless `brev run` renews it")],
    ]
    print_table(["field", "value"], rows)
    heartbeat = moments["last_heartbeat_at"]
    if heartbeat is not None:
        gpus = i["telemetry"].get("gpus") or []
        note(f"Last agent report {age(heartbeat)} ago; health {i['health']}.")
        if gpus:
            print_gpu_table(gpus)
    _print_attempts(events)
    if events:
        print_table(
            ["when", "event", "details"],
            [[when(e["created_at"]), e["action"], _details(e["details"])] for e in events],
        )


def _deadline(moment: datetime | None, what: str) -> str:
    from brev.cli.output import until, when

    if moment is None:
        return "-"
    return f"{what} {until(moment)} ({when(moment)} UTC)"


def _print_attempts(events: Sequence[Mapping[str, Any]]) -> None:
    from brev.cli.output import print_table

    tried = [
        e
        for e in reversed(events)
        if e["action"] in ("instance.attempt_failed", "instance.provisioned")
    ]
    if not tried:
        return
    rows = []
    for e in tried:
        details = e["details"]
        rows.append(
            [
                str(details.get("attempt", "")),
                str(details.get("provider", "")),
                str(details.get("instance_type", "")),
                str(details.get("zone") or details.get("region", "")),
                "ok" if e["action"] == "instance.provisioned" else str(details.get("reason", "")),
            ]
        )
    print_table(["#", "provider", "type", "where", "outcome"], rows)


def _details(details: Mapping[str, object]) -> str:
    return ", ".join(f"{k}={v}" for k, v in details.items() if v not in (None, ""))
