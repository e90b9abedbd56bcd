"""The node side of registered machines: the agent on the standard library alone, the wheel the
plane ships, the shell scripts it runs on a box, and the instances' working directories."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import pytest

from brev import api
from brev.agent import uplink
from brev.node import workdirs
from brev.node.scripts import (
    NO_PYTHON_EXIT,
    NodeFacts,
    ProbeError,
    install_script,
    node_files,
    parse_probe,
    probe_script,
    uninstall_script,
)
from brev.node.wheel import build_wheel
from tests.postgres import free_port

STUB = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "nvidia-smi" / "bin"
TOKEN = "brev_agent_0123456789abcdef"
AGENT = [sys.executable, "-m", "brev.agent"]
T = TypeVar("T")


def _sh(
    script: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """A script the way the plane runs one over SSH: `sh -s`, the script on stdin."""
    return subprocess.run(
        ["/bin/sh", "-s"],
        input=script,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _wait_for(find: Callable[[], T | None], what: str, seconds: float = 10) -> T:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = find()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _read_when(path: Path, ready: Callable[[str], bool]) -> Callable[[], str | None]:
    """For _wait_for: the file's text once it is there and `ready(text)`."""

    def read() -> str | None:
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        return text if ready(text) else None

    return read


def _processes_under(home: Path) -> dict[int, str]:
    """Live processes whose command line names something under `home`."""
    found = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError):
            continue
        line = " ".join(a.decode(errors="replace") for a in argv if a)
        if str(home) in line:
            found[int(entry.name)] = line
    return found


def _agent_pids(home: Path) -> list[int]:
    return [pid for pid, line in _processes_under(home).items() if "-m brev.agent run" in line]


@pytest.fixture
def node_home(tmp_path: Path) -> Iterator[Path]:
    """An empty node home; whatever runs from it at the end is killed."""
    home = tmp_path / "node home"  # a blank in the path: every script must quote
    home.mkdir()
    yield home
    for pid in _processes_under(home):
        try:
            group = os.getpgid(pid)
            if group == os.getpgrp():  # this test's own child: not the group, that is pytest
                os.kill(pid, signal.SIGKILL)
            else:
                os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass


# -- the agent needs nothing but the standard library ----------------------------------------


def test_the_agent_imports_nothing_outside_the_standard_library() -> None:
    code = (
        "import json, sys\n"
        "before = set(sys.modules)\n"
        "import brev.agent.__main__, brev.agent.uplink, brev.agent.collect, brev.node.workdirs\n"
        "new = {m.split('.')[0] for m in set(sys.modules) - before}\n"
        "print(json.dumps(sorted(new - set(sys.stdlib_module_names) - {'brev'})))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    )
    assert json.loads(done.stdout) == []


def test_the_agent_command_line_without_a_token_file() -> None:
    done = subprocess.run(
        [*AGENT, "run", "--url", "http://127.0.0.1:9", "--token-file", "/nonexistent/agent.token"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "cannot read the token file /nonexistent/agent.token" in done.stderr
    bad = subprocess.run(
        [*AGENT, "run", "--url", "u", "--token-file", "f", "--interval", "0"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert bad.returncode == 2 and "must be more than zero" in bad.stderr


# -- the wheel -------------------------------------------------------------------------------


def test_the_wheel_holds_the_package_and_a_valid_record() -> None:
    name, data = build_wheel()
    assert build_wheel()[1] is data  # built once per process
    assert name == "brev-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(io.BytesIO(data)) as wheel:
        names = wheel.namelist()
        files = {n: wheel.read(n) for n in names}
    assert {"brev/__init__.py", "brev/agent/__main__.py", "brev/node/workdirs.py"} <= set(names)
    assert "brev/providers/aws.py" in names  # from providers/ in a source tree
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    metadata = files["brev-0.1.0.dist-info/METADATA"].decode()
    assert "Name: brev\n" in metadata and "Version: 0.1.0\n" in metadata
    assert "Requires-Dist" not in metadata
    assert "Tag: py3-none-any" in files["brev-0.1.0.dist-info/WHEEL"].decode()
    record = list(csv.reader(io.StringIO(files["brev-0.1.0.dist-info/RECORD"].decode())))
    assert sorted(row[0] for row in record) == sorted(names)
    for path, digest, size in record:
        if path.endswith("RECORD"):
            assert digest == size == ""
            continue
        expected = base64.urlsafe_b64encode(hashlib.sha256(files[path]).digest()).rstrip(b"=")
        assert digest == f"sha256={expected.decode()}" and int(size) == len(files[path])


@pytest.mark.slow
def test_pip_installs_the_wheel(tmp_path: Path) -> None:
    name, data = build_wheel()
    (tmp_path / name).write_bytes(data)
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index"]
    subprocess.run(
        [*pip, "--target", str(tmp_path / "target"), str(tmp_path / name)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert (tmp_path / "target" / "brev" / "agent" / "uplink.py").is_file()
    assert (tmp_path / "target" / "brev-0.1.0.dist-info" / "RECORD").is_file()


@pytest.mark.slow
@pytest.mark.skipif(not STUB.is_dir(), reason="no ../shared/fixtures beside the repo")
def test_the_wheel_in_a_bare_venv_runs_the_agent(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    with zipfile.ZipFile(io.BytesIO(build_wheel()[1])) as wheel:
        wheel.extractall(purelib)
    done = subprocess.run(
        [python, "-m", "brev.agent", "collect", "--json"],
        cwd=tmp_path,  # not the repository: brev must come from the venv
        env={**os.environ, "PATH": f"{STUB}{os.pathsep}{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    report = json.loads(done.stdout)
    assert [gpu["name"] for gpu in report["gpus"]] == ["NVIDIA H200", "NVIDIA H200"]
    where = subprocess.run(
        [python, "-c", "import brev; print(brev.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.startswith(purelib)


# -- instances' working directories ----------------------------------------------------------


def _assign(name: str, *indices: int) -> dict[str, Any]:
    return {
        "instance": name,
        "gpu_indices": list(indices),
        "gpu_uuids": [f"GPU-{i}" for i in indices],
    }


def _env(home: Path, name: str) -> dict[str, str]:
    done = subprocess.run(
        ["/bin/sh", "-c", '. "$1" && env', "sh", str(home / "instances" / name / ".brev/env")],
        env={},
        capture_output=True,
        text=True,
        check=True,
    )
    values = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    return {k: v for k, v in values.items() if k.startswith(("BREV_", "CUDA_", "NVIDIA_"))}


def test_assignments_make_remake_and_remove_working_directories(tmp_path: Path) -> None:
    home = tmp_path
    assert workdirs.present(home) == []
    assert workdirs.apply(home, [_assign("gpu-a", 0, 1), _assign("cpu-b")]) is True
    assert workdirs.present(home) == ["cpu-b", "gpu-a"]
    assert _env(home, "gpu-a") == {
        "BREV_INSTANCE": "gpu-a",
        "BREV_GPU_UUIDS": "GPU-0,GPU-1",
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
        "CUDA_VISIBLE_DEVICES": "0,1",
        "NVIDIA_VISIBLE_DEVICES": "0,1",
    }
    no_gpus = _env(home, "cpu-b")
    assert no_gpus["CUDA_VISIBLE_DEVICES"] == "" and no_gpus["NVIDIA_VISIBLE_DEVICES"] == "void"
    # the same list again changes nothing; files people made in a workdir stay
    (home / "instances" / "gpu-a" / "train.py").write_text("print('hi')\n")
    assert workdirs.apply(home, [_assign("cpu-b"), _assign("gpu-a", 0, 1)]) is False
    # other GPUs: the env is rewritten, the directory kept
    assert workdirs.apply(home, [_assign("gpu-a", 2), _assign("cpu-b")]) is True
    assert _env(home, "gpu-a")["CUDA_VISIBLE_DEVICES"] == "2"
    assert (home / "instances" / "gpu-a" / "train.py").is_file()
    # not ours: a directory without .brev/env, and a file
    (home / "instances" / "lost+found").mkdir()
    (home / "instances" / "notes").write_text("x")
    assert workdirs.apply(home, [_assign("cpu-b")]) is True
    assert not (home / "instances" / "gpu-a").exists()
    assert sorted(p.name for p in (home / "instances").iterdir()) == [
        "cpu-b",
        "lost+found",
        "notes",
    ]
    assert workdirs.apply(home, []) is True and workdirs.present(home) == []


@pytest.mark.parametrize(
    "bad",
    [
        {"instance": "../escape", "gpu_indices": [], "gpu_uuids": []},
        {"instance": "a/b", "gpu_indices": [], "gpu_uuids": []},
        {"instance": "Upper", "gpu_indices": [], "gpu_uuids": []},
        {"instance": "-dash", "gpu_indices": [], "gpu_uuids": []},
        {"instance": "a" * 64, "gpu_indices": [], "gpu_uuids": []},
        {"instance": 7, "gpu_indices": [], "gpu_uuids": []},
        {"instance": "gpu-c", "gpu_indices": [-1], "gpu_uuids": []},
        {"instance": "gpu-c", "gpu_indices": ["0"], "gpu_uuids": []},
        {"instance": "gpu-c", "gpu_indices": [True], "gpu_uuids": []},
        {"instance": "gpu-c", "gpu_indices": [0, 0], "gpu_uuids": []},
        {"instance": "gpu-c", "gpu_indices": [0], "gpu_uuids": ["GPU-0; rm -rf /"]},
        {"instance": "gpu-a", "gpu_indices": [], "gpu_uuids": []},  # twice in one list
        "gpu-c",
    ],
)
def test_a_bad_assignment_changes_nothing(tmp_path: Path, bad: Any) -> None:
    workdirs.apply(tmp_path, [_assign("gpu-a", 0)])
    with pytest.raises(workdirs.InvalidAssignment):
        workdirs.apply(tmp_path, [_assign("gpu-a", 0), bad])
    assert workdirs.present(tmp_path) == ["gpu-a"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["authorized_principals", "instances"]


def test_the_principals_file_lists_running_instances_with_their_forced_command(
    tmp_path: Path,
) -> None:
    """sshd's AuthorizedPrincipalsFile: the node's own principals as plain logins, each
    running instance's forced into `brev-enter NAME`, a stopped one not at all."""
    running = {**_assign("gpu-a", 0), "principal": "brev-i-" + "a" * 32}
    stopped = {**_assign("gpu-b", 1), "principal": "brev-i-" + "b" * 32, "active": False}
    assert workdirs.apply(tmp_path, [running, stopped], ["brev-n-" + "c" * 32])
    lines = (tmp_path / "authorized_principals").read_text().splitlines()
    enter = tmp_path / "bin" / "brev-enter"
    assert lines[1:] == [
        "brev-n-" + "c" * 32,
        f'command="{enter} gpu-a",no-agent-forwarding brev-i-' + "a" * 32,
    ]
    assert not workdirs.apply(tmp_path, [running, stopped], ["brev-n-" + "c" * 32])  # unchanged
    with pytest.raises(workdirs.InvalidAssignment):
        workdirs.apply(tmp_path, [{**running, "principal": "root"}])
    with pytest.raises(workdirs.InvalidAssignment):
        workdirs.apply(tmp_path, [running], ["root\ncommand=evil"])


def test_a_removed_node_home_is_not_made_again(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        workdirs.apply(tmp_path / "gone", [_assign("gpu-a", 0)])
    assert not (tmp_path / "gone").exists()


# -- brev-enter ------------------------------------------------------------------------------


def _enter(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    stdin = env.pop("STDIN", "")
    return subprocess.run(
        [str(home / "bin" / "brev-enter"), *args],
        env={"PATH": "/usr/bin:/bin", "HOME": str(home), **env},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def _install_programs(home: Path) -> None:
    (home / "bin").mkdir()
    files = node_files(node_home=str(home), plane_url="http://127.0.0.1:9", interval_s=10)
    for name, text in files.items():
        (home / "bin" / name).write_text(text)
        (home / "bin" / name).chmod(0o755)


def test_brev_enter_runs_commands_and_shells_in_an_instance(node_home: Path) -> None:
    _install_programs(node_home)
    workdirs.apply(node_home, [_assign("gpu-a", 0, 1), _assign("cpu-b")])
    workdir = node_home / "instances" / "gpu-a"
    done = _enter(node_home, "gpu-a", "echo", "$CUDA_VISIBLE_DEVICES", "&&", "pwd")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["0,1", str(workdir)]
    # an SSH certificate's force-command: the user's command is in SSH_ORIGINAL_COMMAND
    forced = _enter(
        node_home,
        "cpu-b",
        SSH_ORIGINAL_COMMAND='printf "[%s][%s]" "$CUDA_VISIBLE_DEVICES" "$NVIDIA_VISIBLE_DEVICES"',
    )
    assert forced.stdout == "[][void]"
    # no command: a login shell, here reading its commands from stdin
    shell = _enter(node_home, "gpu-a", SHELL="/bin/sh", STDIN='echo "$BREV_INSTANCE $PWD"\n')
    assert shell.stdout.strip().splitlines()[-1] == f"gpu-a {workdir}"
    for name in ("nope", "../instances/gpu-a", "-x"):
        missing = _enter(node_home, name, "true")
        assert missing.returncode == 1
        assert missing.stderr == f"no instance {name} on this node\n"


# -- the probe -------------------------------------------------------------------------------


def test_the_probe_finds_a_python_and_the_node_home(tmp_path: Path) -> None:
    done = _sh(probe_script(), env={"BREV_NODE_HOME": str(tmp_path / "home")})
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 1
    facts = parse_probe(done.stdout)
    assert facts.node_home == str(tmp_path / "home")
    assert facts.root is (os.geteuid() == 0)
    assert facts.systemd is (facts.root and Path("/run/systemd/system").is_dir())
    assert facts.arch == os.uname().machine and facts.hostname == os.uname().nodename
    assert Path(facts.python).is_absolute()
    version = subprocess.run(
        [facts.python, "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert version == facts.python_version
    assert tuple(int(p) for p in version.split(".")[:2]) >= (3, 11)
    default = parse_probe(_sh(probe_script(), env={"HOME": str(tmp_path)}).stdout)
    assert default.node_home == str(tmp_path / ".brev-node")


def test_the_probe_without_a_recent_python(tmp_path: Path) -> None:
    old = tmp_path / "bin" / "python3"
    old.parent.mkdir()
    old.write_text("#!/bin/sh\necho 3.9.2\nexit 1\n")  # what an old Python answers the probe
    old.chmod(0o755)
    done = _sh(probe_script(), env={"PATH": str(old.parent)})
    assert done.returncode == NO_PYTHON_EXIT and done.stdout == ""
    assert done.stderr == (
        "no Python 3.11 or newer on PATH (found: python3 3.9.2); "
        "install python3.11 (apt-get install python3) and retry\n"
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = _sh(probe_script(), env={"PATH": str(empty)})
    assert nothing.returncode == NO_PYTHON_EXIT and "(found: none)" in nothing.stderr


def test_probe_output_that_is_not_the_probes() -> None:
    facts = parse_probe(
        "Welcome!\n"
        '{"os": "Ubuntu 24.04 LTS", "arch": "aarch64", "python": "/usr/bin/python3.12", '
        '"python_version": "3.12.3", "systemd": true, "root": false, '
        '"node_home": "/home/u/.brev-node", "hostname": "spark"}\n'
    )
    assert facts == NodeFacts(
        os="Ubuntu 24.04 LTS",
        arch="aarch64",
        python="/usr/bin/python3.12",
        python_version="3.12.3",
        systemd=True,
        root=False,
        node_home="/home/u/.brev-node",
        hostname="spark",
    )
    for junk in ("", "bash: python3: command not found", '{"os": "x"}'):
        with pytest.raises(ProbeError, match="answered the probe"):
            parse_probe(junk)


# -- install, supervise, re-install, uninstall -----------------------------------------------


def _upload(home: Path) -> str:
    """What the plane uploads before the install: the wheel and the token (0600)."""
    name, data = build_wheel()
    (home / name).write_bytes(data)
    token = home / "agent.token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o600)
    return name


def _install(home: Path, wheel: str, python: str, port: int) -> str:
    return install_script(
        node_home=str(home),
        python=python,
        plane_url=f"http://127.0.0.1:{port}",
        interval_s=1,
        wheel_name=wheel,
        use_systemd=False,
    )


def test_install_refuses_what_it_cannot_use(node_home: Path) -> None:
    with pytest.raises(ValueError, match="absolute"):
        install_script(
            node_home="relative",
            python="/usr/bin/python3",
            plane_url="http://x",
            interval_s=10,
            wheel_name="w.whl",
            use_systemd=False,
        )
    script = _install(node_home, "brev-0.1.0-py3-none-any.whl", sys.executable, 9)
    done = _sh(script)
    assert done.returncode == 1
    assert done.stderr == (
        f"brev node install: no {node_home}/brev-0.1.0-py3-none-any.whl: upload the wheel first\n"
    )
    # uninstalling removes the home whole: a directory with other things in it is not taken
    wheel = _upload(node_home)
    (node_home / "thesis.tex").write_text("years of work")
    refused = _sh(_install(node_home, wheel, sys.executable, 9))
    assert refused.returncode == 1 and len(refused.stderr.splitlines()) == 1
    assert "refusing to install into" in refused.stderr and "thesis.tex" in refused.stderr
    assert not (node_home / ".brev-node").exists()


def test_uninstall_removes_only_a_home_with_the_marker(node_home: Path) -> None:
    (node_home / "data").write_text("keep")
    nothing = _sh(uninstall_script(str(node_home)))
    assert nothing.returncode == 0 and (node_home / "data").is_file()
    _install_programs(node_home)  # an uninstaller, but no marker: someone else's directory
    refused = _sh(uninstall_script(str(node_home)))
    assert refused.returncode == 1 and "no .brev-node marker" in refused.stderr
    assert (node_home / "data").is_file()
    # an install that stopped before writing its programs: the marker alone
    half = node_home / "half"
    half.mkdir()
    (half / ".brev-node").touch()
    assert _sh(uninstall_script(str(half))).returncode == 0 and not half.exists()


@pytest.mark.slow
@pytest.mark.skipif(not STUB.is_dir(), reason="no ../shared/fixtures beside the repo")
def test_install_supervise_reinstall_and_uninstall(node_home: Path) -> None:
    facts = parse_probe(_sh(probe_script(), env={"BREV_NODE_HOME": str(node_home)}).stdout)
    wheel = _upload(node_home)
    script = _install(node_home, wheel, facts.python, free_port())  # no plane: that's fine
    env = {"PATH": f"{STUB}{os.pathsep}{os.environ['PATH']}"}
    started = time.monotonic()
    done = _sh(script, env=env, timeout=30)  # returns once stdout/stderr close: nothing holds them
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 10
    assert done.stdout.startswith("agent started: supervisor pid ")
    assert (node_home / ".brev-node").is_file()
    assert stat.S_IMODE((node_home / "agent.token").stat().st_mode) == 0o600
    supervisor = int((node_home / "agent.pid").read_text())
    agent = _wait_for(lambda: _agent_pids(node_home), "the agent")[0]
    assert os.getpgid(agent) == supervisor  # the supervisor's group: stopped as one
    command = _processes_under(node_home)[agent]
    assert f"--token-file {node_home}/agent.token" in command
    assert all(TOKEN not in line for line in _processes_under(node_home).values())

    os.kill(agent, signal.SIGKILL)  # the supervisor starts another within ~5 s
    restarted = _wait_for(
        lambda: [p for p in _agent_pids(node_home) if p != agent], "a restart", seconds=9
    )
    assert len(restarted) == 1
    log = _wait_for(
        _read_when(node_home / "agent.log", lambda text: text.count("plane unreachable") >= 2),
        "the restarted agent's log",
    )
    assert "restarting it in 5 s" in log and TOKEN not in log

    again = _sh(script, env=env, timeout=30)  # over the running install: replaces it
    assert again.returncode == 0, again.stderr
    assert int((node_home / "agent.pid").read_text()) != supervisor
    assert supervisor not in _processes_under(node_home)
    assert restarted[0] not in _processes_under(node_home)
    _wait_for(lambda: _agent_pids(node_home), "the re-installed agent")
    assert [p.name for p in node_home.glob("*.whl")] == [wheel]

    gone = _sh(uninstall_script(str(node_home)), timeout=30)
    assert gone.returncode == 0, gone.stderr
    assert not node_home.exists()
    assert _processes_under(node_home) == {}


@pytest.mark.slow
def test_install_and_uninstall_under_systemd(node_home: Path, tmp_path: Path) -> None:
    """systemd itself does not run here: a stand-in systemctl notes what it was asked."""
    fake = tmp_path / "fakebin" / "systemctl"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\necho "$*" >> "$SYSTEMCTL_CALLS"\n')
    fake.chmod(0o755)
    calls, unit = tmp_path / "calls", tmp_path / "brev-agent.service"
    env = {"PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}", "SYSTEMCTL_CALLS": str(calls)}
    script = install_script(
        node_home=str(node_home),
        python=sys.executable,
        plane_url="https://plane.example",
        interval_s=10,
        wheel_name=_upload(node_home),
        use_systemd=True,
        unit_path=str(unit),
    )
    done = _sh(script, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "agent started: systemd unit brev-agent\n"
    assert calls.read_text().splitlines() == ["daemon-reload", "enable --now brev-agent"]
    text = unit.read_text()
    assert f'ExecStart="{node_home}/bin/brev-agent-run"\n' in text  # quoted: a blank in it
    assert "Restart=always\n" in text and "RestartSec=5\n" in text
    assert not (node_home / "agent.pid").exists() and _agent_pids(node_home) == []
    calls.unlink()
    assert _sh(script, env=env).returncode == 0  # a re-install stops the running unit first
    assert calls.read_text().splitlines() == [
        "stop brev-agent",
        "daemon-reload",
        "enable --now brev-agent",
    ]
    calls.unlink()
    gone = _sh(uninstall_script(str(node_home)), env=env)
    assert gone.returncode == 0, gone.stderr
    assert not unit.exists() and not node_home.exists()
    # stopped last: stopping the unit ends every process in it, the uninstaller too
    assert calls.read_text().splitlines() == [
        "disable brev-agent",
        "daemon-reload",
        "stop brev-agent",
    ]


# -- the uplink against a stand-in plane -----------------------------------------------------


@dataclass
class FakePlane:
    """Answers POST /api/v1/agent/reports: `answers` first (status, body), then 200."""

    assignments: list[api.Assignment] | None = None
    answers: list[tuple[int, bytes]] = field(default_factory=list)
    requests: list[tuple[dict[str, str], dict[str, Any]]] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def fake_plane() -> Iterator[FakePlane]:
    plane = FakePlane()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            plane.requests.append((dict(self.headers), body))
            if plane.answers:
                status, answer = plane.answers.pop(0)
            else:
                seqs = [r["seq"] for r in body["reports"]]
                accepted = api.AgentReportsAccepted(  # the plane's own answer type
                    accepted=len(seqs), last_seq=max(seqs), assignments=plane.assignments
                )
                status, answer = 200, accepted.model_dump_json().encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    plane.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield plane
    server.shutdown()
    server.server_close()


def _run_in_thread(
    plane: FakePlane, interval: float, node_home: Path | None
) -> tuple[threading.Event, threading.Thread, list[object]]:
    stop = threading.Event()
    outcome: list[object] = []

    def agent() -> None:
        try:
            outcome.append(
                uplink.run(
                    plane.url,
                    TOKEN,
                    interval,
                    should_stop=stop.is_set,
                    collect_report=lambda: {"source": "none", "gpus": []},
                    node_home=node_home,
                )
            )
        except Exception as error:
            outcome.append(error)

    thread = threading.Thread(target=agent, daemon=True)
    thread.start()
    return stop, thread, outcome


def test_a_node_applies_its_assignments_and_reports_them_at_once(
    fake_plane: FakePlane, node_home: Path
) -> None:
    # a GPU whose UUID the plane never learnt comes as ""
    fake_plane.assignments = [api.Assignment(instance="gpu-a", gpu_indices=[0], gpu_uuids=[""])]
    stop, thread, _ = _run_in_thread(fake_plane, 60, node_home)  # no second sample for a minute
    try:
        _wait_for(lambda: len(fake_plane.requests) >= 2, "the report after the assignment", 5)
    finally:
        stop.set()
        thread.join(timeout=3)
    assert not thread.is_alive()  # a stop request ends the minute's sleep
    first, second = (body["reports"][0]["report"] for _, body in fake_plane.requests[:2])
    assert first["instances"] == [] and second["instances"] == ["gpu-a"]
    assert len(fake_plane.requests) == 2  # the answer to the second changed nothing
    headers = fake_plane.requests[0][0]
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert _env(node_home, "gpu-a")["CUDA_VISIBLE_DEVICES"] == "0"


def test_a_removed_node_uninstalls_itself(fake_plane: FakePlane, node_home: Path) -> None:
    removed = api.ErrorBody(
        error=api.ErrorDetail(code="node_removed", message="this node was removed")
    )
    fake_plane.answers = [(410, removed.model_dump_json().encode())]
    flag = node_home / "uninstalled"
    program = node_home / "bin" / "brev-node-uninstall"
    program.parent.mkdir()
    program.write_text(f"#!/bin/sh\nps -o sid= -p $$ > '{flag}'\n")
    program.chmod(0o755)
    _, thread, outcome = _run_in_thread(fake_plane, 1, node_home)
    thread.join(timeout=5)
    assert isinstance(outcome[0], uplink.Uplink)
    session = int(_wait_for(_read_when(flag, lambda text: text.endswith("\n")), "the uninstall"))
    assert session != os.getsid(0)  # a session of its own: it outlives the agent


def test_a_refused_token_and_an_unwell_plane(fake_plane: FakePlane) -> None:
    fake_plane.answers = [(503, b"busy"), (500, b'{"error": {"code": "internal_error"}}')]
    stop, thread, outcome = _run_in_thread(fake_plane, 0.1, None)
    try:
        _wait_for(lambda: len(fake_plane.requests) >= 3, "retries", 5)
    finally:
        stop.set()
        thread.join(timeout=3)
    agent = outcome[0]
    assert isinstance(agent, uplink.Uplink) and agent.delivered >= 1
    sent = [[r["seq"] for r in body["reports"]] for _, body in fake_plane.requests]
    assert sent[1][0] == sent[0][0] and sent[2][0] == sent[0][0]  # kept and sent again, in order
    assert "instances" not in fake_plane.requests[0][1]["reports"][0]["report"]  # not a node
    fake_plane.answers = [(401, b'{"error": {"code": "unauthenticated", "message": "revoked"}}')]
    _, thread, outcome = _run_in_thread(fake_plane, 0.1, None)
    thread.join(timeout=5)
    assert isinstance(outcome[0], PermissionError) and "revoked" in str(outcome[0])
    with pytest.raises(ValueError, match="http"):
        uplink.Uplink("file:///etc/passwd", TOKEN)


@pytest.mark.slow
def test_the_agent_process_stops_on_sigterm(fake_plane: FakePlane, tmp_path: Path) -> None:
    token = tmp_path / "agent.token"
    token.write_text(TOKEN)
    agent = subprocess.Popen(
        [*AGENT, "run", "--url", fake_plane.url, "--token-file", str(token), "--interval", "30"],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(lambda: fake_plane.requests, "a report", 15)
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=5) == 0
    finally:
        if agent.poll() is None:
            agent.kill()
    assert agent.stderr is not None
    log = agent.stderr.read()
    assert "stopped; 1 report(s) delivered, 0 undelivered" in log and TOKEN not in log


@pytest.mark.slow
@pytest.mark.skipif(not STUB.is_dir(), reason="no ../shared/fixtures beside the repo")
def test_an_installed_node_hosts_what_the_plane_assigns_until_removed(
    node_home: Path, fake_plane: FakePlane
) -> None:
    fake_plane.assignments = [
        api.Assignment(instance="gpu-a", gpu_indices=[1], gpu_uuids=["GPU-1"])
    ]
    script = install_script(
        node_home=str(node_home),
        python=sys.executable,
        plane_url=fake_plane.url,
        interval_s=1,
        wheel_name=_upload(node_home),
        use_systemd=False,
    )
    done = _sh(script, env={"PATH": f"{STUB}{os.pathsep}{os.environ['PATH']}"})
    assert done.returncode == 0, done.stderr
    _wait_for(
        lambda: any(
            body["reports"][-1]["report"].get("instances") == ["gpu-a"]
            for _, body in fake_plane.requests
        ),
        "a report with the assigned instance",
    )
    assert [gpu["name"] for gpu in fake_plane.requests[0][1]["reports"][0]["report"]["gpus"]] == [
        "NVIDIA H200",
        "NVIDIA H200",
    ]
    entered = _enter(node_home, "gpu-a", "echo", "$CUDA_VISIBLE_DEVICES")
    assert entered.stdout == "1\n", entered.stderr
    removed = api.ErrorBody(error=api.ErrorDetail(code="node_removed", message="removed"))
    fake_plane.answers = [(410, removed.model_dump_json().encode())]
    _wait_for(lambda: not node_home.exists(), "the node to uninstall itself")
    _wait_for(lambda: _processes_under(node_home) == {}, "its processes to end", seconds=5)
