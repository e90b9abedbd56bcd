"""Every capture in shared/fixtures/nvidia-smi: parsed where the agent reads that format, and
named with the reason where it does not, so a new capture cannot go unnoticed."""

from __future__ import annotations

from pathlib import Path

import pytest

from brev.agent.nvidia_smi import cuda_version_in, header_name, number, parse_csv

CAPTURE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "nvidia-smi" / "h200-x2"
# The fields of the `--query-gpu` captures, as the README lists them.
QUERY = [
    "index",
    "uuid",
    "name",
    "serial",
    "pci.bus_id",
    "driver_version",
    "vbios_version",
    "compute_cap",
    "memory.total",
    "memory.used",
    "memory.free",
    "utilization.gpu",
    "utilization.memory",
    "temperature.gpu",
    "power.draw",
    "power.limit",
    "clocks.sm",
    "clocks.max.sm",
    "clocks.mem",
    "fan.speed",
    "pstate",
    "ecc.errors.uncorrected.volatile.total",
    "mig.mode.current",
]
NOT_READ_BY_THE_AGENT = {
    "smi_L.txt": "the agent takes names and UUIDs from --query-gpu",
    "smi_q.xml": "the stand-in nvidia-smi answers from it; the agent never asks for XML",
    "smi_q_busy.xml": "as smi_q.xml",
    "smi_dmon.txt": "a streaming monitor; the agent samples with --query-gpu instead",
    "smi_topo.txt": "topology (NVLink, NUMA): not reported yet",
}

pytestmark = pytest.mark.skipif(not CAPTURE.is_dir(), reason="no ../shared/fixtures")


def _parsed(name: str) -> list[dict[str, str | None]]:
    text = (CAPTURE / name).read_text()
    return parse_csv(text, QUERY if "nounits" in name else None)


@pytest.mark.parametrize("state", ["idle", "busy"])
def test_query_captures_with_and_without_units_agree(state: str) -> None:
    with_units = _parsed(f"smi_query_{state}.csv")
    without = _parsed(f"smi_query_{state}_nounits.csv")
    assert len(with_units) == len(without) == 2
    for a, b in zip(with_units, without, strict=True):
        assert set(a) == set(b) == set(QUERY)  # renamed headers map back to what was asked
        # the two captures were sampled moments apart: compare what does not move
        for field in ("memory.total", "power.limit", "clocks.max.sm"):
            assert number(a[field]) == number(b[field])
        assert a["name"] == b["name"] and a["driver_version"] == b["driver_version"]
        assert a["fan.speed"] is None and b["fan.speed"] is None  # [N/A] on data-center GPUs
        assert a["uuid"] == b["uuid"] and a["uuid"] is not None and a["uuid"].startswith("GPU-")
    busy = state == "busy"
    assert all((number(r["utilization.gpu"]) or 0) > 50 for r in with_units) is busy


@pytest.mark.parametrize("state", ["idle", "busy"])
def test_compute_app_captures(state: str) -> None:
    apps = _parsed(f"smi_apps_{state}.csv")
    if state == "idle":
        assert apps == []
    else:
        assert [(a["process_name"], number(a["used_memory"])) for a in apps] == [
            ("python3", 874),
            ("python3", 874),
        ]


@pytest.mark.parametrize("name", ["smi_q.txt", "smi_default.txt", "smi_default_busy.txt"])
def test_the_cuda_version_is_found_in_both_text_formats(name: str) -> None:
    assert cuda_version_in((CAPTURE / name).read_text()) == "13.0"


def test_every_capture_is_either_parsed_or_named_here() -> None:
    parsed = {
        "smi_query_idle.csv",
        "smi_query_busy.csv",
        "smi_query_idle_nounits.csv",
        "smi_query_busy_nounits.csv",
        "smi_apps_idle.csv",
        "smi_apps_busy.csv",
        "smi_q.txt",
        "smi_default.txt",
        "smi_default_busy.txt",
    }
    assert {p.name for p in CAPTURE.iterdir()} == parsed | set(NOT_READ_BY_THE_AGENT)
    assert header_name("clocks.current.sm [MHz]") == "clocks.sm"
