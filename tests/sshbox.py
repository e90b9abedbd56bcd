"""Real OpenSSH servers as test boxes (see shared/TESTING.md, "OpenSSH server as a test box").

Each box is a private `sshd` on its own port of 127.0.0.1 with its own ed25519 host key,
config, authorized_keys and (optionally) trusted user CA, all under one folder; nothing in /etc
is touched. Every session gets BOX/bin first on its PATH, where the box's "hardware" lives: a
stand-in `nvidia-smi` answering from a real capture (2, 1 or no GPUs), and, for boxes without
a usable Python, `python3` stubs that fail the way such machines do.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

from brev.ssh.remote import SshTarget
from tests.postgres import free_port

SSHD = Path("/usr/sbin/sshd")
NVSMI = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "nvidia-smi"
# Every name a script might try for Python 3; on a box without a usable one all are stubs.
PYTHON_NAMES = ("python", "python3", *(f"python3.{minor}" for minor in range(6, 16)))
START_TIMEOUT_S = 10.0


class BoxStartFailed(RuntimeError):
    pass


@dataclass
class SshBox:
    root: Path
    port: int
    user: str
    host_key: str  # `ssh-ed25519 AAAA...`, no comment
    bin_dir: Path  # first on the PATH of every session
    node_home: Path  # BREV_NODE_HOME of every session
    authorized_keys: Path
    trusts_ca: bool = False
    principals_file: bool = False
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def config(self) -> Path:
        return self.root / "sshd_config"

    @property
    def log(self) -> Path:
        return self.root / "sshd.log"

    @property
    def known_hosts(self) -> Path:
        """An OpenSSH known_hosts file that pins the box's current host key."""
        return self.root / "known_hosts"

    @property
    def home(self) -> Path:
        """HOME of every session (see _write_config for why it is not the user's own)."""
        return self.root / "home"

    def target(self) -> SshTarget:
        return SshTarget(host="127.0.0.1", port=self.port, user=self.user)

    def start(self) -> None:
        """Start sshd (same port, same host key as before) and wait until it greets."""
        if self.process is not None and self.process.poll() is None:
            return
        self._write_config()
        with (self.root / "sshd.out").open("ab") as output:
            # -D: stays our child, so we see it die and stop it without a PID file race.
            self.process = subprocess.Popen(
                [str(SSHD), "-D", "-f", str(self.config), "-E", str(self.log)],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BoxStartFailed(f"sshd exited {self.process.returncode}:\n{self._log_tail()}")
            if _greets(self.port):
                return
            time.sleep(0.02)
        self.stop()
        raise BoxStartFailed(f"sshd did not greet in {START_TIMEOUT_S} s:\n{self._log_tail()}")

    def stop(self) -> None:
        """Stop the listening sshd; sessions already open live on, as on a real box."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def regenerate_host_key(self) -> None:
        """A reinstalled box: a new host key, sshd restarted on the same port."""
        self.stop()
        self.host_key = _new_host_key(self.root)
        self._write_known_hosts()
        self.start()

    def set_gpu_state(self, state: Literal["idle", "busy"]) -> None:
        """Switch the stand-in nvidia-smi between the idle and busy captures."""
        (self.root / "gpu-state").write_text(state + "\n")

    def set_gpu_count(self, gpus: int) -> None:
        """A card added or lost (a driver reinstall): nvidia-smi answers for `gpus` from now."""
        (self.bin_dir / "nvidia-smi").unlink(missing_ok=True)
        _install_nvidia_smi(self, gpus)

    def ssh_argv(self, identity: Path, *command: str, options: Sequence[str] = ()) -> list[str]:
        """A real OpenSSH client command line for this box, with its host key pinned and
        nothing read from ~/.ssh. `options` go before the destination (`-o Name=value`)."""
        return [
            "ssh",
            "-F",
            "/dev/null",
            "-p",
            str(self.port),
            "-i",
            str(identity),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=10",
            "-o",
            "LogLevel=ERROR",
            *options,
            f"{self.user}@127.0.0.1",
            *command,
        ]

    def _write_known_hosts(self) -> None:
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {self.host_key}\n")

    def _write_config(self) -> None:
        root = self.root
        # HOME is the box's own: Debian's bash sources ~/.bashrc even for `ssh box cmd`, and
        # the developer's /root/.bashrc (pyenv, cargo) would put its own python3 in front of
        # BOX/bin. It also keeps what sessions write to ~ inside the box.
        environment = {
            "PATH": f"{self.bin_dir}:/usr/local/bin:/usr/bin:/bin",
            "BREV_NODE_HOME": str(self.node_home),
            # Where a root install writes sshd's CA trust: the box's own sshd_config is fixed.
            "BREV_SSHD_CONFIG_DIR": str(self.root / "etc-ssh"),
            "HOME": str(self.home),
        }
        lines = [
            f"Port {self.port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {root / 'hostkey'}",
            f"PidFile {root / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.authorized_keys}",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "LogLevel VERBOSE",  # says in sshd.log why a key or certificate was refused
            "Subsystem sftp internal-sftp",
            "SetEnv " + " ".join(f'"{name}={value}"' for name, value in environment.items()),
        ]
        if self.trusts_ca:
            lines.append(f"TrustedUserCAKeys {root / 'ca.pub'}")
        if self.principals_file:
            # As `brev register` sets up a node: certificate principals come from the file the
            # node's agent writes (each instance's with its forced `brev-enter NAME`).
            lines.append(f"AuthorizedPrincipalsFile {self.node_home / 'authorized_principals'}")
        self.config.write_text("\n".join(lines) + "\n")
        self._write_known_hosts()

    def _log_tail(self) -> str:
        text = ""
        for path in (self.log, self.root / "sshd.out"):
            if path.exists():
                text += path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-20:])


def _greets(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            return sock.recv(8).startswith(b"SSH-")
    except OSError:
        return False


def _require_openssh() -> None:
    missing = [p for p in (str(SSHD), "ssh", "ssh-keygen") if shutil.which(p) is None]
    if missing:
        message = (
            f"OpenSSH not found ({', '.join(missing)}); "
            "scripts/install-system-packages.sh installs openssh-server as root"
        )
        if os.environ.get("BREV_REQUIRE_SYSTEM_PACKAGES") == "1":
            pytest.fail(message)
        pytest.skip(message)


def _new_host_key(root: Path) -> str:
    key = root / "hostkey"
    for path in (key, key.with_name("hostkey.pub")):
        path.unlink(missing_ok=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(key)], check=True
    )
    kind, blob = key.with_name("hostkey.pub").read_text().split()[:2]
    return f"{kind} {blob}"


def make_user_key(directory: Path, name: str = "id_ed25519") -> tuple[Path, str]:
    """A new passphrase-less ed25519 key: (private key path, public key line)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(path)], check=True
    )
    return path, path.with_name(name + ".pub").read_text().strip()


def _write_script(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o755)


def _install_nvidia_smi(box: SshBox, gpus: int) -> None:
    if gpus == 0:
        return  # a host without a driver has no nvidia-smi at all
    if not NVSMI.is_dir():
        pytest.skip("no ../shared/fixtures beside the repo")
    if gpus == 2:
        capture = NVSMI / "h200-x2"
    elif gpus == 1:
        capture = box.root / "capture"
        if not capture.exists():
            _one_gpu_capture(NVSMI / "h200-x2", capture)
    else:
        raise ValueError(f"captures exist for 0, 1 or 2 GPUs, not {gpus}")
    # An absolute Python: the box's own python3 may be a stub, the GPUs still answer.
    _write_script(
        box.bin_dir / "nvidia-smi",
        "#!/bin/sh\n"
        f"export NVSMI_CAPTURE={shlex.quote(str(capture))}\n"
        f"export NVSMI_STATE_FILE={shlex.quote(str(box.root / 'gpu-state'))}\n"
        f"exec {shlex.quote(sys.executable)} {shlex.quote(str(NVSMI / 'bin' / 'nvidia-smi'))}"
        ' "$@"\n',
    )


def _one_gpu_capture(source: Path, capture: Path) -> None:
    """The h200-x2 capture cut down to its first GPU, in every file the stand-in reads."""
    capture.mkdir()
    for name in ("smi_q.xml", "smi_q_busy.xml"):
        text = (source / name).read_text()
        first_end = text.index("</gpu>") + len("</gpu>")
        last_end = text.rindex("</gpu>") + len("</gpu>")
        text = text[:first_end] + text[last_end:]
        text = text.replace("<attached_gpus>2</attached_gpus>", "<attached_gpus>1</attached_gpus>")
        (capture / name).write_text(text)
    # nvidia-smi -q: the header and the first "GPU 0000..." section
    lines = (source / "smi_q.txt").read_text().splitlines(keepends=True)
    sections = [i for i, line in enumerate(lines) if line.startswith("GPU ")]
    text = "".join(lines[: sections[1]])
    (capture / "smi_q.txt").write_text(re.sub(r"(Attached GPUs\s+: )2", r"\g<1>1", text))
    # the plain table: GPU 1's four lines and its process rows go
    for name in ("smi_default.txt", "smi_default_busy.txt"):
        lines = (source / name).read_text().splitlines(keepends=True)
        start = next(i for i, line in enumerate(lines) if line.startswith("|   1  "))
        kept = lines[:start] + lines[start + 4 :]
        kept = [line for line in kept if not re.match(r"\|\s+1\s+N/A\s+N/A", line)]
        (capture / name).write_text("".join(kept))
    # topo -m: the GPU1 column and row; dmon: GPU 1's samples
    rows = (source / "smi_topo.txt").read_text().splitlines(keepends=True)
    topo = []
    for row in rows:
        if row.startswith("GPU1"):
            continue
        cells = row.split("\t")
        topo.append("\t".join(cells[:2] + cells[3:]) if len(cells) > 3 else row)
    (capture / "smi_topo.txt").write_text("".join(topo))
    dmon = (source / "smi_dmon.txt").read_text().splitlines(keepends=True)
    kept = [line for line in dmon if line.startswith("#") or line.split()[:1] != ["1"]]
    (capture / "smi_dmon.txt").write_text("".join(kept))


def _install_python(box: SshBox, python: Literal["ok", "missing", "old"]) -> None:
    if python == "ok":
        return
    if python == "missing":
        # What a shell says for a command it cannot find (the box's /usr/bin/python3 is
        # shadowed: `command -v python3` still finds this stub).
        script = '#!/bin/sh\necho "sh: ${0##*/}: not found" >&2\nexit 127\n'
    else:
        # An Ubuntu 18.04 python3: it answers --version, and chokes on modern code.
        script = (
            "#!/bin/sh\n"
            'case "$1" in --version|-V) echo "Python 3.6.9"; exit 0;; esac\n'
            "cat >&2 <<'EOF'\n"
            '  File "<string>", line 1\n'
            "    from __future__ import annotations\n"
            "SyntaxError: future feature annotations is not defined\n"
            "EOF\n"
            "exit 1\n"
        )
    for name in PYTHON_NAMES:
        _write_script(box.bin_dir / name, script)


def make_box(
    root: Path,
    *,
    gpus: int = 2,
    trusted_ca: str | None = None,
    authorized_keys: Sequence[str] = (),
    python: Literal["ok", "missing", "old"] = "ok",
    principals_file: bool = False,
) -> SshBox:
    """A started box under `root` (created). `trusted_ca`: the public key line of a user CA
    the box trusts; `authorized_keys`: public key lines that may log in as the box's user;
    `principals_file`: certificates must carry a principal the node's agent listed."""
    _require_openssh()
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
    root.mkdir(parents=True)
    box = SshBox(
        root=root,
        port=0,
        user=pwd.getpwuid(os.getuid()).pw_name,
        host_key=_new_host_key(root),
        bin_dir=root / "bin",
        node_home=root / "node",
        authorized_keys=root / "home" / ".ssh" / "authorized_keys",
        trusts_ca=trusted_ca is not None,
        principals_file=principals_file,
    )
    box.bin_dir.mkdir()
    box.node_home.mkdir()
    box.authorized_keys.parent.mkdir(parents=True)
    box.authorized_keys.write_text("".join(line.strip() + "\n" for line in authorized_keys))
    if trusted_ca is not None:
        (root / "ca.pub").write_text(trusted_ca.strip() + "\n")
    _install_nvidia_smi(box, gpus)
    _install_python(box, python)
    # free_port() only finds a port that was free a moment ago: try another if it was taken.
    for attempt in range(3):
        box.port = free_port()
        try:
            box.start()
            return box
        except BoxStartFailed as error:
            if "Address already in use" not in str(error) or attempt == 2:
                raise
    raise AssertionError("unreachable")


@pytest.fixture
def ssh_box_factory(tmp_path: Path) -> Iterator[Callable[..., SshBox]]:
    """`make(name="box", **make_box options)`: boxes under tmp_path, stopped at teardown."""
    boxes: list[SshBox] = []

    def make(name: str = "box", **options: Any) -> SshBox:
        box = make_box(tmp_path / f"{name}-{len(boxes)}", **options)
        boxes.append(box)
        return box

    yield make
    for box in boxes:
        box.stop()


def agent_pids(node_home: Path) -> list[int]:
    """Processes of the agent installed in `node_home` (their command lines name it)."""
    found = subprocess.run(["pgrep", "-f", str(node_home)], capture_output=True, text=True)
    return [int(pid) for pid in found.stdout.split()]


def kill_agents(node_home: Path) -> None:
    """Stop what an install into `node_home` left running (the supervisor and its agent)."""
    for pid in agent_pids(node_home):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(os.getpgid(pid), signal.SIGKILL)
