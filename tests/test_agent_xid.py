"""XID errors: from NVML events (a stand-in pynvml), from the kernel log (a file standing in for
/dev/kmsg), and on the plane as `gpu.xid` fault events."""

from __future__ import annotations

import os
import sys
import types
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

import brev.agent
from brev.agent import xid
from brev.agent.collect import collect
from brev.agent.report import GpuSample, XidError
from brev.client import BrevClient
from tests.conftest import Plane
from tests.seed import add_instances

STUB = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "nvidia-smi" / "bin"

NOT_SUPPORTED, TIMEOUT, GPU_IS_LOST = 3, 10, 15
XID_EVENT, SINGLE_BIT_ECC_EVENT = 0x8, 0x1


# -- a stand-in for nvidia-ml-py -------------------------------------------------------------


class FakeNVMLError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        names = {NOT_SUPPORTED: "Not Supported", TIMEOUT: "Timeout", GPU_IS_LOST: "GPU is lost"}
        return names.get(self.value, f"NVML error {self.value}")


class FakeNvml:
    """The GPUs, events and calls behind a fake `pynvml` module."""

    def __init__(self, gpus: list[tuple[str, str]], refuse: set[str] | None = None) -> None:
        self.gpus = gpus  # (UUID, PCI bus id) per index; handle i is f"handle-{i}"
        self.refuse = refuse or set()  # UUIDs whose registration NVML refuses
        self.lost: set[str] = set()  # handles that no longer answer
        self.events: list[SimpleNamespace] = []
        self.waits: list[int] = []  # each nvmlEventSetWait's timeout
        self.registered: list[tuple[str, int, object]] = []
        self.sets: list[object] = []
        self.references = 0  # nvmlInit minus nvmlShutdown

    def emit(self, index: int, xid_number: int, event_type: int = XID_EVENT) -> None:
        self.events.append(
            SimpleNamespace(
                device=f"handle-{index}",
                eventType=event_type,
                eventData=xid_number if event_type == XID_EVENT else 0,
                gpuInstanceId=0xFFFFFFFF,
                computeInstanceId=0xFFFFFFFF,
            )
        )

    def module(self) -> types.ModuleType:
        module = types.ModuleType("pynvml")

        def init() -> None:
            self.references += 1

        def shutdown() -> None:
            self.references -= 1

        def handle_by_index(index: int) -> str:
            return f"handle-{index}"

        def index_of(handle: str) -> int:
            if handle in self.lost:
                raise FakeNVMLError(GPU_IS_LOST)
            return int(handle.rsplit("-", 1)[1])

        def create_set() -> object:
            event_set = object()
            self.sets.append(event_set)
            return event_set

        def register(handle: str, event_types: int, event_set: object) -> None:
            if self.gpus[index_of(handle)][0] in self.refuse:
                raise FakeNVMLError(NOT_SUPPORTED)
            self.registered.append((handle, event_types, event_set))

        def wait(event_set: object, timeout_ms: int) -> SimpleNamespace:
            assert event_set is self.sets[-1]
            self.waits.append(timeout_ms)
            if not self.events:
                raise FakeNVMLError(TIMEOUT)
            return self.events.pop(0)

        def unsupported(name: str) -> Any:
            if not name.startswith("nvmlDevice"):
                raise AttributeError(name)

            def refuse(*args: object, **kwargs: object) -> None:
                raise FakeNVMLError(NOT_SUPPORTED)

            return refuse

        module.__dict__.update(
            NVMLError=FakeNVMLError,
            NVML_ERROR_TIMEOUT=TIMEOUT,
            NVML_ERROR_NOT_SUPPORTED=NOT_SUPPORTED,
            NVML_MEMORY_ERROR_TYPE_UNCORRECTED=1,
            NVML_VOLATILE_ECC=0,
            nvmlEventTypeXidCriticalError=XID_EVENT,
            nvmlInit=init,
            nvmlShutdown=shutdown,
            nvmlSystemGetDriverVersion=lambda: "580.159.04",
            nvmlSystemGetCudaDriverVersion_v2=lambda: 13000,
            nvmlDeviceGetCount=lambda: len(self.gpus),
            nvmlDeviceGetHandleByIndex=handle_by_index,
            nvmlDeviceGetUUID=lambda handle: self.gpus[index_of(handle)][0].encode(),
            nvmlDeviceGetName=lambda handle: b"NVIDIA H200",
            nvmlDeviceGetPciInfo=lambda handle: SimpleNamespace(
                busId=self.gpus[index_of(handle)][1].encode()
            ),
            nvmlDeviceGetMemoryInfo=lambda handle: SimpleNamespace(
                total=143771 * 2**20, used=0, free=143771 * 2**20
            ),
            nvmlEventSetCreate=create_set,
            nvmlDeviceRegisterEvents=register,
            nvmlEventSetWait=wait,
            nvmlEventSetFree=lambda event_set: None,
            __getattr__=unsupported,  # any other reading: Not Supported, as some GPUs answer
        )
        return module


H200S = [
    ("GPU-3ff0664e-9184-9b8e-5a1a-9ba7d688cef7", "00000000:00:06.0"),
    ("GPU-8c1e3e51-3d13-0f4b-47a6-1a5c9d0f2e11", "00000000:00:07.0"),
    ("GPU-mig-refuses-events", "00000000:3B:00.0"),
]


@pytest.fixture
def kmsg(tmp_path: Path) -> Path:
    """A file standing in for /dev/kmsg, with a record written before the agent started."""
    path = tmp_path / "kmsg"
    path.write_text(
        "4,100,5000000,-;NVRM: Xid (PCI:0000:3b:00): 31, pid=1, name=old, before the agent\n"
    )
    return path


@pytest.fixture
def watcher(kmsg: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[xid.XidWatcher]:
    """A fresh process-wide watcher, reading the stand-in kernel log."""
    made = xid.XidWatcher(kmsg)
    monkeypatch.setattr(xid, "_watcher", made)
    yield made
    made.close()


@pytest.fixture
def nvml_host(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeNvml]:
    """`import pynvml` finds the fake, and brev.agent.nvml is imported afresh against it."""
    fake = FakeNvml(H200S, refuse={H200S[2][0]})
    monkeypatch.setitem(sys.modules, "pynvml", fake.module())
    monkeypatch.delitem(sys.modules, "brev.agent.nvml", raising=False)
    monkeypatch.delattr(brev.agent, "nvml", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "no-nvidia-smi"))
    yield fake
    # the module bound to the fake must not outlive it
    sys.modules.pop("brev.agent.nvml", None)
    if hasattr(brev.agent, "nvml"):
        delattr(brev.agent, "nvml")


def _append(path: Path, *records: str) -> None:
    with path.open("a") as log:
        log.write("".join(records))


def _xids(gpu: GpuSample) -> list[int]:
    return [e.xid for e in gpu.xid_errors]


# -- NVML events -----------------------------------------------------------------------------


def test_nvml_events_reach_their_gpu_once(
    nvml_host: FakeNvml, watcher: xid.XidWatcher, kmsg: Path
) -> None:
    first = collect()
    assert first.source == "nvml" and [g.xid_errors for g in first.gpus] == [[], [], []]
    # one event set, XID events registered on every GPU that accepts them
    [event_set] = nvml_host.sets
    assert nvml_host.registered == [
        ("handle-0", XID_EVENT, event_set),
        ("handle-1", XID_EVENT, event_set),
    ]
    refusal = f"XID: GPU 2 ({H200S[2][0]}) has no XID events in NVML: Not Supported"
    assert [p for p in first.problems if p.startswith("XID")] == [
        refusal + "; reading the kernel log for it"
    ]

    nvml_host.emit(1, 79)
    nvml_host.emit(0, 13)
    nvml_host.emit(1, 94)
    nvml_host.emit(0, 0, event_type=SINGLE_BIT_ECC_EVENT)  # not an XID
    _append(
        kmsg,
        # the GPU NVML refused: its XIDs come from the kernel log
        "4,101,6000000,-;NVRM: Xid (PCI:0000:3b:00): 48, pid=812, name=python3, DBE\n",
        # one NVML already reported: not counted twice
        "4,102,6100000,-;NVRM: Xid (PCI:0000:00:06): 13, pid=812, Graphics Exception\n",
    )
    second = collect()
    assert [_xids(g) for g in second.gpus] == [[13], [79, 94], [48]]
    assert second.gpus[1].xid_errors[0].message is None  # NVML events carry no text
    assert second.gpus[2].xid_errors[0].message == "pid=812, name=python3, DBE"
    assert not [p for p in second.problems if p.startswith("XID")]  # the refusal was said once
    # drained without waiting, from the same set, NVML still held open for it
    assert set(nvml_host.waits) == {0} and len(nvml_host.sets) == 1
    assert nvml_host.references == 1

    third = collect()
    assert [g.xid_errors for g in third.gpus] == [[], [], []]  # each XID in one report


def test_an_xid_of_a_gpu_that_fell_off_the_bus_is_still_told(
    nvml_host: FakeNvml, watcher: xid.XidWatcher
) -> None:
    collect()
    nvml_host.emit(1, 79)
    nvml_host.lost.add("handle-1")  # answers nothing any more: NVML's sample fails
    report = collect()
    assert report.gpus == []  # NVML failed and there is no nvidia-smi on this PATH
    assert "NVML: GPU is lost" in report.problems
    # the event still names its GPU: handles were matched to UUIDs when registering
    assert f"XID 79 on {H200S[1][0]}, not in this report" in report.problems


def test_nvml_without_event_support_falls_back_to_the_kernel_log(
    nvml_host: FakeNvml, watcher: xid.XidWatcher, kmsg: Path
) -> None:
    nvml_host.refuse = {uuid for uuid, _ in H200S}
    first = collect()
    assert len([p for p in first.problems if "has no XID events in NVML" in p]) == 3
    _append(kmsg, "4,101,6000000,-;NVRM: Xid (PCI:0000:00:07): 79, pid=1, off the bus.\n")
    assert [_xids(g) for g in collect().gpus] == [[], [79], []]


# -- the kernel log --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spelling",
    ["0000:3b:00", "PCI:0000:3b:00", "00000000:3B:00.0", "0000:3B:00.0", "3b:00.0", "3B:00"],
)
def test_pci_bus_ids_in_every_spelling_are_one(spelling: str) -> None:
    assert xid.bus_key(spelling) == "0000:3b:00"


@pytest.mark.parametrize("junk", [None, "", "N/A", "[N/A]", "0000:zz:00.0", "3b"])
def test_unreadable_bus_ids_match_nothing(junk: str | None) -> None:
    assert xid.bus_key(junk) is None


def test_a_record_a_real_h200_wrote() -> None:
    """The line a lent H200 (driver 580.159.04) logged after a kernel wrote to address 0x10, in
    /dev/kmsg's record format."""
    record = xid.parse_record(
        "4,1031,37610004,-;NVRM: Xid (PCI:0000:00:06): 31, pid=491, name=python3, channel "
        "0x0000000a, intr 00000000. MMU Fault: ENGINE GRAPHICS GPC1 GPCCLIENT_T1_6 faulted @ "
        "0x0_00000000. Fault is of type FAULT_PDE ACCESS_TYPE_VIRT_WRITE"
    )
    assert record is not None and (record.seq, record.usec) == (1031, 37610004)
    seen = xid.parse_xid(record)
    assert seen is not None and (seen.bus, seen.xid) == ("0000:00:06", 31)
    assert seen.bus == xid.bus_key("00000000:00:06.0")  # what NVML says of that GPU
    assert seen.message.startswith("pid=491, name=python3, channel 0x0000000a")
    assert xid.parse_record(" SUBSYSTEM=pci") is None


def _gpu(index: int, uuid: str, bus_id: str | None) -> GpuSample:
    return GpuSample(
        index=index,
        uuid=uuid,
        name="NVIDIA H200",
        bus_id=bus_id,
        memory_total_mib=143771,
        memory_used_mib=0,
        unified_memory=False,
        utilization_gpu_pct=0,
        utilization_memory_pct=0,
        temperature_c=39,
        power_draw_w=76.3,
        power_limit_w=700,
        mig_mode="Disabled",
    )


GPUS = [_gpu(0, "GPU-a", "00000000:00:06.0"), _gpu(1, "GPU-b", "0000:00:07.0")]


def test_the_kernel_log_since_the_agent_started(kmsg: Path) -> None:
    _append(kmsg, "4,101,5100000,-;NVRM: Xid (PCI:0000:00:06): 13, also before the start\n")
    now = [1000.0]  # the time of day when the watcher starts; the kernel's clock says 10 s
    watcher = xid.XidWatcher(kmsg, clock=lambda: now[0], monotonic=lambda: 10.0)
    try:
        gpus, problems = watcher.collect(GPUS, nvml_works=False)
        assert [g.xid_errors for g in gpus] == [[], []] and problems == []
        now[0] = 2000.0
        _append(
            kmsg,
            "6,102,6000000,-;eth0: link up\n",
            " SUBSYSTEM=net\n",
            "4,103,7000000,-;NVRM: Xid (PCI:0000:00:06): 79, pid=2213, GPU has fallen off "
            "the bus.\n",
            " SUBSYSTEM=pci\n",
            " DEVICE=+pci:0000:00:06.0\n",
            # an older driver's line, without `PCI:`
            "4,104,7100000,-;NVRM: Xid (0000:00:07): 13, Graphics SM Warp Exception on "
            "(GPC 0, TPC 0, SM 0): Out Of Range Address\n",
            # a MIG instance's
            "4,105,7200000,-;NVRM: Xid (PCI:0000:00:07 GPU-I:05): 43, pid=3, Ch 00000010\n",
            "4,103,7000000,-;NVRM: Xid (PCI:0000:00:06): 79, a record read already\n",
            "4,106,7300000,-;NVRM: Xid (PCI:0000:9a:00): 95, pid=4, Uncontained ECC error\n",
            "4,107,7400000,-;NVRM: Xid (PCI:0000:00:06): 6",  # the rest comes later
        )
        gpus, problems = watcher.collect(GPUS, nvml_works=False)
        assert gpus[0].xid_errors == [
            XidError(
                xid=79,
                message="pid=2213, GPU has fallen off the bus.",
                at=datetime.fromtimestamp(2000.0 - 3.0, UTC).isoformat(),  # 3 s before now
            )
        ]
        assert [(e.xid, e.message) for e in gpus[1].xid_errors] == [
            (13, "Graphics SM Warp Exception on (GPC 0, TPC 0, SM 0): Out Of Range Address"),
            (43, "pid=3, Ch 00000010"),
        ]
        assert problems == [
            "XID 95 on the GPU at 0000:9a:00, not in this report: pid=4, Uncontained ECC error"
        ]
        _append(kmsg, "3, pid=5, Row Remapper: New row marked for remapping\n")
        gpus, problems = watcher.collect(GPUS, nvml_works=False)
        assert [_xids(g) for g in gpus] == [[63], []] and problems == []
    finally:
        watcher.close()


def test_a_flood_of_xids_is_bounded(kmsg: Path) -> None:
    watcher = xid.XidWatcher(kmsg)
    try:
        watcher.collect(GPUS, nvml_works=False)
        _append(
            kmsg,
            *(
                f"4,{200 + n},9000000,-;NVRM: Xid (PCI:0000:00:07): 31, fault {n}\n"
                for n in range(60)
            ),
        )
        gpus, problems = watcher.collect(GPUS, nvml_works=False)
        assert len(gpus[1].xid_errors) == xid.MAX_PER_GPU == 50
        assert gpus[1].xid_errors[0].message == "fault 0"  # the first: usually the cause
        assert problems == ["XID: GPU 1 had 60 since the last report; the first 50 are listed"]
    finally:
        watcher.close()


def test_a_kernel_log_that_cannot_be_read_is_said_once(tmp_path: Path) -> None:
    path = tmp_path / "no-such-dir" / "kmsg"
    watcher = xid.XidWatcher(path)
    try:
        gpus, problems = watcher.collect(GPUS, nvml_works=False)
        assert problems == [f"XID: cannot read {path} (No such file or directory)"]
        assert [g.xid_errors for g in gpus] == [[], []]
        assert watcher.collect(GPUS, nvml_works=False) == (GPUS, [])
    finally:
        watcher.close()


def test_a_cpu_host_does_not_open_the_kernel_log(tmp_path: Path) -> None:
    watcher = xid.XidWatcher(tmp_path / "no-such-dir" / "kmsg")
    assert watcher.collect([], nvml_works=False) == ([], [])


@pytest.mark.skipif(not STUB.is_dir(), reason="no ../shared/fixtures beside the repo")
def test_collect_through_nvidia_smi_reads_the_kernel_log(
    watcher: xid.XidWatcher, kmsg: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The replayed 2 x H200 host: its GPUs sit at 00000000:00:06.0 and 00000000:00:07.0."""
    monkeypatch.setenv("PATH", f"{STUB}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("NVSMI_STATE", raising=False)
    assert collect(prefer_nvml=False).source == "nvidia-smi"
    _append(kmsg, "4,101,6000000,-;NVRM: Xid (PCI:0000:00:07): 74, pid=9, NVLink: fatal\n")
    report = collect(prefer_nvml=False)
    assert [_xids(g) for g in report.gpus] == [[], [74]]
    gpu = report.as_json()["gpus"][1]
    assert gpu["xid_errors"][0]["xid"] == 74 and gpu["xid_errors"][0]["message"] == (
        "pid=9, NVLink: fatal"
    )


# -- on the plane ----------------------------------------------------------------------------


def _agent_for(plane: Plane, name: str) -> httpx.Client:
    add_instances(plane.settings.database_url, "default", "admin@localhost", [name])
    token = (
        plane.http(plane.admin_token)
        .post(f"/api/v1/orgs/default/instances/{name}/agent-token")
        .json()["token"]
    )
    return plane.http(token)


def test_xids_in_a_report_are_fault_events_once(plane: Plane, admin: BrevClient) -> None:
    agent = _agent_for(plane, "gpu-a")
    at = "2026-11-28T10:00:03+00:00"
    gpus: list[dict[str, Any]] = [
        {
            "uuid": "GPU-0",
            "name": "NVIDIA H200",
            "xid_errors": [
                {"xid": 79, "message": "pid=2213, GPU has fallen off the bus.", "at": at},
                {"xid": 94, "message": None, "at": at},
            ],
        },
        {
            "uuid": "GPU-1",
            "name": "NVIDIA H200",
            "xid_errors": [{"xid": 4242, "message": None, "at": at}, {"xid": "79"}, "junk"],
        },
        {"uuid": "GPU-2", "name": "NVIDIA H200"},  # an agent from before XIDs
    ]
    report = {"collected_at": at, "source": "nvml", "gpus": gpus}
    body = {"reports": [{"seq": 1, "report": report}]}
    assert agent.post("/api/v1/agent/reports", json=body).json()["accepted"] == 1
    # the answer was lost, the agent sends the report again: no new events
    assert agent.post("/api/v1/agent/reports", json=body).json()["accepted"] == 0
    later = {**report, "gpus": [{**g, "xid_errors": []} for g in gpus]}
    agent.post("/api/v1/agent/reports", json={"reports": [{"seq": 2, "report": later}]})

    faults = [e.details for e in admin.instance("gpu-a").events if e.action == "gpu.xid"]
    assert sorted(faults, key=lambda d: str(d["xid"])) == [
        {
            "uuid": "GPU-1",
            "name": "NVIDIA H200",
            "xid": 4242,
            "message": None,
            "meaning": None,
            "at": at,
        },
        {
            "uuid": "GPU-0",
            "name": "NVIDIA H200",
            "xid": 79,
            "message": "pid=2213, GPU has fallen off the bus.",
            "meaning": "GPU has fallen off the bus",
            "at": at,
        },
        {
            "uuid": "GPU-0",
            "name": "NVIDIA H200",
            "xid": 94,
            "message": None,
            "meaning": "contained ECC error",
            "at": at,
        },
    ]
