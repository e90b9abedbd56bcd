"""Files to and from the machine of a `brev run`, over its one shared ssh connection.

rsync when both ends have it (it skips what a second push already sent), else a tar stream
through ssh; both send exactly ignore.entries_to_send, so the method never changes what
arrives. Remote commands are plain POSIX sh (a registered node's forced `brev-enter` runs
them with the login shell in the instance's folder, which is what relative paths mean there)
and every remote path in them is shlex-quoted. Nothing is read whole into memory: rsync is a
separate program, and the tar stream is written and read a block at a time."""

from __future__ import annotations

import collections
import contextlib
import os
import posixpath
import shlex
import shutil
import signal
import subprocess
import tarfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from brev.cli.exit_codes import SSH_FAILED
from brev.cli.run.ignore import entries_to_send
from brev.cli.run.ssh_session import SshSession
from brev.errors import BrevError

RSYNC_VANISHED = 24  # a source file went away while rsync ran: the rest arrived
# Our lines in a probe's output start with this: a chatty login script may print its own.
MARK = "brev-sync:"
# rsync: symlinks as links, modes, times; -s (--protect-args) hands paths to the remote rsync
# over the protocol, so no remote shell splits or expands them. No -o/-g: files belong to
# whoever logs in. No -z: it only pays on slow links.
RSYNC_OPTIONS = ("-lpts",)


class SyncFailed(BrevError):
    pass


class SyncTimedOut(SyncFailed):
    pass


@dataclass(frozen=True)
class Transfer:
    method: Literal["rsync", "tar"]
    files: int  # files and symlinks sent (directories not counted)
    bytes: int  # the size of those files, whatever went over the wire
    seconds: float


def push(
    session: SshSession,
    local_dir: Path,
    remote_dir: str,
    *,
    prefer_rsync: bool = True,
    timeout: float | None = None,
) -> Transfer:
    """Send `local_dir`'s files that are not ignored into `remote_dir` (relative to the login
    directory, or absolute), which is created if missing. Raises SyncFailed."""
    if not remote_dir:
        raise ValueError("no remote directory")  # ALIAS:/ would be the machine's root
    start = time.monotonic()
    deadline = None if timeout is None else start + timeout
    entries = entries_to_send(local_dir)
    files = [e for e in entries if e.kind != "dir"]
    where = f"{session.alias}:{remote_dir}"
    quoted = shlex.quote(remote_dir)
    method: Literal["rsync", "tar"] = "tar"
    if prefer_rsync and shutil.which("rsync"):
        # One round trip: the folder, and whether the other end has rsync at all.
        probe = _run(
            session,
            f"mkdir -p -- {quoted} && echo {MARK}made && "
            f"command -v rsync >/dev/null 2>&1 && echo {MARK}rsync",
            deadline,
        )
        facts = _facts(probe.stdout)
        if "made" not in facts:
            raise SyncFailed(f"cannot create {where}: {_tail(probe.stderr)}")
        method = "rsync" if "rsync" in facts else "tar"
    source = str(local_dir.absolute())  # absolute: a colon in it cannot read as host:path
    if method == "rsync":
        argv = ["rsync", *RSYNC_OPTIONS, "--from0", "--files-from=-", "-e", session.rsh()]
        argv += ["--", source + "/", f"{session.alias}:{remote_dir}/"]
        listing = b"".join(os.fsencode(e.path) + b"\0" for e in entries)
        with _Child(argv, deadline, stdin=True) as child:
            with contextlib.suppress(BrokenPipeError):  # it died: its stderr says why
                child.stdin.write(listing)
            child.stdin.close()
            code = child.wait()
        if code not in (0, RSYNC_VANISHED):
            raise child.failure(f"copying {source} to {where} with rsync failed (exit {code})")
    else:
        remote = f"mkdir -p -- {quoted} && tar -xpf - -C {quoted}"
        with _Child(session.argv(remote), deadline, stdin=True) as child:
            try:
                _write_tar(child.stdin, source, [e.path for e in entries])
            except BrokenPipeError:
                pass  # the remote end went away: its exit and stderr say why
            except OSError as error:
                raise SyncFailed(f"cannot read {error.filename}: {error.strerror}") from None
            with contextlib.suppress(BrokenPipeError):
                child.stdin.close()
            code = child.wait()
        if code != 0:
            raise child.failure(f"copying {source} to {where} with tar failed (exit {code})")
    return Transfer(method, len(files), sum(e.size for e in files), time.monotonic() - start)


def pull(
    session: SshSession,
    remote_dir: str,
    remote_path: str,
    local_dest: Path,
    *,
    timeout: float | None = None,
    prefer_rsync: bool = True,
) -> bool:
    """Copy the file or directory `remote_path` (relative to `remote_dir`, or absolute) to
    `local_dest`, making its parents. A directory's contents merge into `local_dest`; a file
    becomes `local_dest`, or goes inside it when that is a directory (as cp does). False when
    the remote path does not exist. Raises SyncFailed, SyncTimedOut past `timeout` seconds."""
    deadline = None if timeout is None else time.monotonic() + timeout
    path = posixpath.join(remote_dir, remote_path) or "."  # never "", whose ALIAS:/ is root
    quoted = shlex.quote(path)
    where = f"{session.alias}:{path}"
    probe = _run(
        session,
        f"test -d {quoted} && echo {MARK}dir; "
        f"test -e {quoted} || test -h {quoted} && echo {MARK}exists; "
        f"command -v rsync >/dev/null 2>&1 && echo {MARK}rsync; true",
        deadline,
    )
    if probe.returncode != 0:
        raise SyncFailed(f"cannot look for {where}: {_tail(probe.stderr)}")
    facts = _facts(probe.stdout)
    if "exists" not in facts:
        return False
    is_dir = "dir" in facts
    dest = local_dest.absolute()
    try:
        (dest if is_dir else dest.parent).mkdir(parents=True, exist_ok=True)
    except OSError as made:
        raise SyncFailed(f"cannot create {made.filename}: {made.strerror}") from None
    if prefer_rsync and "rsync" in facts and shutil.which("rsync"):
        argv = ["rsync", *RSYNC_OPTIONS, "-r", "-e", session.rsh(), "--"]
        argv += [f"{session.alias}:{path}/", f"{dest}/"] if is_dir else [where, str(dest)]
        with _Child(argv, deadline) as child:
            code = child.wait()
        if code not in (0, RSYNC_VANISHED):
            raise child.failure(f"copying {where} with rsync failed (exit {code})")
        return True
    if is_dir:
        remote, into, rename = f"tar -cf - -C {quoted} .", dest, None
    else:
        parent, name = posixpath.split(path)
        remote = f"tar -cf - -C {shlex.quote(parent or '.')} -- {shlex.quote(name)}"
        target = dest / name if dest.is_dir() else dest
        into, rename = target.parent, target.name
    reason = ""
    with _Child(session.argv(remote), deadline, stdout=True) as child:
        try:
            with tarfile.open(fileobj=child.stdout, mode="r|") as tar:
                tar.extractall(into, filter=_local_filter(rename))  # noqa: S202 (filtered)
        except (tarfile.TarError, OSError) as broken:
            reason = f": {broken}"
        code = child.wait()
    # GNU tar's 1 is "a file changed as we read it" (the command may still be writing): the
    # archive is whole, so what arrived is kept.
    if reason or code not in (0, 1):
        raise child.failure(f"copying {where} with tar failed (exit {code}){reason}")
    return True


def _write_tar(out: IO[bytes], source: str, paths: list[str]) -> None:
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for rel in paths:
            try:
                tar.add(Path(source, rel), arcname=rel, recursive=False, filter=_owner)
            except FileNotFoundError:
                continue  # removed since the listing, as rsync's "vanished": nothing written


def _owner(member: tarfile.TarInfo) -> tarfile.TarInfo:
    """Files belong to whoever logs in, as with rsync: root extracting takes the archive's
    owner, so it says root. Whole seconds keep pax headers (1 KiB a file) off plain names."""
    return member.replace(
        uid=0, gid=0, uname="root", gname="root", mtime=int(member.mtime), deep=False
    )


def _local_filter(rename: str | None) -> Callable[[tarfile.TarInfo, str], tarfile.TarInfo]:
    """tarfile's "tar" filter (nothing lands outside the destination, no setuid bits), and
    files owned by us, not by the remote user's id."""

    uid, gid = os.getuid(), os.getgid()

    def check(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
        if rename is not None:
            member = member.replace(name=rename, deep=False)
        member = tarfile.tar_filter(member, dest)
        # no names: root's chown then takes these ids, ours, and changes nothing
        return member.replace(uid=uid, gid=gid, uname="", gname="", deep=False)

    return check


def _run(
    session: SshSession, command: str, deadline: float | None
) -> subprocess.CompletedProcess[bytes]:
    try:
        done = session.run(command, timeout=_remaining(deadline))
    except subprocess.TimeoutExpired:
        raise SyncTimedOut(f"{session.alias} did not answer in time") from None
    if done.returncode == SSH_FAILED:
        raise SyncFailed(f"cannot reach {session.alias}: {_tail(done.stderr)}")
    return done


def _facts(stdout: bytes) -> set[str]:
    lines = stdout.decode(errors="replace").splitlines()
    return {line.removeprefix(MARK) for line in lines if line.startswith(MARK)}


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _tail(stderr: bytes, lines: int = 3, limit: int = 400) -> str:
    kept = [line.strip() for line in stderr.decode(errors="replace").splitlines()]
    return "; ".join([line for line in kept if line][-lines:])[-limit:] or "no message"


class _Child:
    """rsync or ssh in a process group of its own (so its ssh goes with it), its stderr's tail
    kept by a thread (so it never blocks on a full pipe), killed at the deadline."""

    def __init__(
        self, argv: list[str], deadline: float | None, *, stdin: bool = False, stdout: bool = False
    ) -> None:
        self.popen = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self.timed_out = False
        self._lines: collections.deque[bytes] = collections.deque(maxlen=20)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        remaining = _remaining(deadline)
        self._timer = None if remaining is None else threading.Timer(remaining, self._expire)
        if self._timer is not None:
            self._timer.daemon = True  # never what keeps the CLI from exiting
            self._timer.start()

    @property
    def stdin(self) -> IO[bytes]:
        return _pipe(self.popen.stdin)

    @property
    def stdout(self) -> IO[bytes]:
        return _pipe(self.popen.stdout)

    def wait(self) -> int:
        code = self.popen.wait()
        # ssh's shared master holds copies of our pipes (a mux client hands it its fds), and
        # after a kill keeps them until the remote command ends: take the tail there is.
        self._reader.join(timeout=0.2 if self.timed_out else 5)
        return code

    def failure(self, what: str) -> SyncFailed:
        if self.timed_out:
            return SyncTimedOut(f"{what}: it did not finish in time")
        return SyncFailed(f"{what}: {_tail(b''.join(self._lines))}")

    def _read(self) -> None:
        self._lines.extend(_pipe(self.popen.stderr))

    def _expire(self) -> None:
        self.timed_out = True
        self._kill()

    def _kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)

    def __enter__(self) -> _Child:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self.popen.poll() is None:  # an exception (Ctrl-C) on our side: do not leave it
            self._kill()
            self.popen.wait()
        for pipe in (self.popen.stdin, self.popen.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


def _pipe(pipe: IO[bytes] | None) -> IO[bytes]:
    assert pipe is not None
    return pipe
