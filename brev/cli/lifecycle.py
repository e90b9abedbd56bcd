"""brev create | show | start | stop | delete."""

from __future__ import annotations

import sys
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from brev.cli.gpus import print_gpu_table
from brev.cli.login_state import connect
from brev.cli.output import age, note, print_json, print_table, until, when
from brev.duration import InvalidDuration, parse_duration
from brev.errors import BrevError

if TYPE_CHECKING:
    from brev import api
    from brev.client import BrevClient

PANEL = "Instances"
FINAL = {"running", "failed", "stopped", "deleted"}
NODE_POLL_S = 0.1  # between reads of a starting instance on a node
JsonOption = Annotated[bool, typer.Option("--json", help="print JSON")]


def create(
    gpu: Annotated[
        str | None, typer.Argument(help="a100, A100:8, h100:8, a100-80gb, l4, any")
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="default: generated, e.g. a100-brisk-otter")
    ] = None,
    provider: Annotated[
        str | None, typer.Option(help="only these, e.g. aws,gcp; local: registered nodes")
    ] = None,
    node: Annotated[str | None, typer.Option(help="only this registered node")] = None,
    region: Annotated[str | None, typer.Option(help="only this region")] = None,
    spot: Annotated[bool, typer.Option(help="spot (preemptible) capacity")] = False,
    disk: Annotated[int, typer.Option(help="boot disk, GB", min=20, max=16384)] = 200,
    max_price: Annotated[float | None, typer.Option(help="USD per hour at most", min=0.01)] = None,
    image: Annotated[
        str | None, typer.Option(help="machine image; default: a Deep Learning image")
    ] = None,
    startup_script: Annotated[Path | None, typer.Option(help="script run at first boot")] = None,
    detach: Annotated[bool, typer.Option(help="return once accepted; do not wait")] = False,
    timeout: Annotated[str, typer.Option(help="how long to wait for RUNNING")] = "15m",
    autostop: Annotated[
        str | None, typer.Option(help="stop after this long idle (GPUs < 5 %, no SSH), e.g. 30m")
    ] = None,
    autostop_delete: Annotated[bool, typer.Option(help="autostop deletes instead")] = False,
    ttl: Annotated[
        str | None, typer.Option(help="delete it this long after creation, e.g. 4h")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option(help="print the placements it would try; create nothing")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Create a GPU instance and wait until it runs.

    Takes free GPUs of the org's registered nodes first; else the cheapest matching offer on
    its clouds, moving on to the next zone, region or offer when one has no capacity.
    """
    from brev import api

    try:
        wait_seconds = parse_duration(timeout)
    except InvalidDuration as exc:
        raise BrevError(f"--timeout: {exc}") from None
    try:
        autostop_seconds = parse_duration(autostop) if autostop else None
    except InvalidDuration as exc:
        raise BrevError(f"--autostop: {exc}") from None
    try:
        ttl_seconds = parse_duration(ttl) if ttl else None
    except InvalidDuration as exc:
        raise BrevError(f"--ttl: {exc}") from None
    script = None
    if startup_script is not None:
        try:
            script = startup_script.read_text()
        except OSError as exc:
            raise BrevError(
                f"--startup-script: cannot read {startup_script} ({exc.strerror})"
            ) from None
    body = api.InstanceCreate(
        name=name,
        gpu=gpu,
        node=node,
        providers=[p.strip() for p in provider.split(",") if p.strip()] if provider else None,
        region=region,
        spot=spot,
        disk_gb=disk,
        max_price=max_price,
        image=image,
        startup_script=script,
        # One key per command: if the request is retried (a dropped connection), the plane
        # returns the first instance instead of making a second.
        idempotency_key=f"cli-{uuid.uuid4().hex}",
        autostop_seconds=autostop_seconds,
        autostop_delete=autostop_delete,
        ttl_seconds=ttl_seconds,
    )
    with connect() as client:
        if dry_run:
            plan = client.plan_instance(body)
            if json_output:
                print_json(plan)
            else:
                note(f"Would try, in this order, for {plan.gpu}:")
                _print_placements(plan.placements)
            return
        instance = _create_with_retries(client, body)
        if instance.node:
            gpus = (
                f"{instance.gpu_count} x {instance.gpu_model}" if instance.gpu_count else "no GPU"
            )
            note(f"Creating {instance.name} on node {instance.node} ({gpus}).")
        else:
            note(f"Creating {instance.name}: {len(instance.plan)} placement(s) to try.")
        if not detach:
            instance = _wait(client, instance.name, wait_seconds)
            if instance.status == "running":
                from brev.cli.access import refresh_quietly

                refresh_quietly(client)  # `ssh NAME` works from now on
    if json_output:
        print_json(instance)
    elif instance.status == "running" and instance.node:
        note(f"{instance.name} is running on node {instance.node}.")
    elif instance.status == "running":
        note(
            f"{instance.name} is running on {instance.provider} {instance.instance_type} "
            f"in {instance.zone or instance.region} (${instance.price_per_hour or 0:.2f}/h)."
        )
    if instance.status == "failed":
        _print_attempts(instance)
        raise BrevError(f"{instance.name} failed: {instance.status_reason}")


def _create_with_retries(client: BrevClient, body: api.InstanceCreate) -> api.InstanceDetail:
    """POST the create, again on a dropped connection: the idempotency key makes a repeat
    return the instance the first request made, if it got through."""
    from brev.client import ServerUnreachable

    for attempt in range(3):
        try:
            return client.create_instance(body)
        except ServerUnreachable:
            if attempt == 2:
                raise
            time.sleep(1 + attempt)
    raise AssertionError("unreachable")


def _wait(client: BrevClient, name: str, seconds: int) -> api.InstanceDetail:
    deadline = time.monotonic() + seconds
    last = ""
    status_line = _StatusLine()
    try:
        while True:
            instance = client.instance(name)
            line = _describe_progress(instance)
            if line != last:
                status_line.show(line)
                last = line
            if instance.status in FINAL:
                return instance
            if time.monotonic() > deadline:
                raise BrevError(
                    f"{name} is still {instance.status} after {seconds}s; the plane keeps "
                    f"going: follow it with `brev show {name}`, or `brev delete {name}`"
                )
            # A node's agent hears of the instance at once (its long-poll) and makes it
            # running within a fraction of a second; a cloud takes minutes.
            time.sleep(NODE_POLL_S if instance.node else 1)
    finally:
        status_line.close()


def _describe_progress(instance: api.InstanceDetail) -> str:
    if instance.node:
        waiting = " (waiting for the node's agent)" if instance.status == "starting" else ""
        return f"{instance.name}: {instance.status} on node {instance.node}{waiting}"
    where = " ".join(
        p
        for p in (instance.provider, instance.instance_type, instance.zone or instance.region)
        if p
    )
    attempt = f", attempt {instance.attempt + 1}/{len(instance.plan)}" if instance.plan else ""
    # `running` means reachable: the machine is up, its agent (or sshd) not yet heard from.
    booting = ", booting: waiting for its agent" if instance.status == "starting" else ""
    return f"{instance.name}: {instance.status} ({where}{attempt}{booting})"


class _StatusLine:
    """One line rewritten in place on a terminal; a line per change in a log."""

    def __init__(self) -> None:
        self._terminal = sys.stderr.isatty()
        self._width = 0

    def show(self, text: str) -> None:
        if self._terminal:
            sys.stderr.write("\r" + text.ljust(self._width))
            self._width = len(text)
        else:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self._terminal and self._width:
            sys.stderr.write("\n")


def show(
    name: Annotated[str, typer.Argument(help="instance name")], json_output: JsonOption = False
) -> None:
    """Show an instance: where it runs, what was tried, what happened."""
    with connect() as client:
        instance = client.instance(name)
    if json_output:
        print_json(instance)
        return
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
    _print_attempts(instance)
    if instance.events:
        print_table(
            ["when", "event", "details"],
            [[when(e.created_at), e.action, _details(e.details)] for e in instance.events],
        )


def _deadline(moment: datetime | None, what: str) -> str:
    if moment is None:
        return "-"
    return f"{what} {until(moment)} ({when(moment)} UTC)"


def _print_attempts(instance: api.InstanceDetail) -> None:
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


def _print_placements(placements: list[api.Placement]) -> None:
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


def start(names: Annotated[list[str], typer.Argument(help="instance names")]) -> None:
    """Start stopped instances."""
    with connect() as client:
        for name in names:
            client.start_instance(name)
            note(f"Starting {name}.")
        from brev.cli.access import refresh_quietly

        refresh_quietly(client)


def stop(names: Annotated[list[str], typer.Argument(help="instance names")]) -> None:
    """Stop instances (their disks stay; compute billing stops)."""
    with connect() as client:
        for name in names:
            client.stop_instance(name)
            note(f"Stopping {name}.")
    _forget_ssh_cache()


def delete(
    names: Annotated[list[str], typer.Argument(help="instance names")],
    yes: Annotated[bool, typer.Option("-y", "--yes", help="do not ask for confirmation")] = False,
) -> None:
    """Delete instances and everything on them."""
    if not yes:
        if not sys.stdin.isatty():
            raise BrevError(
                "refusing to delete without confirmation: pass -y to delete from a script"
            )
        if not typer.confirm(
            f"Delete {', '.join(names)} and all data on {'it' if len(names) == 1 else 'them'}?"
        ):
            raise BrevError("nothing deleted")
    with connect() as client:
        for name in names:
            client.delete_instance(name)
            note(f"Deleting {name}.")
    _forget_ssh_cache()


def _forget_ssh_cache() -> None:
    """`brev exec` must not take the fast path to a machine just stopped or deleted."""
    from brev.ssh import config as ssh_config

    ssh_config.forget_cache(ssh_config.paths())


def autostop(
    name: Annotated[str, typer.Argument(help="instance name")],
    after: Annotated[str, typer.Argument(help="idle time before it stops, e.g. 30m; or off")],
    delete_it: Annotated[bool, typer.Option("--delete", help="delete instead of stopping")] = False,
) -> None:
    """Stop an instance once it stayed idle (every GPU under 5 %, no SSH session)."""
    if after.strip().lower() == "off":
        seconds = None
    else:
        try:
            seconds = parse_duration(after)
        except InvalidDuration as exc:
            raise BrevError(f"autostop: {exc}, or off") from None
    with connect() as client:
        client.set_autostop(name, seconds, delete=delete_it)
    if seconds is None:
        note(f"Autostop is off for {name}.")
    else:
        verb = "delete" if delete_it else "stop"
        note(f"{name} will {verb} after {after} idle (every GPU under 5 %, no SSH session).")


def ttl(
    name: Annotated[str, typer.Argument(help="instance name")],
    after: Annotated[str, typer.Argument(help="delete it this long from now, e.g. 2h; or off")],
) -> None:
    """Delete an instance this long from now (its TTL); off: keep it."""
    if after.strip().lower() == "off":
        seconds = None
    else:
        try:
            seconds = parse_duration(after)
        except InvalidDuration as exc:
            raise BrevError(f"ttl: {exc}, or off") from None
    with connect() as client:
        instance = client.set_ttl(name, seconds)
    if instance.expires_at is None:
        note(f"TTL is off for {name}: it runs until deleted.")
    else:
        end = instance.expires_at
        note(f"{name} will be deleted {until(end)} ({when(end)} UTC).")


def register(app: typer.Typer) -> None:
    for command in (create, show, start, stop, delete, autostop, ttl):
        app.command(rich_help_panel=PANEL)(command)
