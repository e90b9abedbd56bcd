"""The GitHub Action's main step (action.yml): `brev run ... --json -- RUN` with the action's
inputs, the step's outputs read from its NDJSON events, and its exit code as the step's.

Standard library only, and no syntax newer than Python 3.8: it runs on the runner's own
`python3`, before anything is installed. Inputs arrive as INPUT_* variables (action.yml sets
them from `inputs.*`, so that no input is ever pasted into a shell script).

    exit-code  how `brev run` exited (a signal N reads 128+N)
    instance   the `instance` of the `created` event
    cost       the `cost_usd` of the `deleted` event
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

NOT_STARTED = 127  # as a shell says for a command it cannot find


def brev_argv(env: dict[str, str]) -> list[str]:
    """`brev run` with the inputs in `env`; ValueError for a wrong input."""
    command = env.get("INPUT_RUN", "")
    if not command.strip():
        raise ValueError("input `run` is empty: give the command line to run on the machine")
    argv = [env.get("BREV_ACTION_BIN") or "brev", "run"]
    gpu = env.get("INPUT_GPU", "").strip()
    if gpu:
        argv.append(gpu)
    for flag, name in (("--workdir", "INPUT_WORKDIR"), ("--ttl", "INPUT_TTL")):
        value = env.get(name, "").strip()
        if value:
            argv += [flag, value]
    for line in env.get("INPUT_OUT", "").splitlines():
        if line.strip():
            argv += ["--out", line.strip()]
    try:
        argv += shlex.split(env.get("INPUT_ARGS", ""))
    except ValueError as error:
        raise ValueError(f"input `args`: {error}") from None
    # One word: `brev run` hands the line to the machine's shell as it stands.
    return [*argv, "--json", "--", command]


def brev_env(env: dict[str, str]) -> dict[str, str]:
    """The job's environment, with the inputs that were given over BREV_* (an empty input
    keeps what the job set)."""
    child = {k: v for k, v in env.items() if not k.startswith(("INPUT_", "BREV_ACTION_"))}
    for name in ("URL", "TOKEN", "ORG"):
        value = env.get(f"INPUT_{name}", "").strip()
        if value:
            child["BREV_API_URL" if name == "URL" else f"BREV_{name}"] = value
    return child


class Events:
    """The outputs, from the NDJSON lines of `brev run --json` (other lines are ignored)."""

    def __init__(self) -> None:
        self.instance = ""
        self.cost = ""

    def feed(self, line: str) -> None:
        text = line.strip()
        if not text.startswith("{"):
            return
        try:
            record = json.loads(text)
        except ValueError:
            return
        if not isinstance(record, dict):
            return
        kind = record.get("event")
        if kind == "created":
            self.instance = _name(record.get("instance"))
        elif kind == "deleted" and isinstance(record.get("cost_usd"), (int, float)):
            self.cost = str(record["cost_usd"])


def _name(value: Any) -> str:
    if isinstance(value, dict):
        value = value.get("name") or value.get("id")
    return "" if value is None else str(value).strip()


def write_outputs(path: str | None, outputs: dict[str, str]) -> None:
    lines = "".join(f"{key}={' '.join(value.split())}\n" for key, value in outputs.items())
    if path:
        with Path(path).open("a") as out:
            out.write(lines)
    else:  # not under a runner (a person trying it): show them
        sys.stdout.write(lines)


def run(env: dict[str, str], stderr: IO[str]) -> int:
    token = env.get("INPUT_TOKEN", "").strip() or env.get("BREV_TOKEN", "").strip()
    if token:
        print(f"::add-mask::{token}", flush=True)
    events = Events()
    try:
        argv = brev_argv(env)
    except ValueError as error:
        print(f"::error::{error}", flush=True)
        write_outputs(env.get("GITHUB_OUTPUT"), {"exit-code": "2", "instance": "", "cost": ""})
        return 2
    print("+ " + shlex.join(["brev", *argv[1:]]), flush=True)
    code = _run_brev(argv, brev_env(env), events, stderr)
    write_outputs(
        env.get("GITHUB_OUTPUT"),
        {"exit-code": str(code), "instance": events.instance, "cost": events.cost},
    )
    if code != 0:
        print(f"::error::brev run exited {code}", flush=True)
    return code


def _run_brev(argv: list[str], env: dict[str, str], events: Events, stderr: IO[str]) -> int:
    try:
        # A session of its own: a signal reaches it once, from us, even when the runner (or
        # a terminal) signals our whole process group.
        process = subprocess.Popen(
            argv, env=env, stderr=subprocess.PIPE, text=True, bufsize=1, start_new_session=True
        )
    except OSError as error:
        print(f"::error::cannot start {argv[0]}: {error.strerror}", flush=True)
        return NOT_STARTED

    def forward(signum: int, _frame: object) -> None:
        if process.poll() is None:
            process.send_signal(signum)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, forward)
    assert process.stderr is not None
    for line in process.stderr:  # the events stay in the log as they came
        stderr.write(line)
        stderr.flush()
        events.feed(line)
    code = process.wait()
    return 128 - code if code < 0 else code


if __name__ == "__main__":
    sys.exit(run(dict(os.environ), sys.stderr))
