"""An S3-compatible moto server on 127.0.0.1 with fake AWS credentials in the environment.

Fixtures:
  aws_env   -> dict[str, str] (session): sets AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY=testing,
               AWS_DEFAULT_REGION=us-east-1 for the whole session (restored afterwards)
  s3_server -> S3Server (session): .endpoint_url .host .port .region .client() .env() .reset()
  s3_bucket -> str (function): name of a fresh empty bucket (emptied and deleted afterwards)
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer

from ._common import ServerStartError, wait_for_port

FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass
class S3Server:
    host: str
    port: int
    region: str
    _moto: ThreadedMotoServer

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def client(self) -> Any:
        """A boto3 S3 client talking to this server."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def env(self) -> dict[str, str]:
        """Environment for subprocesses (e.g. the runproc CLI) so any AWS SDK/CLI hits this server."""
        return {
            **FAKE_AWS_ENV,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
        }

    def reset(self) -> None:
        """Wipe all moto state (every bucket)."""
        httpx.post(f"{self.endpoint_url}/moto-api/reset", timeout=10).raise_for_status()


@pytest.fixture(scope="session")
def aws_env() -> Iterator[dict[str, str]]:
    mp = pytest.MonkeyPatch()
    for key, value in FAKE_AWS_ENV.items():
        mp.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        mp.delenv(key, raising=False)
    try:
        yield dict(FAKE_AWS_ENV)
    finally:
        mp.undo()


@pytest.fixture(scope="session")
def s3_server(aws_env: dict[str, str]) -> Iterator[S3Server]:
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    server = S3Server(host=host, port=port, region=aws_env["AWS_DEFAULT_REGION"], _moto=moto)
    try:
        wait_for_port(host, port)
        server.client().list_buckets()
    except Exception as exc:
        moto.stop()
        raise ServerStartError(f"moto S3 server on {host}:{port} not answering: {exc!r}") from exc
    try:
        yield server
    finally:
        moto.stop()


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> Iterator[str]:
    name = f"test-{uuid.uuid4().hex[:16]}"
    client = s3_server.client()
    client.create_bucket(Bucket=name)
    try:
        yield name
    finally:
        try:
            for page in client.get_paginator("list_object_versions").paginate(Bucket=name):
                for item in page.get("Versions", []) + page.get("DeleteMarkers", []):
                    client.delete_object(Bucket=name, Key=item["Key"], VersionId=item["VersionId"])
            client.delete_bucket(Bucket=name)
        except client.exceptions.NoSuchBucket:
            pass
