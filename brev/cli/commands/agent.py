"""brev agent collect: what the agent sees on this host, for a maintainer to read."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from brev.cli import panels
from brev.cli.gpus import print_gpu_table
from brev.cli.options import JsonOutput, duration
from brev.cli.output import note, print_json

group = typer.Typer(
    help="The agent that reports a host's GPUs.", no_args_is_help=True, rich_markup_mode=None
)


@group.command("collect")
def collect(
    once: Annotated[bool, typer.Option("--once", help="one report (the only mode for now)")] = True,
    json_output: JsonOutput = False,
    nvml: Annotated[bool, typer.Option(help="use NVML when nvidia-ml-py is installed")] = True,
) -> None:
    """Collect one report of this host's GPUs and print it."""
    from brev.agent.collect import collect as collect_report

    report = collect_report(prefer_nvml=nvml)
    if json_output:
        print_json(report.as_json())
        return
    host = report.host
    note(
        f"{host.hostname}: {host.os}, {host.arch}, {host.cpu_count} CPUs, "
        f"driver {report.driver_version or '-'}, CUDA {report.cuda_version or '-'} "
        f"(via {report.source})"
    )
    for problem in report.problems:
        note(f"note: {problem}")
    if not report.gpus:
        note("no NVIDIA GPUs: this is a CPU host")
        return
    print_gpu_table(report.as_json()["gpus"])


@group.command("run")
def run(
    url: Annotated[str, typer.Option(help="the control plane, e.g. https://brev.example.com")],
    token: Annotated[
        str | None, typer.Option(help="this instance's agent token", envvar="BREV_AGENT_TOKEN")
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option(help="a file holding the agent token (keeps it out of `ps`)"),
    ] = None,
    interval: Annotated[str, typer.Option(help="how often to report, e.g. 10s")] = "10s",
    node_home: Annotated[
        Path | None,
        typer.Option(help="a registered node's home: keep its instances' directories there"),
    ] = None,
) -> None:
    """Report this host to the plane every interval, buffering while it is unreachable."""
    import logging
    import signal

    from brev.agent.uplink import run as run_agent
    from brev.errors import BrevError

    seconds = duration("--interval", interval)
    if token_file is not None:
        try:
            token = token_file.read_text().strip()
        except OSError as exc:
            raise BrevError(f"--token-file: cannot read {token_file}: {exc.strerror}") from None
    if not token:
        raise BrevError("give the agent token: --token-file FILE, --token or BREV_AGENT_TOKEN")
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    stopping: list[bool] = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    try:
        uplink = run_agent(
            url, token, seconds, should_stop=lambda: bool(stopping), node_home=node_home
        )
    except PermissionError as exc:
        raise BrevError(str(exc)) from None
    note(f"stopped; {uplink.delivered} report(s) delivered, {len(uplink.pending)} undelivered")


def register(app: typer.Typer) -> None:
    app.add_typer(group, name="agent", rich_help_panel=panels.CONFIGURATION)
