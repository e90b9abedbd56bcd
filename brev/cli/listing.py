"""`brev ls` without the heavy half of the CLI: the standard library's urllib and json, the
same table. It is what people and CI jobs run most, and typer + httpx + pydantic cost it about
200 ms of start-up against a request of 25 ms. Anything unusual (an error, no login) returns
None and the full CLI does the command, with its messages."""

from __future__ import annotations

import json
import sys
import urllib.request
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

API_PREFIX = "/api/v1"  # as brev.api.API_PREFIX, without importing pydantic


def fetch_instances() -> list[dict[str, Any]] | None:
    """The org's instances as the API returns them; None when the full CLI should take over."""
    from brev.cli.login_state import current_login
    from brev.errors import BrevError

    try:
        login = current_login()
    except BrevError:
        return None
    if not (login.url and login.token and login.org) or not login.url.startswith("http"):
        return None
    request = urllib.request.Request(  # noqa: S310 (http or https, checked above)
        f"{login.url.rstrip('/')}{API_PREFIX}/orgs/{login.org}/instances",
        headers={"Authorization": f"Bearer {login.token}", "Accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            data = json.load(response)
    except Exception:  # any: the full CLI repeats the request and says what went wrong
        return None
    return data if isinstance(data, list) else None


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
    instances = fetch_instances()
    if instances is None:
        return False
    from brev.cli.login_state import current_login

    print_instances(instances, current_login().org, json_output)
    return True
