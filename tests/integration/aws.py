"""AWS stand-ins for the integration tests: a moto server on 127.0.0.1, and the Lambda context.

``moto_endpoint`` starts one moto server per session; ``aws`` points the standard AWS
environment variables at it (so boto3 in the code under test and in a subprocess
reach it through ``AWS_ENDPOINT_URL``), with fake credentials, and resets its state.
``unanswering_endpoint`` and ``refusing_endpoint`` stand for an S3 the function cannot
reach: a listener that accepts and never answers, and a port where nothing listens.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

import boto3
import pytest
from moto.server import ThreadedMotoServer

from local.aws import reset_moto
from local.net import free_port

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_secretsmanager import SecretsManagerClient

__all__ = ["Aws", "FakeContext", "aws", "moto_endpoint", "refusing_endpoint", "unanswering_endpoint"]

REGION: Final = "eu-west-1"
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


@dataclass
class Aws:
    """The moto server as the code under test sees it, with clients for the test's own setup."""

    endpoint: str
    environ: dict[str, str]
    s3: S3Client
    secretsmanager: SecretsManagerClient

    def bucket(self, name: str) -> str:
        self.s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
        return name

    def upload(self, bucket: str, files: Mapping[str, str | bytes], prefix: str = "") -> None:
        def put(item: tuple[str, str | bytes]) -> None:
            key, body = item
            self.s3.put_object(Bucket=bucket, Key=prefix + key, Body=body.encode() if isinstance(body, str) else body)

        with ThreadPoolExecutor(16) as pool:
            list(pool.map(put, files.items()))


@dataclass
class FakeContext:
    """The attributes of the Lambda context object the handler reads."""

    function_name: str = "acme-dbmigrate"
    aws_request_id: str = "4f2a7c1e-0000-4000-8000-000000000001"
    remaining_ms: int = 300_000
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:123456789012:function:acme-dbmigrate"
    memory_limit_in_mb: int = 256
    calls: list[int] = field(default_factory=list)

    def get_remaining_time_in_millis(self) -> int:
        self.calls.append(self.remaining_ms)
        return self.remaining_ms


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """``http://127.0.0.1:<port>`` of a moto server that lives for the session."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Aws:
    """A clean moto server, and the AWS environment variables pointing at it."""
    reset_moto(moto_endpoint)
    environ = {
        **FAKE_CREDENTIALS,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_ENDPOINT_URL": moto_endpoint,
        # A developer's own AWS configuration must not leak into the tests.
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
    }
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_SECRETS_MANAGER"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    return Aws(
        moto_endpoint,
        environ,
        boto3.client("s3", region_name=REGION, endpoint_url=moto_endpoint),
        boto3.client("secretsmanager", region_name=REGION, endpoint_url=moto_endpoint),
    )


@pytest.fixture
def unanswering_endpoint() -> Iterator[str]:
    """An HTTP endpoint on 127.0.0.1 that accepts connections and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


@pytest.fixture
def refusing_endpoint() -> str:
    """An HTTP endpoint on 127.0.0.1 where nothing listens: connections are refused."""
    return f"http://127.0.0.1:{free_port()}"
