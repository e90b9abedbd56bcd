"""brev run's push and pull against a real sshd box over a real shared OpenSSH connection, with
the real rsync and tar: both methods send the same files, remote paths survive any shell,
relative paths mean the forced `brev-enter`'s instance folder, and failures are typed."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from brev.cli.run.ignore import entries_to_send
from brev.cli.run.ssh_session import SshSession
from brev.cli.run.sync import SyncFailed, SyncTimedOut, pull, push
from brev.node import workdirs
from brev.node.scripts import node_files
from tests.sshbox import SshBox, make_box, make_user_key

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
# How each key logs in (authorized_keys forced commands; sshd would otherwise start in the
# real user's home, outside the box). {home}, {farm}: the box's HOME, a PATH without rsync.
SH = 'exec /bin/sh -c "$SSH_ORIGINAL_COMMAND"\n'
LOGINS = {
    "home": "cd {home} || exit 1\n" + SH,
    "norsync": "cd {home} || exit 1\nPATH={farm}; export PATH\n" + SH,
    # answers short commands, never the transfers: for the deadlines
    "stall": 'case $SSH_ORIGINAL_COMMAND in *"rsync --server"*|*"tar -"*) exec sleep 20 ;; esac\n'
    "cd {home} || exit 1\n" + SH,
}
INSTANCE = "gpu-a"
Opener = Callable[[str], SshSession]


@dataclass
class Machine:
    box: SshBox
    config: Path
    farm: Path  # /usr/bin without rsync

    @property
    def home(self) -> Path:
        return self.box.home

    @property
    def instance(self) -> Path:
        return self.box.node_home / "instances" / INSTANCE


def _without_rsync(farm: Path) -> None:
    farm.mkdir()
    for program in Path("/usr/bin").iterdir():
        if not program.name.startswith("rsync"):
            (farm / program.name).symlink_to(program)


@pytest.fixture(scope="module")
def machine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Machine]:
    base = tmp_path_factory.mktemp("sync")
    box = make_box(base / "box", gpus=0)
    farm = base / "farm"
    _without_rsync(farm)
    # a registered node's own forced command, for the alias `enter`
    (box.node_home / "bin").mkdir()
    files = node_files(node_home=str(box.node_home), plane_url="http://127.0.0.1:9", interval_s=10)
    (box.node_home / "bin" / "brev-enter").write_text(files["brev-enter"])
    (box.node_home / "bin" / "brev-enter").chmod(0o755)
    workdirs.apply(box.node_home, [{"instance": INSTANCE, "gpu_indices": [], "gpu_uuids": []}])
    commands = {"enter": f"{box.node_home}/bin/brev-enter {INSTANCE}"}
    for name, text in LOGINS.items():
        script = base / f"login-{name}"
        script.write_text("#!/bin/sh\n" + text.format(home=box.home, farm=farm))
        script.chmod(0o755)
        commands[name] = str(script)
    lines, hosts = [], []
    for name, command in commands.items():
        key, public = make_user_key(base / "keys", name)
        lines.append(f'command="{command}" {public}')
        hosts.append(_host(name, box, key))
    box.authorized_keys.write_text("\n".join(lines) + "\n")
    # an alias whose port nobody listens on
    hosts.append(_host("gone", box, key).replace(f"Port {box.port}", "Port 9"))
    config = base / "ssh_config"
    config.write_text("".join(hosts))
    yield Machine(box, config, farm)
    box.stop()


def _host(alias: str, box: SshBox, key: Path) -> str:
    return (
        f"Host {alias}\n  HostName 127.0.0.1\n  Port {box.port}\n  User {box.user}\n"
        f"  IdentityFile {key}\n  IdentitiesOnly yes\n  UserKnownHostsFile {box.known_hosts}\n"
        "  GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n"
        "  ConnectTimeout 10\n  LogLevel ERROR\n"
    )


@pytest.fixture
def session(machine: Machine) -> Iterator[Opener]:
    opened: list[SshSession] = []

    def open_session(alias: str) -> SshSession:
        opened.append(SshSession(config=machine.config, alias=alias))
        return opened[-1]

    yield open_session
    for each in opened:
        each.close()


NAMES = [
    "plain.txt",
    "with space.txt",
    'it\'s "quoted" $HOME `x`.txt',
    "-rf",
    "héllo 日本.txt",
    "new\nline.txt",
    "star*?[x].txt",
    "nested/a/b/c/deep.txt",
    "nested/a/sibling.txt",
    ".hidden/config",
    "debug.log",
    "node_modules/pkg/index.js",
    "build/out.o",
    "build/keep.txt",
]


def _tree(root: Path) -> Path:
    for name in NAMES:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(name.encode() * 3)
    (root / os.fsdecode(b"bytes\xff.bin")).write_bytes(b"\xff")
    (root / ".gitignore").write_text("*.log\nnode_modules/\nbuild/*\n!build/keep.txt\n")
    (root / ".brevignore").write_text("secret.env\n")
    (root / "secret.env").write_text("TOKEN=no\n")
    (root / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (root / "run.sh").chmod(0o755)
    (root / "private.key").write_text("k")
    (root / "private.key").chmod(0o600)
    (root / "locked-dir").mkdir(mode=0o750)
    (root / "locked-dir").chmod(0o750)
    (root / "empty" / "inner").mkdir(parents=True)
    (root / "link-file").symlink_to("plain.txt")
    (root / "link-dir").symlink_to("nested/a")
    (root / "link-dangling").symlink_to("nowhere/at all")
    (root / "link-absolute").symlink_to("/etc/hostname")
    return root


def _snapshot(root: Path) -> dict[str, tuple[str, int, str]]:
    """Every path below root: (kind, permission bits, content hash or link target)."""
    found = {}
    for entry in _scan(root, ""):
        path = root / entry
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            found[entry] = ("link", 0, str(path.readlink()))
        elif stat.S_ISDIR(info.st_mode):
            found[entry] = ("dir", stat.S_IMODE(info.st_mode), "")
        else:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            found[entry] = ("file", stat.S_IMODE(info.st_mode), digest)
    return found


def _scan(root: Path, rel: str) -> Iterator[str]:
    with os.scandir(root / rel if rel else root) as scan:
        for entry in scan:
            path = rel + entry.name
            yield path
            if entry.is_dir(follow_symlinks=False):
                yield from _scan(root, path + "/")


def _expected(local: Path) -> dict[str, tuple[str, int, str]]:
    wanted = {e.path for e in entries_to_send(local)}
    return {path: facts for path, facts in _snapshot(local).items() if path in wanted}


def _mtimes_agree(local: Path, remote: Path) -> None:
    for entry in entries_to_send(local):
        if entry.kind == "file":
            a, b = (local / entry.path).stat().st_mtime, (remote / entry.path).stat().st_mtime
            assert abs(a - b) < 1.0, entry.path


def test_rsync_and_tar_send_the_same_files(
    machine: Machine, session: Opener, tmp_path: Path
) -> None:
    local = _tree(tmp_path / "work")
    expected = _expected(local)
    assert "debug.log" not in expected and "secret.env" not in expected
    assert "build/keep.txt" in expected and "empty/inner" in expected
    ssh = session("home")
    by_rsync = push(ssh, local, "brev-run 'r' $x")
    by_tar = push(ssh, local, f"{machine.home}/brev-run tar", prefer_rsync=False)
    assert by_rsync.method == "rsync" and by_tar.method == "tar"
    files = [e for e in entries_to_send(local) if e.kind != "dir"]
    for transfer in (by_rsync, by_tar):
        assert transfer.files == len(files)
        assert transfer.bytes == sum(
            (local / e.path).lstat().st_size for e in files if e.kind == "file"
        )
        assert transfer.seconds > 0
    for remote in (machine.home / "brev-run 'r' $x", machine.home / "brev-run tar"):
        assert _snapshot(remote) == expected
        _mtimes_agree(local, remote)


@pytest.mark.parametrize("prefer_rsync", [True, False], ids=["rsync", "tar"])
def test_a_second_push_updates_the_same_folder(
    machine: Machine, session: Opener, tmp_path: Path, prefer_rsync: bool
) -> None:
    local = _tree(tmp_path / "work")
    ssh = session("home")
    remote_dir = f"again-{prefer_rsync}"
    push(ssh, local, remote_dir, prefer_rsync=prefer_rsync)
    (local / "plain.txt").write_text("changed, and longer than before\n")
    (local / "nested" / "new.txt").write_text("new")
    (local / "with space.txt").unlink()
    (local / "link-file").unlink()
    (local / "link-file").symlink_to("run.sh")
    second = push(ssh, local, remote_dir, prefer_rsync=prefer_rsync)
    remote = machine.home / remote_dir
    assert (remote / "plain.txt").read_text() == "changed, and longer than before\n"
    assert (remote / "nested" / "new.txt").read_text() == "new"
    assert str((remote / "link-file").readlink()) == "run.sh"
    # nothing is deleted there: a run pushes once, into a folder of its own
    assert (remote / "with space.txt").exists()
    assert second.files == len([e for e in entries_to_send(local) if e.kind != "dir"])


def test_through_brev_enter_relative_paths_are_the_instance_folder(
    machine: Machine, session: Opener, tmp_path: Path
) -> None:
    local = _tree(tmp_path / "work")
    ssh = session("enter")
    transfer = push(ssh, local, "brev-run-1a2b3c")
    assert transfer.method == "rsync"  # `rsync --server` arrives as SSH_ORIGINAL_COMMAND
    assert _snapshot(machine.instance / "brev-run-1a2b3c") == _expected(local)
    (machine.instance / "brev-run-1a2b3c" / "out").mkdir()
    (machine.instance / "brev-run-1a2b3c" / "out" / "model.bin").write_bytes(b"weights")
    for prefer_rsync in (True, False):
        dest = tmp_path / f"back-{prefer_rsync}" / "deeper" / "out"
        assert pull(ssh, "brev-run-1a2b3c", "out", dest, prefer_rsync=prefer_rsync)
        assert (dest / "model.bin").read_bytes() == b"weights"


def test_a_machine_without_rsync_gets_a_tar_stream(
    machine: Machine, session: Opener, tmp_path: Path
) -> None:
    local = _tree(tmp_path / "work")
    ssh = session("norsync")
    assert ssh.run("command -v rsync").returncode != 0
    transfer = push(ssh, local, "no-rsync")
    assert transfer.method == "tar"
    assert _snapshot(machine.home / "no-rsync") == _expected(local)
    dest = tmp_path / "back"
    assert pull(ssh, "no-rsync", "nested", dest)
    assert _snapshot(dest) == _snapshot(local / "nested")


def test_no_local_rsync_means_tar(
    machine: Machine, session: Opener, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = _tree(tmp_path / "work")
    monkeypatch.setenv("PATH", str(machine.farm))  # ssh is there, rsync is not
    ssh = session("home")
    assert push(ssh, local, "no-local-rsync").method == "tar"
    assert _snapshot(machine.home / "no-local-rsync") == _expected(local)
    assert pull(ssh, "no-local-rsync", "run.sh", tmp_path / "run.sh")
    assert (tmp_path / "run.sh").stat().st_mode & 0o777 == 0o755


@pytest.mark.parametrize("prefer_rsync", [True, False], ids=["rsync", "tar"])
def test_pull_files_folders_and_missing_paths(
    machine: Machine, session: Opener, tmp_path: Path, prefer_rsync: bool
) -> None:
    remote = machine.home / f"outputs-{prefer_rsync}"
    _tree(remote)
    ssh = session("home")
    name = remote.name

    def back(path: str, dest: Path) -> bool:
        return pull(ssh, name, path, dest, prefer_rsync=prefer_rsync, timeout=30)

    # a file, to a new nested path, named as asked
    assert back("with space.txt", tmp_path / "a" / "b" / "renamed.txt")
    assert (tmp_path / "a" / "b" / "renamed.txt").read_bytes() == (
        remote / "with space.txt"
    ).read_bytes()
    # a file into an existing folder goes inside it, as cp does
    (tmp_path / "into").mkdir()
    assert back('it\'s "quoted" $HOME `x`.txt', tmp_path / "into")
    assert (tmp_path / "into" / 'it\'s "quoted" $HOME `x`.txt').exists()
    # a folder: its whole contents, links as links, modes kept, merged into what is there
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "mine.txt").write_text("stays")
    assert back("", tmp_path / "tree")
    pulled = _snapshot(tmp_path / "tree")
    assert pulled.pop("mine.txt")[0] == "file"
    assert pulled == _snapshot(remote)  # everything: a pull applies no ignore files
    # absolute remote paths are the person's choice; a dangling link comes back as a link
    assert back(str(remote / "nested" / "a" / "sibling.txt"), tmp_path / "abs.txt")
    assert (tmp_path / "abs.txt").read_bytes() == (remote / "nested/a/sibling.txt").read_bytes()
    assert back("link-dangling", tmp_path / "dangling")
    assert str((tmp_path / "dangling").readlink()) == "nowhere/at all"
    # missing: False, nothing made
    assert not back("no such/file", tmp_path / "missing" / "x")
    assert not (tmp_path / "missing").exists()


def test_deadlines(machine: Machine, session: Opener, tmp_path: Path) -> None:
    """The short bound after a cancel holds whether the probe or the transfer hangs, and with
    more to send than the pipes and ssh's window hold."""
    local = _tree(tmp_path / "work")
    (local / "big.bin").write_bytes(os.urandom(1 << 20) * 24)
    ssh = session("stall")
    (machine.home / "stalled").mkdir(exist_ok=True)
    (machine.home / "stalled" / "f").write_text("f")
    for prefer_rsync in (True, False):
        started = time.monotonic()
        with pytest.raises(SyncTimedOut, match="did not finish in time"):
            pull(ssh, "stalled", "f", tmp_path / "f", prefer_rsync=prefer_rsync, timeout=1)
        assert time.monotonic() - started < 3
        started = time.monotonic()
        with pytest.raises(SyncTimedOut, match="did not finish in time"):
            push(ssh, local, "stalled-push", prefer_rsync=prefer_rsync, timeout=1)
        assert time.monotonic() - started < 3
    started = time.monotonic()
    with pytest.raises(SyncTimedOut, match="did not answer"):
        pull(ssh, "x", "y", tmp_path / "y", timeout=0.000001)
    assert time.monotonic() - started < 3


def test_failures_are_typed_and_say_why(machine: Machine, session: Opener, tmp_path: Path) -> None:
    local = _tree(tmp_path / "work")
    ssh = session("home")
    (machine.home / "a-file").write_text("not a folder")
    for prefer_rsync in (True, False):
        with pytest.raises(SyncFailed, match=r"Not a directory|File exists") as failed:
            push(ssh, local, "a-file/sub", prefer_rsync=prefer_rsync)
        assert "\n" not in failed.value.message
    with pytest.raises(SyncFailed, match="cannot reach gone"):
        push(session("gone"), local, "x")
    with pytest.raises(SyncFailed, match="cannot reach gone"):
        pull(session("gone"), "x", "y", tmp_path / "y")
    with pytest.raises(ValueError):
        push(ssh, local, "")
    (machine.home / "pull-source" / "d").mkdir(parents=True, exist_ok=True)
    (tmp_path / "occupied").write_text("a file where a folder would go")
    with pytest.raises(SyncFailed, match="cannot create"):
        pull(ssh, "pull-source", "d", tmp_path / "occupied" / "x")


LARGE = r"""
import resource, sys
from pathlib import Path
from brev.cli.run.ssh_session import SshSession
from brev.cli.run.sync import push
config, alias, local, remote = sys.argv[1:5]
session = SshSession(config=Path(config), alias=alias)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for prefer_rsync in (False, True):
    transfer = push(session, Path(local), f"{remote}-{prefer_rsync}", prefer_rsync=prefer_rsync)
    print(transfer.method, transfer.bytes, round(transfer.seconds, 2))
session.close()
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""


def test_a_large_file_streams(machine: Machine, tmp_path: Path) -> None:
    """200 MiB goes both ways without the CLI process holding it (its peak RSS, in KiB)."""
    local = tmp_path / "work"
    local.mkdir()
    block = os.urandom(1 << 20)
    digest = hashlib.sha256()
    with (local / "big.bin").open("wb") as out:
        for i in range(200):
            chunk = i.to_bytes(8, "big") + block[8:]
            digest.update(chunk)
            out.write(chunk)
    done = subprocess.run(
        [sys.executable, "-c", LARGE, str(machine.config), "home", str(local), "large"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    *transfers, growth = done.stdout.split("\n")[:-1]
    assert [t.split()[:2] for t in transfers] == [
        ["tar", str(200 << 20)],
        ["rsync", str(200 << 20)],
    ]
    assert int(growth) < 32 * 1024, done.stdout  # KiB; tarfile copies 16 KiB at a time
    for method in ("False", "True"):
        copy = machine.home / f"large-{method}" / "big.bin"
        with copy.open("rb") as data:
            assert hashlib.file_digest(data, "sha256").hexdigest() == digest.hexdigest()
        copy.unlink()
