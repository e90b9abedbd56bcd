"""XID errors: the GPU faults the NVIDIA driver logs (`NVRM: Xid (PCI:0000:3b:00): 79, ...`).

Two sources, whichever works for a GPU:

- NVML events, where `nvidia-ml-py` is importable and NVML answers: one event set, made once
  for the agent's process and registered for `nvmlEventTypeXidCriticalError` on every GPU that
  accepts it, drained without waiting at every collection.
- The kernel log (`/dev/kmsg`) for the GPUs NVML cannot watch: read without blocking, only the
  records written after the agent started, each matched to its GPU by PCI bus id.

Each GPU of a report carries the XIDs seen since the previous collection, at most MAX_PER_GPU;
a GPU whose XIDs come from NVML ignores the kernel log's copy of them. Standard library only:
NVML is imported when it is asked for, through `brev.agent.nvml`.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from brev.agent.report import GpuSample, XidError

log = logging.getLogger("brev.agent")

KMSG = Path("/dev/kmsg")
# Per GPU and report; more are counted in `problems` and left out.
MAX_PER_GPU = 50
# Per collection, so that a storm of records cannot hold the agent up; the rest wait their turn.
MAX_READS = 5000
# XIDs of GPUs missing from a report, written into its `problems`.
MAX_UNPLACED = 20
MAX_MESSAGE = 300
# /dev/kmsg returns one record per read() and refuses a buffer smaller than the record.
_READ_SIZE = 16384

# `NVRM: Xid (PCI:0000:3b:00): 79, pid=1234, GPU has fallen off the bus.`; older drivers leave
# out `PCI:`, MIG adds ` GPU-I:05` inside the parentheses.
_XID_LINE = re.compile(
    r"NVRM: Xid \((?:PCI:)?(?P<bus>[0-9A-Fa-f]+:[0-9A-Fa-f]+(?::[0-9A-Fa-f]+)?(?:\.[0-7])?)"
    r"[^)]*\):\s*(?P<xid>\d+)\s*,?\s*(?P<rest>.*)"
)


def bus_key(bus_id: str | None) -> str | None:
    """A PCI address in one spelling, `0000:3b:00` (domain, bus, device), whichever the source
    wrote: NVML's `00000000:3B:00.0`, nvidia-smi's, or the kernel log's `PCI:0000:3b:00`."""
    if not bus_id:
        return None
    text = bus_id.strip().removeprefix("PCI:").split(".", 1)[0]
    parts = text.split(":")
    if len(parts) == 2:
        parts.insert(0, "0")
    if len(parts) != 3:
        return None
    try:
        domain, bus, device = (int(part, 16) for part in parts)
    except ValueError:
        return None
    return f"{domain:04x}:{bus:02x}:{device:02x}"


@dataclass(frozen=True)
class KmsgRecord:
    seq: int
    usec: int  # since boot
    message: str


@dataclass(frozen=True)
class KernelXid:
    bus: str  # bus_key() of the GPU
    xid: int
    message: str
    usec: int


def parse_record(line: str) -> KmsgRecord | None:
    """One /dev/kmsg record, `prio,seq,usec,flags[,...];message`; None for a continuation line
    (` KEY=value`) or anything else."""
    head, sep, message = line.partition(";")
    if not sep or line.startswith(" "):
        return None
    fields = head.split(",")
    if len(fields) < 3:
        return None
    try:
        return KmsgRecord(seq=int(fields[1]), usec=int(fields[2]), message=message)
    except ValueError:
        return None


def parse_xid(record: KmsgRecord) -> KernelXid | None:
    match = _XID_LINE.search(record.message)
    if match is None:
        return None
    bus = bus_key(match["bus"])
    if bus is None:
        return None
    return KernelXid(bus, int(match["xid"]), match["rest"].strip()[:MAX_MESSAGE], record.usec)


class KmsgReader:
    """The kernel log from the moment this opens: /dev/kmsg (or a file standing in for it)
    without blocking, each record once (by its sequence number)."""

    def __init__(self, path: Path = KMSG) -> None:
        self.path = path
        self.lost = 0  # times the kernel overwrote records before they were read
        self._fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        self._last_seq = -1
        self._partial = b""  # a regular file may end in the middle of a record
        try:
            os.lseek(self._fd, 0, os.SEEK_END)  # /dev/kmsg: after the last record
        except OSError:
            self.records()  # cannot seek: read what is there and forget it

    def records(self, limit: int = MAX_READS) -> list[KmsgRecord]:
        """Records written since the last call, oldest first. Raises OSError when the log can no
        longer be read."""
        found: list[KmsgRecord] = []
        for _ in range(limit):
            try:
                chunk = os.read(self._fd, _READ_SIZE)
            except BlockingIOError:  # EAGAIN: nothing new
                break
            except OSError as error:
                if error.errno == errno.EPIPE:  # overwritten before read: go on from the next
                    self.lost += 1
                    continue
                raise
            if not chunk:  # the end of a regular file
                break
            *lines, self._partial = (self._partial + chunk).split(b"\n")
            for line in lines:
                record = parse_record(line.decode(errors="replace"))
                if record is not None and record.seq > self._last_seq:
                    self._last_seq = record.seq
                    found.append(record)
        return found

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()


class XidWatcher:
    """What the agent keeps between collections to see XIDs: the NVML event set and the kernel
    log's reader. `collect` puts each GPU's new XIDs on its sample."""

    def __init__(
        self,
        kmsg_path: Path = KMSG,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._kmsg_path = kmsg_path
        self._clock = clock
        self._monotonic = monotonic
        self._started = clock()
        self._nvml: Any = None  # brev.agent.nvml.XidEvents, once NVML has answered
        self._nvml_tried = False
        self._kmsg: KmsgReader | None = None
        self._kmsg_tried = False
        self._lost_seen = 0
        self._known: dict[str, GpuSample] = {}  # by bus key, from earlier reports

    def collect(
        self, gpus: list[GpuSample], *, nvml_works: bool
    ) -> tuple[list[GpuSample], list[str]]:
        """The GPUs with the XIDs seen since the last call, and what could not be read.
        `nvml_works`: this collection read the GPUs through NVML, so its events may be used."""
        problems: list[str] = []
        if nvml_works and gpus and not self._nvml_tried:
            self._start_nvml(problems)
        found: dict[str, list[XidError]] = {}  # by UUID
        unplaced: list[str] = []
        by_uuid = {g.uuid: g for g in gpus}
        covered: set[str] = set(self._nvml.uuids.values()) if self._nvml is not None else set()
        if self._nvml is not None:
            self._drain_nvml(by_uuid, found, unplaced, problems)
        if any(g.uuid not in covered for g in gpus) and not self._kmsg_tried:
            self._open_kmsg(problems)
        if self._kmsg is not None:
            self._read_kmsg(gpus, covered, found, unplaced, problems)
        for gpu in gpus:
            if bus := bus_key(gpu.bus_id):
                self._known[bus] = gpu
        if unplaced:
            problems += unplaced[:MAX_UNPLACED]
            if len(unplaced) > MAX_UNPLACED:
                problems.append(f"XID: {len(unplaced) - MAX_UNPLACED} more on GPUs not listed")
        result = []
        for gpu in gpus:
            errors = found.get(gpu.uuid, [])
            if len(errors) > MAX_PER_GPU:
                problems.append(
                    f"XID: GPU {gpu.index} had {len(errors)} since the last report; "
                    f"the first {MAX_PER_GPU} are listed"
                )
                errors = errors[:MAX_PER_GPU]
            result.append(dataclasses.replace(gpu, xid_errors=errors) if errors else gpu)
        return result, problems

    def close(self) -> None:
        if self._nvml is not None:
            self._nvml.close()
            self._nvml = None
        if self._kmsg is not None:
            self._kmsg.close()
            self._kmsg = None

    def _start_nvml(self, problems: list[str]) -> None:
        self._nvml_tried = True
        try:
            from brev.agent import nvml

            self._nvml = nvml.XidEvents()
        except ImportError:
            return
        except Exception as error:  # NVML answered for the GPUs but not for events
            self._note(problems, f"XID: NVML events unavailable ({error}); reading the kernel log")
            return
        for refusal in self._nvml.refused:
            self._note(problems, f"XID: {refusal}; reading the kernel log for it")

    def _drain_nvml(
        self,
        by_uuid: dict[str, GpuSample],
        found: dict[str, list[XidError]],
        unplaced: list[str],
        problems: list[str],
    ) -> None:
        try:
            events, error = self._nvml.drain(MAX_READS)
        except Exception as failure:  # the set itself is broken: say so each time
            problems.append(f"XID: NVML events: {failure}")
            return
        if error is not None:
            problems.append(f"XID: NVML events: {error}")
        now = _iso(self._clock())
        for uuid, xid in events:
            if uuid in by_uuid:
                found.setdefault(uuid, []).append(XidError(xid=xid, message=None, at=now))
            else:
                unplaced.append(f"XID {xid} on {uuid or 'an unknown GPU'}, not in this report")

    def _open_kmsg(self, problems: list[str]) -> None:
        self._kmsg_tried = True
        try:
            self._kmsg = KmsgReader(self._kmsg_path)
        except OSError as error:
            reason = error.strerror or str(error)
            self._note(problems, f"XID: cannot read {self._kmsg_path} ({reason})")

    def _read_kmsg(
        self,
        gpus: list[GpuSample],
        covered: set[str],
        found: dict[str, list[XidError]],
        unplaced: list[str],
        problems: list[str],
    ) -> None:
        assert self._kmsg is not None
        try:
            records = self._kmsg.records()
        except OSError as error:
            self._note(problems, f"XID: stopped reading {self._kmsg_path} ({error.strerror})")
            self._kmsg.close()
            self._kmsg = None
            return
        if self._kmsg.lost > self._lost_seen:
            self._lost_seen = self._kmsg.lost
            problems.append(f"XID: the kernel overwrote records of {self._kmsg_path} unread")
        by_bus = {bus: g for g in gpus if (bus := bus_key(g.bus_id))}
        for record in records:
            seen = parse_xid(record)
            if seen is None:
                continue
            gpu = by_bus.get(seen.bus)
            earlier = gpu or self._known.get(seen.bus)
            if earlier is not None and earlier.uuid in covered:
                continue  # NVML's events carry this GPU's XIDs
            if gpu is None:
                name = f"GPU {earlier.uuid}" if earlier else f"the GPU at {seen.bus}"
                unplaced.append(f"XID {seen.xid} on {name}, not in this report: {seen.message}")
                continue
            fault = XidError(xid=seen.xid, message=seen.message or None, at=self._at(seen))
            found.setdefault(gpu.uuid, []).append(fault)

    def _at(self, seen: KernelXid) -> str:
        """The record's time of day: the kernel stamps microseconds since boot."""
        now = self._clock()
        then = now - (self._monotonic() - seen.usec / 1e6)
        return _iso(min(max(then, self._started), now))

    @staticmethod
    def _note(problems: list[str], text: str) -> None:
        """Something that stays true: said in the report where it was found, and logged."""
        problems.append(text)
        log.info("%s", text)


_watcher: XidWatcher | None = None


def watcher() -> XidWatcher:
    """This process's watcher: made at the first collection, kept for the agent's life."""
    global _watcher
    if _watcher is None:
        _watcher = XidWatcher()
    return _watcher
