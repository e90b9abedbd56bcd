"""moto's EC2 server as a real HTTP endpoint, and faults injected at the botocore boundary."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from brev import api
from brev.providers.aws import AwsProvider
from tests.postgres import free_port

# What most tests create on moto: the catalog's 8-GPU A100 machine in moto's region.
A100 = api.InstanceCreate(gpu="a100:8", providers=["aws"], region="us-east-1")

MOTO_SERVER = str(Path(sys.executable).parent / "moto_server")


@dataclass
class MotoServer:
    url: str
    process: subprocess.Popen[bytes]

    def reset(self) -> None:
        httpx.post(f"{self.url}/moto-api/reset", timeout=10).raise_for_status()

    def config(self) -> dict[str, str]:
        """What an org stores as its AWS provider config to use this server."""
        return {
            "access_key_id": "testing",
            "secret_access_key": "testing",
            "endpoint_url": self.url,
        }

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_moto() -> MotoServer:
    port = free_port()
    env = {**os.environ, "MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION": "true"}
    process = subprocess.Popen(
        [MOTO_SERVER, "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = MotoServer(url=f"http://127.0.0.1:{port}", process=process)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{server.url}/moto-api/", timeout=1)
            return server
        except httpx.TransportError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError("moto_server did not start in 30 s")


def live_machines(moto: MotoServer, region: str = "us-east-1") -> list[dict[str, Any]]:
    """moto's machines that are not terminated (or terminating), with their tags as a dict."""
    ec2 = AwsProvider(moto.config())._client(region)
    reservations = ec2.describe_instances()["Reservations"]
    return [
        {**i, "Tags": {t["Key"]: t["Value"] for t in i.get("Tags", [])}}
        for r in reservations
        for i in r["Instances"]
        if i["State"]["Name"] not in ("terminated", "shutting-down")
    ]


def ec2_error(code: str, message: str, status: int = 400) -> Callable[..., Any]:
    """A botocore `before-send` handler answering every matching call with an EC2 error, so
    botocore's real parsing and the provider's real translation run."""
    from botocore.awsrequest import AWSResponse

    body = (
        f'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>{code}</Code>'
        f"<Message>{message}</Message></Error></Errors><RequestID>test</RequestID></Response>"
    ).encode()

    class _Raw:
        def stream(self, **_: Any) -> Any:
            yield body

    def handler(request: Any, **_: Any) -> AWSResponse:
        return AWSResponse(request.url, status, {}, _Raw())

    return handler
