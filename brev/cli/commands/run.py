"""The `brev run` command line. The words after the first `--` are the command: main() takes
them off before click parses the rest (click could not tell `brev run -- echo hi`'s command
from the optional GPU argument)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from brev.cli import exit_codes, panels
from brev.cli.options import json_flag

_command: list[str] | None = None


def take_command(argv: list[str]) -> list[str]:
    """`argv` (after `brev`) without the command words, which are kept for `run`."""
    global _command
    if "--" in argv:
        cut = argv.index("--")
        _command = argv[cut + 1 :]
        return argv[:cut]
    _command = None
    return argv


def run(
    gpu: Annotated[
        str | None, typer.Argument(help="a100, A100:8, h100:8, l4, cpu; as brev create")
    ] = None,
    provider: Annotated[str | None, typer.Option(help="only these, e.g. aws,gcp,local")] = None,
    region: Annotated[str | None, typer.Option(help="only this region")] = None,
    node: Annotated[str | None, typer.Option(help="only this registered node")] = None,
    spot: Annotated[bool, typer.Option(help="spot (preemptible) capacity")] = False,
    max_price: Annotated[float | None, typer.Option(help="USD per hour at most", min=0.01)] = None,
    disk: Annotated[int, typer.Option(help="boot disk, GB", min=20, max=16384)] = 200,
    image: Annotated[str | None, typer.Option(help="machine image")] = None,
    timeout: Annotated[str, typer.Option(help="how long it may take to be ready")] = "15m",
    on: Annotated[
        str | None, typer.Option(help="run on this existing instance; it stays afterwards")
    ] = None,
    workdir: Annotated[
        Path | None, typer.Option(help="the directory to sync (default: the current one)")
    ] = None,
    no_sync: Annotated[
        bool, typer.Option("--no-sync", help="send no files; run in the login directory")
    ] = False,
    env: Annotated[
        list[str] | None, typer.Option("--env", help="K=V for the command (K alone: this value)")
    ] = None,
    out: Annotated[
        list[str] | None,
        typer.Option("--out", help="PATH[:LOCAL] to copy back afterwards, also on failure"),
    ] = None,
    ttl: Annotated[
        str | None, typer.Option(help="hard lifetime the plane enforces, e.g. 2h")
    ] = None,
    keep: Annotated[
        bool, typer.Option(help="keep the instance afterwards (its TTL applies)")
    ] = False,
    name: Annotated[str | None, typer.Option(help="the instance's name")] = None,
    idempotency_key: Annotated[
        str | None, typer.Option(help="default: from the CI job (GitHub, GitLab, Buildkite)")
    ] = None,
    json_output: Annotated[bool, json_flag("NDJSON events on stderr")] = False,
) -> None:
    """Rent a GPU, run one command there, give it back: brev run [GPU] [OPTIONS] -- CMD...

    Syncs the working directory (honouring .gitignore and .brevignore), streams the command's
    output, copies --out paths back, deletes the instance whatever happens, and exits with
    the command's exit code. brev's own failures: 2 usage, 69 provisioning failed, 70 brev
    error, 74 sync failed, 75 no capacity, 124 timeout or TTL, 255 connection lost, 130/143
    cancelled (SIGINT/SIGTERM: forwarded to the command first).
    """
    from brev.cli.run.arguments import UsageError
    from brev.cli.run.options import build_options

    if not _command:
        _usage("no command: brev run [GPU] [OPTIONS] -- CMD [ARGS...]")
    try:
        options = build_options(
            command=_command or [],
            gpu=gpu,
            provider=provider,
            region=region,
            node=node,
            spot=spot,
            max_price=max_price,
            disk=disk,
            image=image,
            timeout=timeout,
            on=on,
            workdir=workdir,
            sync=not no_sync,
            env=env or [],
            outs=out or [],
            ttl=ttl,
            keep=keep,
            name=name,
            idempotency_key=idempotency_key,
        )
    except UsageError as error:
        _usage(str(error))
    raise typer.Exit(_execute(options, json_output))


def _execute(options: object, json_output: bool) -> int:
    from brev.cli.login_state import connect
    from brev.cli.run.job import Job, RunOptions
    from brev.cli.run.report import Reporter
    from brev.errors import BrevError

    assert isinstance(options, RunOptions)
    reporter = Reporter(json_events=json_output)
    try:
        code = Job(options, connect, reporter).run()
    except BrevError as error:  # before anything was rented: not logged in, a bad URL
        reporter.event("error", f"error: {error.message}", message=error.message)
        code = exit_codes.BREV_ERROR
        reporter.outcome.exit_code = code
    reporter.write_step_summary(os.environ.get("GITHUB_STEP_SUMMARY"))
    return code


def _usage(message: str) -> None:
    sys.stderr.write(f"error: {message}\n")
    raise typer.Exit(exit_codes.USAGE)


def register(app: typer.Typer) -> None:
    app.command(rich_help_panel=panels.INSTANCES)(run)
