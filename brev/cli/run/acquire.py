"""The machine of a run: a new instance (or the one an earlier try of the same CI step
rented), or an existing one with --on; then waiting until it runs and SSH can get in."""

from __future__ import annotations

import time
from dataclasses import dataclass

from brev import api
from brev.cli import exit_codes
from brev.cli.run import ci_env
from brev.client import (
    BrevClient,
    Conflict,
    Forbidden,
    InvalidRequest,
    NoCapacity,
    ServerUnreachable,
)
from brev.errors import BrevError

ENDED = {api.InstanceStatus.DELETING, api.InstanceStatus.DELETED, api.InstanceStatus.FAILED}
MAX_RENTALS_PER_KEY = 50
POLL_S = 0.2


class RunFailure(BrevError):
    """A failure of brev's (not of the command) with the exit code that names it."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Rental:
    instance: api.InstanceDetail
    reused: bool


def rent(client: BrevClient, body: api.InstanceCreate, key_base: str) -> Rental:
    """Create the instance, under the step's idempotency key. A key whose instance is still
    alive returns it (a retried step, or a re-run after a crash: no second GPU); one whose
    instance ended moves on to the next key of the series."""
    for rental in range(MAX_RENTALS_PER_KEY):
        keyed = body.model_copy(update={"idempotency_key": ci_env.attempt_key(key_base, rental)})
        instance, created = _create(client, keyed)
        # One this request made is ours even when it failed at once (every placement refused).
        if created or instance.status not in ENDED:
            return Rental(instance, reused=not created)
    raise RunFailure(
        f"{MAX_RENTALS_PER_KEY} rentals under idempotency key {key_base!r} already: pass "
        f"another --idempotency-key",
        exit_codes.USAGE,
    )


def _create(client: BrevClient, body: api.InstanceCreate) -> tuple[api.InstanceDetail, bool]:
    for attempt in range(3):
        try:
            return client.create_or_find_instance(body)
        except ServerUnreachable:
            if attempt == 2:
                raise
            time.sleep(1 + attempt)  # the key makes a repeat return what got through
        except NoCapacity as error:
            raise RunFailure(error.message, exit_codes.NO_CAPACITY) from None
        except Conflict as error:
            raise RunFailure(error.message, exit_codes.BREV_ERROR) from None
        except InvalidRequest as error:
            raise RunFailure(f"invalid request: {error.message}", exit_codes.USAGE) from None
        except Forbidden as error:
            raise RunFailure(error.message, exit_codes.BREV_ERROR) from None
    raise AssertionError("unreachable")


def wait_running(
    client: BrevClient, name: str, deadline: float, on_change: object = None
) -> api.InstanceDetail:
    """Poll until the instance runs; RunFailure when it failed, ended or the deadline passed."""
    last = ""
    while True:
        instance = client.instance(name)
        if instance.status == api.InstanceStatus.RUNNING:
            return instance
        if instance.status == api.InstanceStatus.FAILED:
            raise RunFailure(
                f"{name} failed: {instance.status_reason}",
                exit_codes.NO_CAPACITY
                if _out_of_capacity(instance)
                else exit_codes.PROVISIONING_FAILED,
            )
        if instance.status in ENDED or instance.desired_status == api.InstanceStatus.DELETED:
            raise RunFailure(f"{name} is {instance.status}", exit_codes.PROVISIONING_FAILED)
        if instance.status == api.InstanceStatus.STOPPED:
            raise RunFailure(f"{name} is stopped: `brev start {name}` first", exit_codes.BREV_ERROR)
        if callable(on_change) and instance.status != last:
            on_change(instance)
            last = instance.status
        if time.monotonic() > deadline:
            raise RunFailure(
                f"{name} is still {instance.status} at the end of --timeout", exit_codes.TIMEOUT
            )
        time.sleep(POLL_S)


def _out_of_capacity(instance: api.InstanceDetail) -> bool:
    """Every placement refused for capacity or quota: the plane's own words for it."""
    return any(
        e.action == "instance.failed" and e.details.get("reason") == "every placement failed"
        for e in instance.events
    )
