"""`brev catalog refresh`: the catalog updated from the providers' APIs (moto for EC2, a small
Compute endpoint for GCP), kept as an overlay by the plane, never breaking offline use."""

from __future__ import annotations

import logging
import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from brev.catalog import load_catalog
from brev.catalog import refresh as refresh_module
from brev.catalog.offers import (
    DATA_DIR,
    _read_offers,
    reload_catalog,
    shipped_offers,
    use_overlay,
)
from brev.catalog.refresh import gpu_model_name, write_offers
from brev.cli.commands import catalog as catalog_cli
from brev.cli.main import app as cli_app
from brev.client import BrevClient, Conflict, Forbidden
from brev.server.services import catalog_refresh
from tests.conftest import BREV, LiveServer, Plane
from tests.gcp_fake import FakeCompute, _HttpError
from tests.moto import ec2_error

MOTO_SPOT = 0.00001  # what moto answers for every spot price
P4D_ZONES = ["use1-az1", "use1-az2", "use1-az4", "use1-az6"]  # moto's p4d.24xlarge in us-east-1


@pytest.fixture(autouse=True)
def _shipped_catalog_after() -> Iterator[None]:
    """The plane points the process's catalog at its home: point it back for later tests."""
    yield
    use_overlay(None)


def _shipped(provider: str, instance_type: str, region: str) -> Any:
    return next(
        o
        for o in shipped_offers(provider)
        if o.instance_type == instance_type and o.region == region
    )


def _offer(client: BrevClient, gpu: str, instance_type: str, region: str) -> Any:
    found = client.offers(gpu, region=region)
    return next(o for o in found if o.instance_type == instance_type)


def _fail(
    monkeypatch: pytest.MonkeyPatch, code: str, regions: Callable[[str], bool] = lambda _: True
) -> None:
    """The refresher's EC2 calls in the regions that `regions` picks answer with `code`."""
    original: Callable[..., Any] = refresh_module._ec2_client

    def client(session: Any, config: Any, region: str) -> Any:
        ec2 = original(session, config, region)
        if regions(region):
            ec2.meta.events.register("before-send.ec2.*", ec2_error(code, "injected", 403))
        return ec2

    monkeypatch.setattr(refresh_module, "_ec2_client", client)


# -- AWS through the plane ------------------------------------------------------------------
# A refresh of every region costs moto about 10 s, so one test does it; the others make most
# regions fail at once.


def test_refresh_updates_offers_and_skips_a_failing_region(
    plane: Plane, aws_org: BrevClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    shipped_p4d = _shipped("aws", "p4d.24xlarge", "us-east-1")
    assert shipped_p4d.spot_price_per_hour != MOTO_SPOT
    _fail(monkeypatch, "UnauthorizedOperation", lambda region: region == "eu-west-1")

    [result] = aws_org.refresh_catalog()

    assert result.provider == "aws" and result.error is None
    assert [(s.region, s.reason) for s in result.skipped] == [
        ("eu-west-1", "AWS UnauthorizedOperation: injected")
    ]
    assert "us-east-1" in result.regions and "eu-west-1" not in result.regions
    overlay = plane.settings.home / "catalog" / "aws.csv"
    assert len(_read_offers(overlay)) == result.rows > 0
    p4d = _offer(aws_org, "a100:8", "p4d.24xlarge", "us-east-1")
    assert p4d.spot_price_per_hour == MOTO_SPOT  # live, from describe_spot_price_history
    assert p4d.price_per_hour == shipped_p4d.price_per_hour  # on-demand: the shipped price
    assert p4d.zones == P4D_ZONES  # AZ IDs, from describe_instance_type_offerings
    assert (p4d.gpu_model, p4d.gpu_count, p4d.gpu_memory_gib) == ("A100", 8, 40)
    h100 = _offer(aws_org, "h100:8", "p5.48xlarge", "us-east-1")
    assert (h100.gpu_model, h100.vcpus, h100.memory_gib) == ("H100", 192, 2048)
    a10g = _offer(aws_org, "a10g:1", "g5.xlarge", "us-east-1")
    assert (a10g.gpu_memory_gib, a10g.vcpus, a10g.memory_gib, a10g.spot_price_per_hour) == (
        22.35,
        4,
        16,
        MOTO_SPOT,
    )
    # The failing region keeps its offers; other providers are untouched.
    kept = _offer(aws_org, "a10g:1", "g5.xlarge", "eu-west-1")
    assert kept.spot_price_per_hour == _shipped("aws", "g5.xlarge", "eu-west-1").spot_price_per_hour
    assert not (plane.settings.home / "catalog" / "gcp.csv").exists()
    assert [o for o in load_catalog().offers if o.provider == "gcp"] == shipped_offers("gcp")
    event = aws_org.events()[0]
    assert event.action == "catalog.refresh" and event.object_name == "aws"

    # A later refresh where us-east-1 fails keeps what the last one found there.
    _fail(monkeypatch, "OptInRequired", lambda region: region != "us-west-1")
    [again] = aws_org.refresh_catalog()
    assert again.regions == ["us-west-1"]
    assert _offer(aws_org, "a100:8", "p4d.24xlarge", "us-east-1").spot_price_per_hour == MOTO_SPOT


def test_every_region_failing_changes_nothing(
    plane: Plane, aws_org: BrevClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fail(monkeypatch, "AuthFailure")
    [result] = aws_org.refresh_catalog()
    regions = {o.region for o in shipped_offers("aws")}
    assert result.regions == [] and {s.region for s in result.skipped} == regions
    assert result.rows == len(shipped_offers("aws"))
    assert not (plane.settings.home / "catalog" / "aws.csv").exists()


def test_without_credentials_nothing_is_refreshed(plane: Plane, admin: BrevClient) -> None:
    assert admin.refresh_catalog() == []
    assert not (plane.settings.home / "catalog").exists()
    assert all(e.action != "catalog.refresh" for e in admin.events())


def test_one_refresh_at_a_time(plane: Plane, aws_org: BrevClient) -> None:
    with catalog_refresh._running, pytest.raises(Conflict, match="already running"):
        aws_org.refresh_catalog()


def test_only_admins_refresh(plane: Plane, aws_org: BrevClient) -> None:
    added = aws_org.add_member("member@example.com")
    assert added.login_token is not None
    member = plane.client(added.login_token, org="default")
    with pytest.raises(Forbidden, match="refreshing the catalog needs the admin role"):
        member.refresh_catalog()


# -- the overlay, offline ---------------------------------------------------------------------


def test_a_corrupt_overlay_falls_back_to_the_shipped_data(
    plane: Plane, admin: BrevClient, caplog: pytest.LogCaptureFixture
) -> None:
    overlay = plane.settings.home / "catalog" / "aws.csv"
    overlay.parent.mkdir(parents=True)
    overlay.write_bytes(b"provider,instance_type\n\xff\xfe not a catalog\n")
    reload_catalog()
    with caplog.at_level(logging.WARNING, logger="brev.catalog"):
        p4d = _offer(admin, "a100:8", "p4d.24xlarge", "us-east-1")
    assert (
        p4d.spot_price_per_hour == _shipped("aws", "p4d.24xlarge", "us-east-1").spot_price_per_hour
    )
    assert any("ignoring the refreshed catalog" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "text",
    [
        "",  # empty
        "provider,instance_type,gpu\n",  # another header
        ",".join(["provider", *["x"] * 10]) + "\n",  # the right width, the wrong names
        "PLACEHOLDER",  # the right header, no rows
        "PLACEHOLDER" + "aws,p9.big,X,eight,,,,1,,us-east-1,use1-az1\n",  # not a number
        "PLACEHOLDER" + "gcp,a2-highgpu-1g,A100,1,40,12,85,1,,us-east1,us-east1-b\n",  # provider
    ],
)
def test_every_unusable_overlay_is_ignored(tmp_path: Path, text: str) -> None:
    header = "provider,instance_type,gpu,gpu_count,gpu_memory_gib,vcpus,memory_gib,"
    header += "price_hour,spot_price_hour,region,zones\n"
    (tmp_path / "aws.csv").write_text(text.replace("PLACEHOLDER", header))
    use_overlay(tmp_path)
    assert [o for o in load_catalog().offers if o.provider == "aws"] == shipped_offers("aws")


def test_the_shipped_catalog_written_again_is_the_same_file(tmp_path: Path) -> None:
    for provider in ("aws", "gcp", "lambda"):
        write_offers(tmp_path / f"{provider}.csv", shipped_offers(provider))
        assert (tmp_path / f"{provider}.csv").read_text() == (
            DATA_DIR / f"{provider}.csv"
        ).read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["aws.csv", "gcp.csv", "lambda.csv"]


def test_a_valid_overlay_replaces_its_providers_file_only(tmp_path: Path) -> None:
    cheap = [replace(o, price_per_hour=0.5) for o in shipped_offers("lambda")[:3]]
    write_offers(tmp_path / "lambda.csv", cheap)
    use_overlay(tmp_path)
    catalog = load_catalog()
    assert [o for o in catalog.offers if o.provider == "lambda"] == cheap
    assert [o for o in catalog.offers if o.provider == "aws"] == shipped_offers("aws")
    use_overlay(None)
    assert len(load_catalog().offers) > len(catalog.offers)


def test_gpu_names_the_shipped_data_lacks() -> None:
    known = ["A100", "A100-80GB", "H100", "V100-32GB", "L4"]
    assert gpu_model_name("A100", 80.0, known) == "A100-80GB"
    assert gpu_model_name("A100", 40.0, known) == "A100"
    assert gpu_model_name("nvidia-h100-80gb", None, known) == "H100"
    assert gpu_model_name("nvidia-tesla-a100", None, known) == "A100"
    assert gpu_model_name("nvidia-l4", None, known) == "L4"
    assert gpu_model_name("Radeon Pro V520", 8.0, known) == "RADEON-PRO-V520"


# -- GCP ----------------------------------------------------------------------------------------


def _machine_type(name: str, cpus: int, memory_mb: int, gpu: str, count: int) -> dict[str, Any]:
    accelerators = [{"guestAcceleratorType": gpu, "guestAcceleratorCount": count}]
    return {"name": name, "guestCpus": cpus, "memoryMb": memory_mb, "accelerators": accelerators}


class ComputeWithMachineTypes(FakeCompute):
    """tests/gcp_fake.py plus machineTypes.aggregatedList, honouring a `name eq "RE"` filter."""

    def __init__(self, zones: dict[str, list[dict[str, Any]] | str]) -> None:
        super().__init__()
        self.zones = zones  # zone -> its machine types, or why it is unreachable

    def handle(
        self, method: str, path: str, query: dict[str, str], body: dict[str, Any] | None
    ) -> dict[str, Any]:
        try:  # the fake's own routes, and its injected faults
            return super().handle(method, path, query, body)
        except _HttpError as exc:
            if not (
                path.endswith("/aggregated/machineTypes") and exc.message.startswith("no route")
            ):
                raise
        pattern = re.fullmatch(r'name eq "(.+)"', query.get("filter", ""))
        assert pattern is not None, query
        items: dict[str, Any] = {}
        for zone, found in self.zones.items():
            if isinstance(found, str):
                items[f"zones/{zone}"] = {"warning": {"code": "UNREACHABLE", "message": found}}
                continue
            kept = [t for t in found if re.fullmatch(pattern.group(1), t["name"])]
            items[f"zones/{zone}"] = {"machineTypes": kept}
        return {"kind": "compute#machineTypeAggregatedList", "items": items}


def test_gcp_refresh_takes_types_and_zones_and_keeps_prices(
    plane: Plane, admin: BrevClient
) -> None:
    a2 = _machine_type("a2-highgpu-1g", 12, 87040, "nvidia-tesla-a100", 1)
    g2 = _machine_type("g2-standard-4", 4, 16384, "nvidia-l4", 1)
    unknown = _machine_type("a3-highgpu-16g", 416, 3_000_000, "nvidia-h100-80gb", 16)
    plain = {"name": "n2-standard-4", "guestCpus": 4, "memoryMb": 16384}
    zones: dict[str, list[dict[str, Any]] | str] = {
        "us-central1-a": [a2, g2, unknown, plain],
        "us-central1-c": [a2],
        "europe-west4-a": "injected: the zone is unreachable",
    }
    with ComputeWithMachineTypes(zones) as fake:
        admin.add_provider("gcp", {"project": fake.project, "endpoint_url": fake.url})
        [result] = admin.refresh_catalog()

    assert result.provider == "gcp" and result.error is None
    assert result.regions == ["us-central1"]
    assert result.unpriced == 1  # a3-highgpu-16g: the API lists it, nothing prices it
    skipped = {s.region: s.reason for s in result.skipped}
    assert skipped["europe-west4"].endswith("injected: the zone is unreachable")
    shipped_regions = {o.region for o in shipped_offers("gcp")}
    assert set(skipped) == shipped_regions - {"us-central1"}
    found = {o.instance_type: o for o in admin.offers(providers=["gcp"], region="us-central1")}
    assert set(found) == {"a2-highgpu-1g", "g2-standard-4"}  # what the API lists there
    shipped_a2 = _shipped("gcp", "a2-highgpu-1g", "us-central1")
    assert found["a2-highgpu-1g"].zones == ["us-central1-a", "us-central1-c"]
    assert found["a2-highgpu-1g"].price_per_hour == shipped_a2.price_per_hour
    assert found["a2-highgpu-1g"].spot_price_per_hour == shipped_a2.spot_price_per_hour
    assert (found["g2-standard-4"].gpu_model, found["g2-standard-4"].gpu_memory_gib) == ("L4", 24)
    elsewhere = admin.offers("a100", providers=["gcp"], region="europe-west4")
    assert elsewhere and elsewhere == admin.offers("a100", providers=["gcp"], region="europe-west4")


def test_gcp_refresh_that_fails_changes_nothing(plane: Plane, admin: BrevClient) -> None:
    with ComputeWithMachineTypes({}) as fake:
        admin.add_provider("gcp", {"project": fake.project, "endpoint_url": fake.url})
        fake.fail_next(403, reason="forbidden", message="compute.machineTypes.list denied")
        [result] = admin.refresh_catalog()
    assert result.regions == [] and "compute.machineTypes.list denied" in (result.error or "")
    assert result.rows == len(shipped_offers("gcp"))
    assert not (plane.settings.home / "catalog" / "gcp.csv").exists()


# -- the CLI ------------------------------------------------------------------------------------


def _cli(plane: Plane, monkeypatch: pytest.MonkeyPatch, *args: str) -> Any:  # click.testing.Result
    monkeypatch.setattr(
        catalog_cli, "connect", lambda: plane.client(plane.admin_token, org="default")
    )
    return CliRunner().invoke(cli_app, ["catalog", "refresh", *args])


def test_cli_prints_a_table_and_names_skipped_regions(
    plane: Plane, aws_org: BrevClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fail(monkeypatch, "UnauthorizedOperation", lambda region: region != "us-west-1")
    done = _cli(plane, monkeypatch)
    assert done.exit_code == 0, done.output
    header, row = done.stdout.splitlines()
    regions = sorted({o.region for o in shipped_offers("aws")})
    assert header.split() == ["PROVIDER", "ROWS", "REGIONS", "SKIPPED"]
    assert row.split() == [
        "aws",
        str(sum(o.provider == "aws" for o in load_catalog().offers)),
        "1",
        str(len(regions) - 1),
    ]
    assert done.stderr.splitlines() == [
        f"aws {region}: skipped (AWS UnauthorizedOperation: injected)"
        for region in regions
        if region != "us-west-1"
    ]


def test_cli_without_credentials_says_what_to_do(
    plane: Plane, admin: BrevClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    done = _cli(plane, monkeypatch)
    assert done.exit_code == 0 and done.stdout == ""
    assert "run `brev provider add aws`" in done.stderr
    json_done = _cli(plane, monkeypatch, "--json")
    assert json_done.exit_code == 0 and json_done.stdout.strip() == "[]"


def test_cli_exits_1_when_a_provider_refreshed_nothing(
    plane: Plane, aws_org: BrevClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fail(monkeypatch, "AuthFailure")
    done = _cli(plane, monkeypatch, "--json")
    assert done.exit_code == 1
    assert '"regions": []' in done.stdout


@pytest.mark.slow
def test_the_console_script_against_a_real_server(live_server: LiveServer, tmp_path: Path) -> None:
    env = live_server.env(
        BREV_HOME=str(tmp_path / "cli-home"),
        BREV_API_URL=live_server.url,
        BREV_TOKEN=live_server.admin_token,
        BREV_ORG="default",
    )
    done = subprocess.run(
        [BREV, "catalog", "refresh"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stdout == "", done.stderr
    assert done.stderr.startswith("No credentials to refresh with in org 'default'")
