"""Slow AWS: brev's AWS provider (against moto, in the bench) behind a wait of `latency_s`
seconds (default 2) before every provider call, the network wait of a real cloud injected at
the provider boundary. The plane sees a provider named `slowaws`; nothing of brev changes.

Each call of the `Provider` interface (validate, create, describe, start, stop, terminate,
list_owned) sleeps first, holding the reconciler worker that made it as a real EC2 call would
(a sleep, like a socket wait, leaves the GIL to the other threads), then delegates to an
`AwsProvider` built from the same config without `latency_s`. Machines it reports name
`slowaws` as their provider.

Its offers are `offers.csv` beside this file: rows of brev's shipped aws.csv re-labelled
provider=slowaws, which bench/provision.py writes into the build copy before installing it.

With SLOWAWS_CALL_LOG set in the plane's environment, every call appends a line to that file
as it begins: `<unix time> <method> <calls in flight, this one included>`, from which the bench
counts the calls and how many the plane had in flight at once.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

from brev.providers.aws import AwsProvider
from brev.providers.base import (
    ConfigKey,
    InstanceSpec,
    InvalidRequest,
    Machine,
    Placement,
    ProviderRef,
)
from brev.providers.sdks import AWS

DEFAULT_LATENCY_S = 2.0
MAX_LATENCY_S = 60.0
CALL_LOG_VARIABLE = "SLOWAWS_CALL_LOG"


class _Calls:
    """Calls in flight across every provider of this process, and their log."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._in_flight = 0

    def begin(self, method: str) -> None:
        with self._lock:
            self._in_flight += 1
            path = os.environ.get(CALL_LOG_VARIABLE)
            if path:
                with Path(path).open("a") as log:  # one line, appended under the lock
                    log.write(f"{time.time():.3f} {method} {self._in_flight}\n")

    def end(self) -> None:
        with self._lock:
            self._in_flight -= 1


_CALLS = _Calls()


class SlowAwsProvider:
    name = "slowaws"
    display_name: ClassVar[str] = "AWS behind a network wait (bench)"
    sdk = AWS
    config_keys: ClassVar[tuple[ConfigKey, ...]] = (
        *(key for key in AwsProvider.config_keys if not key.local),
        ConfigKey(
            "latency_s",
            f"seconds every provider call waits before it is made (default {DEFAULT_LATENCY_S:g})",
        ),
    )
    offers_file: ClassVar[Path] = Path(__file__).with_name("offers.csv")

    def __init__(self, config: Mapping[str, Any]) -> None:
        values = dict(config)
        text = str(values.pop("latency_s", "") or DEFAULT_LATENCY_S)
        try:
            latency = float(text)
        except ValueError:
            latency = math.nan
        if not 0 <= latency <= MAX_LATENCY_S:  # also false for nan
            raise InvalidRequest(
                f"latency_s must be a number of seconds from 0 to {MAX_LATENCY_S:g}, not {text!r}"
            )
        self.latency_s = latency
        self._aws = AwsProvider(values)
        self._aws.name = self.name  # the refs of its machines name this provider

    @contextmanager
    def _call(self, method: str) -> Iterator[None]:
        """The network wait, then the call itself (the body of the `with`)."""
        _CALLS.begin(method)
        try:
            time.sleep(self.latency_s)
            yield
        finally:
            _CALLS.end()

    def validate(self) -> str:
        with self._call("validate"):
            return f"{self._aws.validate()}, {self.latency_s:g} s before every call"

    def create(self, spec: InstanceSpec, placement: Placement, idempotency_key: str) -> Machine:
        with self._call("create"):
            return self._aws.create(spec, placement, idempotency_key)

    def describe(self, ref: ProviderRef) -> Machine | None:
        with self._call("describe"):
            return self._aws.describe(ref)

    def start(self, ref: ProviderRef) -> None:
        with self._call("start"):
            self._aws.start(ref)

    def stop(self, ref: ProviderRef) -> None:
        with self._call("stop"):
            self._aws.stop(ref)

    def terminate(self, ref: ProviderRef) -> None:
        with self._call("terminate"):
            self._aws.terminate(ref)

    def list_owned(self, regions: Iterable[str]) -> Iterable[Machine]:
        with self._call("list_owned"):  # one wait for the listing, however many pages
            return list(self._aws.list_owned(regions))
