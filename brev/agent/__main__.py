"""`python -m brev.agent`: the agent without the CLI, for a node's bare venv.

    python -m brev.agent run --url URL --token-file FILE [--interval 10] [--node-home DIR]
    python -m brev.agent collect [--json]

Standard library only (argparse, logging): a node may have no internet to install the CLI's
dependencies. The token is read from a file so that it never shows in `ps` or a unit file.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from brev.agent import uplink
from brev.agent.collect import collect
from brev.agent.report import AgentReport

log = logging.getLogger("brev.agent")

# How long a refused agent waits before asking again: a re-install writes a new token file.
REFUSED_RETRY_S = 60.0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "collect":
        report = collect(prefer_nvml=args.nvml)
        if args.json:
            sys.stdout.write(json.dumps(report.as_json(), indent=2) + "\n")
        else:
            sys.stdout.write(describe(report))
        return 0
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return _run(args.url, args.token_file, args.interval, args.node_home)


def _run(url: str, token_file: Path, interval: float, node_home: Path | None) -> int:
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _: stopping.append(signum))
    signal.signal(signal.SIGINT, lambda signum, _: stopping.append(signum))
    while not stopping:
        try:
            token = token_file.read_text().strip()
        except OSError as error:
            log.error("cannot read the token file %s: %s", token_file, error.strerror)
            return 2
        if not token:
            log.error("the token file %s is empty", token_file)
            return 2
        try:
            agent = uplink.run(
                url, token, interval, should_stop=lambda: bool(stopping), node_home=node_home
            )
        except PermissionError as error:
            log.error("%s; asking again in %.0f s", error, REFUSED_RETRY_S)
            uplink.wait(REFUSED_RETRY_S, lambda: bool(stopping))
            continue
        log.info(
            "stopped; %d report(s) delivered, %d undelivered", agent.delivered, len(agent.pending)
        )
        return 0
    return 0


def describe(report: AgentReport) -> str:
    """The report in a few lines for a person at the node's terminal."""
    host = report.host
    lines = [
        f"{host.hostname}: {host.os}, {host.arch}, {host.cpu_count} CPUs, "
        f"driver {report.driver_version or '-'}, CUDA {report.cuda_version or '-'} "
        f"(via {report.source})"
    ]
    lines += [f"note: {problem}" for problem in report.problems]
    if not report.gpus:
        lines.append("no NVIDIA GPUs: this is a CPU host")
    for gpu in report.gpus:
        lines.append(
            f"GPU {gpu.index}  {gpu.name}  {gpu.uuid}  "
            f"util {_num(gpu.utilization_gpu_pct)} %  "
            f"memory {_num(gpu.memory_used_mib)} / {_num(gpu.memory_total_mib)} MiB  "
            f"{_num(gpu.temperature_c)} C  {_num(gpu.power_draw_w)} W"
        )
    return "\n".join(lines) + "\n"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _seconds(text: str) -> float:
    """`10`, `2.5` or `10s`: seconds, more than zero."""
    try:
        seconds = float(text.removesuffix("s"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"must be more than zero: {text!r}")
    return seconds


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m brev.agent", description="The agent that reports a host's GPUs."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="report to the plane every interval")
    run.add_argument("--url", required=True, help="the control plane, e.g. https://brev.example")
    run.add_argument(
        "--token-file", required=True, type=Path, help="a file holding this agent's token"
    )
    run.add_argument("--interval", type=_seconds, default=10.0, help="seconds between reports (10)")
    run.add_argument(
        "--node-home", type=Path, help="a registered node's home: apply GPU assignments there"
    )
    show = commands.add_parser("collect", help="print one report of this host")
    show.add_argument("--json", action="store_true", help="the report as the plane receives it")
    show.add_argument(
        "--no-nvml", dest="nvml", action="store_false", help="read nvidia-smi even with NVML"
    )
    return parser


if __name__ == "__main__":
    sys.exit(main())
