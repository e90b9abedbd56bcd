"""brev ls | create | show | start | stop | delete | autostop | ttl: the org's instances.
`brev ls` usually never gets here: brev.cli.launch answers it before typer loads
(brev.cli.listing, which also draws the table for this path)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated

import typer

from brev.cli import panels, prompts
from brev.cli.instance_views import print_attempts, print_instance, print_placements
from brev.cli.instance_wait import create_with_retries, wait_until_settled
from brev.cli.login_state import connect
from brev.cli.options import JsonOutput, duration, duration_or_off, optional_duration
from brev.cli.output import note, print_json, until, when
from brev.cli.ssh_access import forget_ssh_cache, refresh_quietly
from brev.errors import BrevError


def ls(
    json_output: JsonOutput = False,
) -> None:
    """List the current org's instances."""
    from brev.cli.listing import print_instances

    with connect() as client:
        instances = client.instances()
    print_instances([i.model_dump(mode="json") for i in instances], client.org, json_output)


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
    json_output: JsonOutput = False,
) -> None:
    """Create a GPU instance and wait until it runs.

    Takes free GPUs of the org's registered nodes first; else the cheapest matching offer on
    its clouds, moving on to the next zone, region or offer when one has no capacity.
    """
    from brev import api

    wait_seconds = duration("--timeout", timeout)
    autostop_seconds = optional_duration("--autostop", autostop)
    ttl_seconds = optional_duration("--ttl", ttl)
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
                print_placements(plan.placements)
            return
        instance = create_with_retries(client, body)
        if instance.node:
            gpus = (
                f"{instance.gpu_count} x {instance.gpu_model}" if instance.gpu_count else "no GPU"
            )
            note(f"Creating {instance.name} on node {instance.node} ({gpus}).")
        else:
            note(f"Creating {instance.name}: {len(instance.plan)} placement(s) to try.")
        if not detach:
            instance = wait_until_settled(client, instance.name, wait_seconds)
            if instance.status == "running":
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
        print_attempts(instance)
        raise BrevError(f"{instance.name} failed: {instance.status_reason}")


def show(
    name: Annotated[str, typer.Argument(help="instance name")], json_output: JsonOutput = False
) -> None:
    """Show an instance: where it runs, what was tried, what happened."""
    with connect() as client:
        instance = client.instance(name)
    if json_output:
        print_json(instance)
        return
    print_instance(instance)


def start(
    names: Annotated[list[str], typer.Argument(help="instance names")],
    json_output: JsonOutput = False,
) -> None:
    """Start stopped instances."""
    started = []
    with connect() as client:
        for name in names:
            started.append(client.start_instance(name))
            note(f"Starting {name}.")
        refresh_quietly(client)
    if json_output:
        print_json(started)


def stop(
    names: Annotated[list[str], typer.Argument(help="instance names")],
    json_output: JsonOutput = False,
) -> None:
    """Stop instances (their disks stay; compute billing stops)."""
    stopped = []
    with connect() as client:
        for name in names:
            stopped.append(client.stop_instance(name))
            note(f"Stopping {name}.")
    forget_ssh_cache()
    if json_output:
        print_json(stopped)


def delete(
    names: Annotated[list[str], typer.Argument(help="instance names")],
    yes: Annotated[bool, typer.Option("-y", "--yes", help="do not ask for confirmation")] = False,
    json_output: JsonOutput = False,
) -> None:
    """Delete instances and everything on them."""
    if not yes and not prompts.confirm(
        f"Delete {', '.join(names)} and all data on {'it' if len(names) == 1 else 'them'}?",
        without_terminal="refusing to delete without confirmation: pass -y to delete from a script",
    ):
        raise BrevError("nothing deleted")
    deleted = []
    with connect() as client:
        for name in names:
            deleted.append(client.delete_instance(name))
            note(f"Deleting {name}.")
    forget_ssh_cache()
    if json_output:
        print_json(deleted)


def autostop(
    name: Annotated[str, typer.Argument(help="instance name")],
    after: Annotated[str, typer.Argument(help="idle time before it stops, e.g. 30m; or off")],
    delete_it: Annotated[bool, typer.Option("--delete", help="delete instead of stopping")] = False,
    json_output: JsonOutput = False,
) -> None:
    """Stop an instance once it stayed idle (every GPU under 5 %, no SSH session)."""
    seconds = duration_or_off("autostop", after)
    with connect() as client:
        instance = client.set_autostop(name, seconds, delete=delete_it)
    if json_output:
        print_json(instance)
    elif seconds is None:
        note(f"Autostop is off for {name}.")
    else:
        verb = "delete" if delete_it else "stop"
        note(f"{name} will {verb} after {after} idle (every GPU under 5 %, no SSH session).")


def ttl(
    name: Annotated[str, typer.Argument(help="instance name")],
    after: Annotated[str, typer.Argument(help="delete it this long from now, e.g. 2h; or off")],
    json_output: JsonOutput = False,
) -> None:
    """Delete an instance this long from now (its TTL); off: keep it."""
    seconds = duration_or_off("ttl", after)
    with connect() as client:
        instance = client.set_ttl(name, seconds)
    if json_output:
        print_json(instance)
    elif instance.expires_at is None:
        note(f"TTL is off for {name}: it runs until deleted.")
    else:
        end = instance.expires_at
        note(f"{name} will be deleted {until(end)} ({when(end)} UTC).")


def register(app: typer.Typer) -> None:
    for command in (ls, create, show, start, stop, delete, autostop, ttl):
        app.command(rich_help_panel=panels.INSTANCES)(command)
