"""`brev ls` without the heavy half of the CLI: the standard library (brev.cli.fast.plane), the
same table. It is what people and CI jobs run most, and typer + httpx + pydantic cost it about
200 ms of start-up against a request of 25 ms. Anything unusual (an error, no login) returns
None and the full CLI does the command, with its messages."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime

TYPE_CHECKING = False  # as in brev.cli.output: no typing at run time
if TYPE_CHECKING:
    from typing import Any


def print_instances(
    instances: Sequence[Mapping[str, Any]], org: str | None, json_output: bool
) -> None:
    from brev.cli.output import age, note, print_table, until

    if json_output:
        # What print_json prints for the same models: two-space indent, UTF-8 as is.
        sys.stdout.write(json.dumps(instances, indent=2, ensure_ascii=False) + "\n")
        return
    if not instances:
        note(f"No instances in org '{org}'. Create one with `brev create a100`.")
        return
    rows = [
        [
            i["name"],
            i["status"],
            i["health"],
            f"{i.get('gpu_model') or i.get('gpu_spec')} x{i['gpu_count']}"
            if i.get("gpu_count")
            else "cpu",
            "/".join(p for p in (i.get("provider"), i.get("node") or i.get("region")) if p) or "-",
            f"{i['price_per_hour']:.2f}" if i.get("price_per_hour") is not None else "-",
            age(datetime.fromisoformat(i["created_at"])),
            until(_first_end(i)),
        ]
        for i in instances
    ]
    print_table(["name", "status", "health", "gpu", "provider", "$/h", "age", "expires"], rows)


def _first_end(instance: Mapping[str, Any]) -> datetime | None:
    """When the plane deletes it: the earlier of its TTL and its run's lease."""
    ends = [
        datetime.fromisoformat(instance[key])
        for key in ("expires_at", "run_lease_until")
        if instance.get(key)
    ]
    return min(ends, default=None)


def fast_ls(json_output: bool) -> bool:
    """Print the list; False when it could not (the full CLI then runs `ls`)."""
    from brev.cli.fast.plane import get_org_json

    answer = get_org_json("/instances")
    if answer is None or not isinstance(answer[1], list):
        return False
    login, instances = answer
    print_instances(instances, login.org, json_output)
    return True
