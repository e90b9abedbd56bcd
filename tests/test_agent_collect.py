"""The agent's collector on real nvidia-smi output (shared/fixtures/nvidia-smi), on the variants
real GPUs print, and on hosts without a driver."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from brev.agent import nvidia_smi
from brev.agent.collect import collect
from brev.agent.host import meminfo, ssh_host_keys, ssh_sessions
from tests.conftest import BREV

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "nvidia-smi"
STUB = FIXTURES / "bin"

pytestmark = pytest.mark.skipif(not STUB.is_dir(), reason="no ../shared/fixtures beside the repo")


@pytest.fixture
def h200_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process's PATH finds the stand-in nvidia-smi that replays a 2 x H200 host."""
    monkeypatch.setenv("PATH", f"{STUB}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("NVSMI_STATE", raising=False)


def test_an_idle_h200_host(h200_host: None) -> None:
    report = collect(prefer_nvml=False)
    assert report.source == "nvidia-smi"
    assert report.driver_version == "580.159.04" and report.cuda_version == "13.0"
    assert [g.name for g in report.gpus] == ["NVIDIA H200", "NVIDIA H200"]
    first = report.gpus[0]
    assert first.uuid == "GPU-3ff0664e-9184-9b8e-5a1a-9ba7d688cef7"
    assert first.memory_total_mib == 143771 and first.memory_used_mib == 0
    assert first.utilization_gpu_pct == 0 and first.power_limit_w == 700
    assert first.mig_mode == "Disabled" and first.processes == []
    assert report.problems == []


def test_a_busy_h200_host_shows_its_processes(
    h200_host: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NVSMI_STATE", "busy")
    report = collect(prefer_nvml=False)
    assert [g.utilization_gpu_pct for g in report.gpus] == [100, 100]
    assert [[p.name for p in g.processes] for g in report.gpus] == [["python3"], ["python3"]]
    assert report.gpus[0].processes[0].used_memory_mib == 874


def test_a_host_without_a_driver_is_a_cpu_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no nvidia-smi here
    report = collect(prefer_nvml=False)
    assert report.source == "none" and report.gpus == []
    assert report.problems == ["no NVIDIA driver: nvidia-smi not found"]
    assert report.host.cpu_count >= 1 and report.host.memory_total_bytes


def test_a_driver_that_is_gone_is_a_cpu_host(
    h200_host: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("NVSMI_CAPTURE", str(tmp_path / "no-capture"))
    report = collect(prefer_nvml=False)
    assert report.source == "none" and report.gpus == []
    assert report.problems[0].startswith("no NVIDIA driver")


def test_an_nvidia_smi_that_refuses_everything_is_a_report_not_a_crash(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Exit status 2 (what nvidia-smi says to a bad argument) for every query, as a broken
    install answers: the agent must keep reporting, with the reason, never crash-loop."""
    stub = tmp_path / "nvidia-smi"
    stub.write_text("#!/bin/sh\necho 'Invalid combination of input arguments.' >&2\nexit 2\n")
    stub.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    report = collect(prefer_nvml=False)
    assert report.source == "none" and report.gpus == []
    assert report.problems[0].startswith("no NVIDIA driver: nvidia-smi refused every query")


def test_real_variants_parse_to_none_not_errors() -> None:
    """What other GPUs print: units left in, [N/A], [Not Supported], renamed headers, blank
    lines, a missing trailing column."""
    text = (
        "index, uuid, name, memory.total [MiB], memory.used [MiB], utilization.gpu [%], "
        "clocks.current.sm [MHz], power.draw [W]\n"
        "0, GPU-a, NVIDIA GB10, [N/A], [Not Supported], 3 %, 2400 MHz, 11.5 W\n"
        "\n"
        "1, GPU-b, Tesla T4, 15360 MiB, 0 MiB, [N/A], [Unknown Error]\n"
    )
    rows = nvidia_smi.parse_csv(text)
    assert rows[0]["memory.total"] is None and rows[0]["memory.used"] is None
    assert nvidia_smi.number(rows[0]["utilization.gpu"]) == 3
    assert nvidia_smi.number(rows[0]["clocks.sm"]) == 2400  # asked as clocks.sm
    assert rows[1]["utilization.gpu"] is None and rows[1]["clocks.sm"] is None
    assert "power.draw" not in rows[1]


def test_unified_memory_is_the_hosts(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A GB10-like GPU reports no memory; the report takes the host's and marks it unified."""
    script = tmp_path / "nvidia-smi"
    script.write_text(
        "#!/bin/sh\n"
        'case "$*" in\n'
        "  *query-gpu*) printf 'index, uuid, name, driver_version, memory.total [MiB], "
        "memory.used [MiB]\\n0, GPU-gb10, NVIDIA GB10, 580.95.05, [N/A], [N/A]\\n' ;;\n"
        "  *query-compute-apps*) "
        "printf 'gpu_uuid, pid, process_name, used_gpu_memory [MiB]\\n' ;;\n"
        "  *) printf 'CUDA Version : 13.0\\n' ;;\n"
        "esac\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}/usr/bin:/bin")
    report = collect(prefer_nvml=False)
    [gpu] = report.gpus
    assert gpu.unified_memory is True
    assert gpu.memory_total_mib == pytest.approx(meminfo()["MemTotal"] / 2**20)
    assert report.driver_version == "580.95.05"


def test_an_old_driver_refusing_a_field_gets_the_basic_fields(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    script = tmp_path / "nvidia-smi"
    script.write_text(
        "#!/bin/sh\n"
        'case "$*" in\n'
        "  *mig.mode.current*) "
        "echo 'Field \"mig.mode.current\" is not a valid field to query.'; exit 2 ;;\n"
        "  *query-gpu*) printf 'index, uuid, name, memory.total [MiB], memory.used [MiB], "
        "utilization.gpu [%%]\\n0, GPU-old, Tesla K80, 11441, 0, 0\\n' ;;\n"
        "  *) exit 0 ;;\n"
        "esac\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}/usr/bin:/bin")
    report = collect(prefer_nvml=False)
    assert [(g.name, g.memory_total_mib) for g in report.gpus] == [("Tesla K80", 11441)]


def test_host_facts(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    (proc / "10").mkdir(parents=True)
    (proc / "11").mkdir()
    (proc / "12").mkdir()
    (proc / "10" / "cmdline").write_bytes(b"sshd: root@pts/0\0")
    (proc / "11" / "cmdline").write_bytes(b"sshd: /usr/sbin/sshd -D [listener]\0")
    (proc / "12" / "cmdline").write_bytes(b"sshd-session: alice@notty\0")
    (proc / "meminfo").write_text("MemTotal:       16384 kB\nMemAvailable:    8192 kB\n")
    assert ssh_sessions(proc) == 2
    assert meminfo(proc) == {"MemTotal": 16384 * 1024, "MemAvailable": 8192 * 1024}
    ssh = tmp_path / "ssh"
    ssh.mkdir()
    (ssh / "ssh_host_ed25519_key.pub").write_text("ssh-ed25519 AAAA host\n")
    (ssh / "ssh_host_ed25519_key").write_text("PRIVATE")
    assert ssh_host_keys(ssh) == ["ssh-ed25519 AAAA host"]


def test_brev_agent_collect_once_json(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PATH": f"{STUB}{os.pathsep}{os.environ['PATH']}",
        "BREV_HOME": str(tmp_path),
    }
    result = subprocess.run(
        [BREV, "agent", "collect", "--once", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    report = json.loads(result.stdout)
    assert report["source"] in ("nvidia-smi", "nvml")
    assert len(report["gpus"]) == 2
    assert set(report["host"]) >= {"hostname", "cpu_count", "ssh_host_keys", "ssh_sessions"}


def test_process_names_come_from_proc(tmp_path: Path) -> None:
    from brev.agent.host import process_name

    (tmp_path / "568").mkdir()
    (tmp_path / "568" / "cmdline").write_bytes(b"/opt/torch/.venv/bin/python\0-c\0...")
    assert process_name(568, tmp_path) == "/opt/torch/.venv/bin/python"
    assert process_name(999, tmp_path) == ""
