"""Waiting for an instance that `brev create` (or `start`) asked for: the create sent again on a
dropped connection, the instance read until it settles, one status line rewritten meanwhile."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

from brev.errors import BrevError

if TYPE_CHECKING:
    from brev import api
    from brev.client import BrevClient

FINAL = {"running", "failed", "stopped", "deleted"}
NODE_POLL_S = 0.1  # between reads of a starting instance on a node


def create_with_retries(client: BrevClient, body: api.InstanceCreate) -> api.InstanceDetail:
    """POST the create, again on a dropped connection: the idempotency key makes a repeat
    return the instance the first request made, if it got through."""
    from brev.client import ServerUnreachable

    for attempt in range(3):
        try:
            return client.create_instance(body)
        except ServerUnreachable:
            if attempt == 2:
                raise
            time.sleep(1 + attempt)
    raise AssertionError("unreachable")


def wait_until_settled(client: BrevClient, name: str, seconds: int) -> api.InstanceDetail:
    deadline = time.monotonic() + seconds
    last = ""
    status_line = StatusLine()
    try:
        while True:
            instance = client.instance(name)
            line = describe_progress(instance)
            if line != last:
                status_line.show(line)
                last = line
            if instance.status in FINAL:
                return instance
            if time.monotonic() > deadline:
                raise BrevError(
                    f"{name} is still {instance.status} after {seconds}s; the plane keeps "
                    f"going: follow it with `brev show {name}`, or `brev delete {name}`"
                )
            # A node's agent hears of the instance at once (its long-poll) and makes it
            # running within a fraction of a second; a cloud takes minutes.
            time.sleep(NODE_POLL_S if instance.node else 1)
    finally:
        status_line.close()


def describe_progress(instance: api.InstanceDetail) -> str:
    if instance.node:
        waiting = " (waiting for the node's agent)" if instance.status == "starting" else ""
        return f"{instance.name}: {instance.status} on node {instance.node}{waiting}"
    where = " ".join(
        p
        for p in (instance.provider, instance.instance_type, instance.zone or instance.region)
        if p
    )
    attempt = f", attempt {instance.attempt + 1}/{len(instance.plan)}" if instance.plan else ""
    # `running` means reachable: the machine is up, its agent (or sshd) not yet heard from.
    booting = ", booting: waiting for its agent" if instance.status == "starting" else ""
    return f"{instance.name}: {instance.status} ({where}{attempt}{booting})"


class StatusLine:
    """One line rewritten in place on a terminal; a line per change in a log."""

    def __init__(self) -> None:
        self._terminal = sys.stderr.isatty()
        self._width = 0

    def show(self, text: str) -> None:
        if self._terminal:
            sys.stderr.write("\r" + text.ljust(self._width))
            self._width = len(text)
        else:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self._terminal and self._width:
            sys.stderr.write("\n")
