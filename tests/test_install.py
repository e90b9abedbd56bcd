"""`pip install` of the repository into a clean venv gives a `brev` that runs the control plane
from anywhere, with its migrations and dashboard coming from inside the installed package."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from brev import __version__
from tests.conftest import BREV_ENV_VARS
from tests.postgres import free_port

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
# What a source checkout may hold that is not part of the package, or that a build writes.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "*.pyc"
)


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without brev's variables or anything that would let the
    new venv import the repository's copy of brev."""
    drop = {*BREV_ENV_VARS, "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"}
    return {**{k: v for k, v in os.environ.items() if k not in drop}, **extra}


def run(*command: str | Path, cwd: Path, timeout: float = 120) -> str:
    result = subprocess.run(
        [str(c) for c in command],
        cwd=cwd,
        env=clean_env(PIP_DISABLE_PIP_VERSION_CHECK="1"),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert result.returncode == 0, f"{command} exited {result.returncode}:\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the repository pip-installed (not editable); its bin/ directory."""
    work = tmp_path_factory.mktemp("install")
    # Build from a copy: an in-tree build would leave build/ and egg-info in the checkout.
    source = work / "source"
    shutil.copytree(REPO, source, ignore=NOT_SOURCE, symlinks=True)
    venv = work / "venv"
    base_python = getattr(sys, "_base_executable", None) or sys.executable
    run(base_python, "-m", "venv", venv, cwd=work)
    bin_dir = venv / "bin"
    run(bin_dir / "python", "-m", "pip", "install", "--quiet", source, cwd=work, timeout=900)
    shutil.rmtree(source)  # nothing may depend on the source tree after the install
    return bin_dir


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """A working directory with no brev source in or above it."""
    directory = tmp_path / "elsewhere"
    directory.mkdir()
    return directory


def test_the_package_comes_from_site_packages(installed: Path, elsewhere: Path) -> None:
    probe = (
        "import json, sysconfig, brev, brev.migrations, brev.server.web;"
        "print(json.dumps({'purelib': sysconfig.get_paths()['purelib'],"
        " 'brev': brev.__file__, 'migrations': brev.migrations.__file__,"
        " 'web': brev.server.web.__file__}))"
    )
    paths = json.loads(run(installed / "python", "-c", probe, cwd=elsewhere))
    site_packages = Path(paths["purelib"]).resolve()
    assert site_packages.is_relative_to(installed.parent.resolve())
    for module in ("brev", "migrations", "web"):
        assert Path(paths[module]).resolve().is_relative_to(site_packages), paths
    package = site_packages / "brev"
    assert (package / "migrations" / "script.py.mako").is_file()
    assert list((package / "migrations" / "versions").glob("0001_*.py"))
    web = package / "server" / "web"
    for shipped in ("index.html", "app.js", "pages/instances.js", "vendor/uplot/uPlot.esm.js"):
        assert (web / shipped).is_file(), shipped
    assert not (site_packages / "migrations").exists()  # no top-level `migrations` package
    assert (package / "providers" / "base.py").is_file()
    assert (package / "providers" / "aws.py").is_file()
    assert not (site_packages / "providers").exists()
    # the help that `brev --help` prints without loading typer (brev.cli.fast.help)
    assert (package / "cli" / "fast" / "help" / "index.txt").is_file()
    assert (package / "cli" / "fast" / "help" / "brev.search.txt").is_file()

    assert run(installed / "brev", "version", cwd=elsewhere) == f"brev {__version__}\n"


@dataclass
class InstalledServer:
    url: str
    home: Path
    log: Path


@pytest.fixture
def server_from_the_venv(
    installed: Path, elsewhere: Path, tmp_path: Path
) -> Iterator[InstalledServer]:
    """`brev server` of the installed package, started in a directory with no source."""
    home = tmp_path / "home"
    port = free_port()
    log = tmp_path / "server.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [str(installed / "brev"), "server", "--port", str(port)],
            cwd=elsewhere,
            env=clean_env(BREV_HOME=str(home)),
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"brev server exited:\n{log.read_text()}"
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"no /healthz in 60 s:\n{log.read_text()}"
            time.sleep(0.1)
        yield InstalledServer(url=url, home=home, log=log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_the_installed_server_migrates_and_serves(server_from_the_venv: InstalledServer) -> None:
    server = server_from_the_venv
    health = httpx.get(f"{server.url}/healthz")
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "version": __version__, "database": "sqlite"}
    # The schema came from the migrations inside the installed package (the source is gone).
    log = server.log.read_text()
    assert "Running upgrade  -> 0001" in log, log
    assert (server.home / "brev.db").is_file()
    assert (server.home / "admin-token").is_file()
    dashboard = httpx.get(f"{server.url}/")
    assert dashboard.status_code == 200
    assert "<html" in dashboard.text.lower()


def test_a_plane_without_a_cloud_sdk_says_what_to_install(
    server_from_the_venv: InstalledServer, installed: Path, elsewhere: Path, tmp_path: Path
) -> None:
    """`pip install brev` has no boto3 (the SDKs are extras): adding AWS credentials is a 4xx
    that names the extra, the CLI prints it in one line, and the plane logs no traceback."""
    server = server_from_the_venv
    sdk = subprocess.run(
        [str(installed / "python"), "-c", "import boto3"], capture_output=True, check=False
    )
    assert sdk.returncode != 0, "the plain install has boto3: this test needs it absent"
    token = (server.home / "admin-token").read_text().strip()
    secret = "plain-install-secret-0123456789"
    added = subprocess.run(
        [str(installed / "brev"), "provider", "add", "aws"],
        cwd=elsewhere,
        env=clean_env(
            BREV_API_URL=server.url,
            BREV_TOKEN=token,
            BREV_ORG="default",
            BREV_HOME=str(tmp_path / "cli-home"),
            HOME=str(tmp_path),
            AWS_ACCESS_KEY_ID="AKIAEXAMPLE",
            AWS_SECRET_ACCESS_KEY=secret,
        ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert added.returncode == 1
    assert added.stderr == (
        "error: AWS support is not installed on the plane: pip install 'brev[aws]'\n"
    )
    answer = httpx.post(
        f"{server.url}/api/v1/orgs/default/providers",
        json={"provider": "gcp", "config": {"project": "p"}},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "provider_not_installed"
    assert "pip install 'brev[gcp]'" in answer.json()["error"]["message"]
    kinds = httpx.get(
        f"{server.url}/api/v1/providers", headers={"Authorization": f"Bearer {token}"}
    ).json()
    installed_by_name = {kind["name"]: kind["installed"] for kind in kinds}
    assert installed_by_name == {"aws": False, "gcp": False, "lambda": True}
    log = server.log.read_text()
    assert "Traceback" not in log and secret not in log
