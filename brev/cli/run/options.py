"""From `brev run`'s command line to a RunOptions, refusing what cannot work before anything
is rented."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import ValidationError

from brev import api
from brev.cli.options import InvalidOption, duration
from brev.cli.run import ci_env
from brev.cli.run.arguments import UsageError, parse_env, parse_out
from brev.cli.run.job import RunOptions

DEFAULT_LEASE = "5m"


def build_options(
    *,
    command: list[str],
    gpu: str | None,
    provider: str | None,
    region: str | None,
    node: str | None,
    spot: bool,
    max_price: float | None,
    disk: int,
    image: str | None,
    timeout: str,
    on: str | None,
    workdir: Path | None,
    sync: bool,
    env: list[str],
    outs: list[str],
    ttl: str | None,
    keep: bool,
    name: str | None,
    idempotency_key: str | None,
) -> RunOptions:
    if on:
        given = [
            flag
            for flag, value in (
                ("GPU", gpu),
                ("--provider", provider),
                ("--region", region),
                ("--node", node),
                ("--spot", spot or None),
                ("--max-price", max_price),
                ("--image", image),
                ("--ttl", ttl),
                ("--name", name),
                ("--keep", keep or None),
            )
            if value is not None
        ]
        if given:
            raise UsageError(f"--on uses the existing instance '{on}': drop {', '.join(given)}")
    directory = (workdir or Path.cwd()).resolve()
    if sync and not directory.is_dir():
        raise UsageError(f"--workdir: {directory} is not a directory")
    lease_s = _duration("BREV_RUN_LEASE", os.environ.get("BREV_RUN_LEASE", DEFAULT_LEASE))
    try:
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
            ttl_seconds=_duration("--ttl", ttl) if ttl else None,
            run_lease_seconds=lease_s,
        )
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
        )
        raise UsageError(f"invalid value: {problems}") from None
    return RunOptions(
        create=body,
        command_line=" ".join(command),
        key_base=_key_base(idempotency_key, command, gpu, directory),
        timeout_s=_duration("--timeout", timeout),
        lease_s=lease_s,
        on=on,
        workdir=directory,
        sync=sync,
        env=parse_env(env),
        outs=[parse_out(text) for text in outs],
        keep=keep,
    )


def _duration(flag: str, text: str) -> int:
    """brev run's exit code for a bad duration is its usage code (2), not the CLI's 1."""
    try:
        return duration(flag, text)
    except InvalidOption as error:
        raise UsageError(error.message) from None


def _key_base(explicit: str | None, command: list[str], gpu: str | None, directory: Path) -> str:
    if explicit is not None and not (8 <= len(explicit) <= 60 and ci_env.is_safe(explicit)):
        raise UsageError(
            "--idempotency-key: 8 to 60 of letters, digits and _ . : -, e.g. the CI job's id"
        )
    return ci_env.idempotency_base(None, [gpu or "", *command], str(directory), explicit)
