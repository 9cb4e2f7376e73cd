"""Every AWS service on moto's server (loopback), through the standard AWS environment.

moto's ThreadedMotoServer serves all services on one port, so this reuses the session's
``s3_server`` (tests/servers/s3.py: the server and the fake credentials) rather than
starting a second one; moto's backends are process-wide anyway.

Fixtures (not in tests/conftest.py's plugins: a module imports ``aws_server_fixture``):
  aws_server -> AwsServer (function): points this process's standard AWS environment at the
                server for one test: AWS_ENDPOINT_URL, AWS_EC2_METADATA_DISABLED=true, no
                shared config or credentials files, no AWS_PROFILE (all restored afterwards).
                .endpoint_url .region .account .client(service) .env() (for a subprocess)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from .s3 import FAKE_AWS_ENV, S3Server

MOTO_ACCOUNT = "123456789012"  # the account moto's STS names for any credentials


@dataclass
class AwsServer:
    endpoint_url: str
    region: str
    account: str
    _none: str  # a path that does not exist: no shared AWS files from this machine

    def client(self, service: str) -> Any:
        return boto3.client(service, endpoint_url=self.endpoint_url, region_name=self.region,
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def env(self) -> dict[str, str]:
        """The environment a subprocess (the runproc CLI) needs to reach this server."""
        return {**FAKE_AWS_ENV, **self._extra()}

    def _extra(self) -> dict[str, str]:
        return {"AWS_ENDPOINT_URL": self.endpoint_url, "AWS_EC2_METADATA_DISABLED": "true",
                "AWS_CONFIG_FILE": self._none, "AWS_SHARED_CREDENTIALS_FILE": self._none}


@pytest.fixture(name="aws_server")
def aws_server_fixture(s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory,
               monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsServer]:
    none = str(Path(tmp_path_factory.getbasetemp()) / "no-aws-files")
    server = AwsServer(s3_server.endpoint_url, s3_server.region, MOTO_ACCOUNT, none)
    for key, value in server._extra().items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_ENDPOINT_URL_S3", "AWS_DATA_PATH"):
        monkeypatch.delenv(key, raising=False)
    yield server
