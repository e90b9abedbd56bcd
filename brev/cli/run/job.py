"""One `brev run`, start to end: rent (or --on), wait, sync, run, copy back, give back.

Whatever happens after the instance exists (the command fails, the connection drops, a
signal arrives, brev itself fails) ends in the teardown, which deletes what this run rented.
What brev cannot do itself, because it was SIGKILLed or lost its network, the plane does: the
instance holds a lease that only this process renews (lease.py)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from brev import api
from brev.cli import exit_codes
from brev.cli.exit_codes import SSH_FAILED
from brev.cli.run.acquire import RunFailure, rent, wait_running
from brev.cli.run.arguments import Out
from brev.cli.run.cancel import CREATING, RUNNING, TEARDOWN, Abort, Cancellation
from brev.cli.run.lease import LeaseKeeper
from brev.cli.run.remote import RemoteCommand, RemoteLayout
from brev.cli.run.report import Reporter
from brev.cli.run.ssh_session import SshSession
from brev.client import BrevClient, ServerUnreachable
from brev.errors import BrevError

# After a cancel: how long the command may take to end, and --out to come back.
CANCEL_GRACE_S = float(os.environ.get("BREV_RUN_CANCEL_GRACE", "10"))
CANCEL_PULL_S = float(os.environ.get("BREV_RUN_CANCEL_PULL", "30"))


@dataclass
class RunOptions:
    create: api.InstanceCreate
    command_line: str
    key_base: str
    timeout_s: int
    lease_s: int
    on: str | None = None
    workdir: Path = field(default_factory=Path.cwd)
    sync: bool = True
    env: dict[str, str] = field(default_factory=dict)
    outs: list[Out] = field(default_factory=list)
    keep: bool = False


class Job:
    def __init__(
        self, options: RunOptions, connect: Callable[[], BrevClient], reporter: Reporter
    ) -> None:
        self.o = options
        # A client of its own for the lease thread and for the teardown: a signal (Abort) may
        # land inside a request of the main client and leave its connection pool mid-change.
        self._new_client = connect
        self.client = connect()
        self.report = reporter
        self.cancel = Cancellation()
        self.rented: str | None = None  # the instance this run must give back
        self.lease: LeaseKeeper | None = None
        self.session: SshSession | None = None
        self.remote: RemoteCommand | None = None
        self.layout = RemoteLayout(uuid.uuid4().hex[:12], synced=options.sync)
        self.ttl_deadline: float | None = None  # monotonic: when the plane deletes it

    def run(self) -> int:
        self.cancel.install()
        try:
            code = self._run()
        except Abort as abort:
            self.report.event("cancelled", f"cancelled by {abort}", signal=str(abort))
            code = 128 + abort.signum
            self.report.outcome.reason = f"cancelled by {abort}"
        except RunFailure as failure:
            code = self._failed(failure.message, failure.code)
        except ServerUnreachable as error:
            code = self._failed(error.message, exit_codes.BREV_ERROR)
        except BrevError as error:
            code = self._failed(error.message, exit_codes.BREV_ERROR)
        except subprocess.TimeoutExpired as error:  # a short remote step that never answered
            message = f"the machine did not answer within {error.timeout:.0f} s"
            code = self._failed(message, exit_codes.CONNECTION_LOST)
        except OSError as error:  # ssh or rsync could not be started
            code = self._failed(
                f"{error.filename or 'ssh'}: {error.strerror}", exit_codes.BREV_ERROR
            )
        finally:
            self.cancel.phase = TEARDOWN
            self.client.close()
            with self._new_client() as self.client:
                self._teardown()
            self.cancel.restore()
        if self.cancel.requested and code not in (exit_codes.SIGINT, exit_codes.SIGTERM):
            code = self.cancel.exit_code()
        self.report.outcome.exit_code = code
        return code

    # -- the phases ---------------------------------------------------------------------

    def _run(self) -> int:
        if shutil.which("ssh") is None:  # before renting anything
            raise RunFailure(
                "no `ssh` on PATH: install OpenSSH's client (apt-get install openssh-client)",
                exit_codes.BREV_ERROR,
            )
        deadline = time.monotonic() + self.o.timeout_s
        name = self._machine()
        self.cancel.phase = "waiting"
        if self.cancel.signum is not None:  # came while the create was on its way
            raise Abort(self.cancel.signum)
        instance = wait_running(self.client, name, deadline, self._progress)
        self._describe(instance)
        if instance.expires_at is not None:
            left = (instance.expires_at - datetime.now(UTC)).total_seconds()
            self.ttl_deadline = time.monotonic() + left
        self.session = self._connect(name, deadline)
        self.report.event("ready", f"{name} is ready", instance=name)
        if self.o.sync:
            self._sync()
        self.remote = RemoteCommand(self.session, self.layout)
        self.report.event("started", f"running: {self.o.command_line}", command=self.o.command_line)
        self.cancel.phase = RUNNING
        self.remote.start(self.o.command_line, self.o.env)
        code = self._wait_command()
        self.cancel.phase = "pulling"
        self._pull_outs(CANCEL_PULL_S if self.cancel.requested else None)
        return code

    def _machine(self) -> str:
        self.cancel.phase = CREATING
        if self.o.on:
            instance = self.client.instance(self.o.on)
            self._describe(instance)
            return instance.name
        rental = rent(self.client, self.o.create, self.o.key_base)
        instance = rental.instance
        self.rented = instance.name
        self.report.outcome.rented_at = time.monotonic()
        self.lease = LeaseKeeper(self._new_client(), instance.name, self.o.lease_s, self.report)
        self.lease.start()
        self._describe(instance)
        verb = "reusing" if rental.reused else "created"
        self.report.event(
            "created",
            f"{verb} {instance.name} ({self.report.outcome.gpu}, {self.report.outcome.where})",
            instance=instance.name,
            reused=rental.reused,
            gpu=self.report.outcome.gpu,
            where=self.report.outcome.where,
            price_per_hour=instance.price_per_hour,
        )
        return instance.name

    def _progress(self, instance: api.InstanceDetail) -> None:
        self.report.event("status", f"{instance.name}: {instance.status}", status=instance.status)

    def _describe(self, instance: api.InstanceDetail) -> None:
        o = self.report.outcome
        o.instance = instance.name
        o.gpu = f"{instance.gpu_count} x {instance.gpu_model}" if instance.gpu_count else "CPU"
        if instance.node:
            o.where = f"node {instance.node}"
        else:
            parts = (instance.provider, instance.instance_type, instance.zone or instance.region)
            o.where = " ".join(p for p in parts if p) or "-"
        o.price_per_hour = instance.price_per_hour

    def _connect(self, name: str, deadline: float) -> SshSession:
        """Certificates and pinned host keys for the machine, and the shared connection (its
        sshd may take a moment after `running`)."""
        from brev.cli.ssh_access import refresh_with
        from brev.ssh import config as ssh_config

        self.cancel.phase = "connecting"
        while True:
            targets = {t.alias: t for t in refresh_with(self.client, touch_user_config=False)}
            target = targets.get(name)
            if target is not None and target.host_keys:
                break
            if time.monotonic() > deadline:
                raise RunFailure(
                    f"{name} runs but reported no SSH host key before --timeout",
                    exit_codes.TIMEOUT,
                )
            time.sleep(0.5)
        session = SshSession(ssh_config.paths().config, name)
        while True:
            probe = session.run("true", timeout=max(5.0, deadline - time.monotonic()))
            if probe.returncode == 0:
                return session
            if time.monotonic() > deadline:
                stderr = probe.stderr.decode(errors="replace").strip().splitlines()
                raise RunFailure(
                    f"cannot get into {name} over SSH: {stderr[-1] if stderr else 'no reason'}",
                    exit_codes.TIMEOUT,
                )
            time.sleep(1)

    def _sync(self) -> None:
        from brev.cli.run import sync

        assert self.session is not None
        self.cancel.phase = "syncing"
        try:
            moved = sync.push(self.session, self.o.workdir, self.layout.workdir)
        except sync.SyncFailed as error:
            raise RunFailure(error.message, exit_codes.SYNC_FAILED) from None
        self.report.event(
            "synced",
            f"synced {moved.files} file(s), {moved.bytes} bytes by {moved.method} "
            f"in {moved.seconds:.1f} s",
            method=moved.method,
            files=moved.files,
            bytes=moved.bytes,
            seconds=round(moved.seconds, 3),
        )

    def _wait_command(self) -> int:
        assert self.remote is not None
        code = self.remote.wait(lambda: self.cancel.requested or self._ttl_reached())
        if code is None and not self.cancel.requested:
            # The plane deletes the instance now; on a node that leaves running sessions be.
            self._stop_command(signal.SIGTERM, "the instance's TTL is up: stopping the command")
            raise RunFailure("the instance's TTL ended the run", exit_codes.TIMEOUT)
        if code is None:  # a signal: hand it on, give the command a moment to end
            assert self.cancel.signum is not None
            code = self._stop_command(self.cancel.signum, "forwarding the signal to the command")
            code = self.cancel.exit_code() if code is None else code
        if code == SSH_FAILED or code < 0:  # ssh failed, or was killed: ask the machine
            code = self._after_ssh_failure()
        self.report.event("exited", f"the command exited {code}", exit_code=code)
        return code

    def _ttl_reached(self) -> bool:
        return self.ttl_deadline is not None and time.monotonic() >= self.ttl_deadline

    def _stop_command(self, signum: int, why: str) -> int | None:
        """Signal the command and give it CANCEL_GRACE_S to end; its exit code, or None."""
        assert self.remote is not None
        self.report.event("signalled", why, signal=signal.Signals(signum).name)
        self.remote.signal(signum)
        deadline = time.monotonic() + CANCEL_GRACE_S
        code = self.remote.wait(lambda: time.monotonic() > deadline)
        if code is None:
            self.remote.kill()
        return code

    def _after_ssh_failure(self) -> int:
        """ssh said 255: the command's own status, or a connection that dropped under it."""
        assert self.remote is not None
        recorded = self.remote.recorded_exit()
        if recorded is not None:
            return recorded
        reason, code = "the SSH connection was lost mid-run", exit_codes.CONNECTION_LOST
        try:
            name = self.report.outcome.instance or ""
            instance = self.client.instance(name)
            expired = any(e.action == "instance.ttl_expired" for e in instance.events)
            if instance.desired_status == api.InstanceStatus.DELETED and expired:
                reason, code = "the instance's TTL ended the run", exit_codes.TIMEOUT
        except BrevError:
            pass
        raise RunFailure(reason, code)

    def _pull_outs(self, timeout: float | None) -> None:
        if not self.o.outs or self.session is None:
            return
        from brev.cli.run import sync

        for out in self.o.outs:
            try:
                found = sync.pull(
                    self.session, self.layout.workdir, out.remote, out.local, timeout=timeout
                )
            except (sync.SyncFailed, subprocess.TimeoutExpired) as error:
                self.report.warn(f"--out {out.remote}: not copied back ({error})")
                continue
            if found:
                self.report.event(
                    "out",
                    f"copied {out.remote} to {out.local}",
                    path=out.remote,
                    local=str(out.local),
                )
            else:
                self.report.warn(
                    f"--out {out.remote}: no such path on the machine", path=out.remote
                )

    # -- the end ------------------------------------------------------------------------

    def _failed(self, message: str, code: int) -> int:
        self.report.event("error", f"error: {message}", message=message, exit_code=code)
        self.report.outcome.reason = message
        return code

    def _teardown(self) -> None:
        """Give back first (a CI system may SIGKILL soon after its SIGTERM), then tidy up;
        nothing that fails while tidying may stop the rest."""
        if self.remote is not None:
            self.remote.kill()  # cut short by a second signal: its lifeline ends the command
        if self.lease is not None:
            self.lease.halt()
        if self.rented is not None:
            # --keep keeps a machine the command ran on, not one that never got that far.
            if self.o.keep and self.remote is not None:
                self._keep()
            else:
                self._give_back(self.rented)
        tidy: list[Callable[[], None]] = []
        if self.remote is not None and self.rented is None:
            tidy.append(self.remote.cleanup)  # --on: the machine stays, this run's files go
        if self.session is not None:
            tidy.append(self.session.close)
        if self.lease is not None:
            tidy.append(self.lease.stop)
        for step in tidy:
            try:
                step()
            except (OSError, subprocess.SubprocessError) as error:
                self.report.warn(f"cleanup: {error}")

    def _keep(self) -> None:
        name = self.rented
        assert name is not None
        try:
            self.client.release_lease(name)
        except BrevError as error:
            self.report.warn(
                f"{name}: its lease could not be dropped ({error.message}); "
                f"the plane deletes it when the lease lapses"
            )
        self.report.event(
            "kept",
            f"kept {name}: `brev shell {name}`, `ssh {name}`; `brev delete {name}` when done",
            instance=name,
        )

    def _give_back(self, name: str) -> None:
        for attempt in range(3):
            try:
                self.client.delete_instance(name)
                break
            except ServerUnreachable as error:
                if attempt == 2:
                    self.report.warn(
                        f"{name} not deleted ({error.message}); the plane deletes it when its "
                        f"lease lapses"
                    )
                    return
                time.sleep(1 + attempt)
            except BrevError as error:
                self.report.warn(f"{name}: delete refused ({error.message})")
                return
        self.report.outcome.released_at = time.monotonic()
        cost = self.report.outcome.cost_usd()
        wall = time.monotonic() - self.report.outcome.started
        self.report.event(
            "deleted",
            f"deleted {name}" + (f" (about ${cost:.4f})" if cost is not None else ""),
            instance=name,
            cost_usd=cost,
            wall_seconds=round(wall, 3),
        )
