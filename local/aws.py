"""In-process AWS stand-ins: a moto server on 127.0.0.1 for S3, SNS, SQS and Secrets Manager.

Code under test reaches it through the standard ``AWS_ENDPOINT_URL`` variable (see
``environ``), with fake credentials; nothing ever leaves this machine.
"""

from __future__ import annotations

import logging
import os
import urllib.request
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from typing import TYPE_CHECKING, Any

import boto3.session
from moto.server import ThreadedMotoServer

from dbmigrate import bundle

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sns import SNSClient

__all__ = ["LocalAws", "reset_moto"]

FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}


class LocalAws:
    """A moto server for one region; ``environ`` points boto3 (in any process) at it.

    The one AWS stand-in of the local deploy and the tests; ``bucket`` and ``upload`` set
    up what a test needs, through the same clients the deploy uses.
    """

    def __init__(self, region: str, *, port: int = 0) -> None:
        """``port`` 0 (the default) takes the port the kernel gives the server as it starts: a
        port chosen before the server binds it can be taken meanwhile by another process (a
        second test session, a test's own socket), and the server's thread would then never
        come up. A server started elsewhere (``bench.s3_latency``'s child) is given its port."""
        self.region = region
        self.port = port
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)

    @property
    def endpoint(self) -> str:
        if not self.port:
            raise RuntimeError("LocalAws: the server has no port until start()")
        return f"http://127.0.0.1:{self.port}"

    @property
    def environ(self) -> dict[str, str]:
        return {
            **FAKE_CREDENTIALS,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            # A developer's own AWS configuration must not leak into what runs here.
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }

    def start(self) -> LocalAws:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request otherwise
        self._server.start()
        self.port = self._server.get_host_and_port()[1]
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> LocalAws:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self, region: str | None = None) -> LocalAws:
        """Forget every bucket, topic and secret (between tests); serve ``region`` from now on if given."""
        reset_moto(self.endpoint)
        self.region = region or self.region
        return self

    def bucket(self, name: str) -> str:
        """Create the bucket ``name`` in this region; its name."""
        location: Any = {"LocationConstraint": self.region} if self.region != "us-east-1" else {}
        self.s3.create_bucket(Bucket=name, CreateBucketConfiguration=location)
        return name

    def upload(self, bucket: str, files: Mapping[str, str | bytes], prefix: str = "", *, bundled: bool = False) -> None:
        """Put each ``key: body`` of ``files`` under ``prefix`` (in parallel: thousands for the paging tests).

        ``bundled``: as the stack's objects do (``infra/bucket.py``): each file with its
        SHA-256 checksum, then their bundle (``put_bundle``).
        """
        bodies = {key: body.encode() if isinstance(body, str) else body for key, body in files.items()}
        extra: dict[str, Any] = {"ChecksumAlgorithm": "SHA256"} if bundled else {}

        def put(item: tuple[str, bytes]) -> tuple[str, tuple[bytes, Any]]:
            key, body = item
            return key, (body, self.s3.put_object(Bucket=bucket, Key=prefix + key, Body=body, **extra))

        with ThreadPoolExecutor(16) as pool:
            answers = dict(pool.map(put, bodies.items()))
        if bundled:
            self.put_bundle(bucket, prefix, answers)

    def put_bundle(self, bucket: str, prefix: str, files: Mapping[str, tuple[bytes, Mapping[str, Any]]]) -> None:
        """The bundle of ``files`` (each key's body and what its put answered), as the stack writes it.

        The parts, then the index naming each object by the ETag and SHA-256 checksum its put
        answered (``dbmigrate.bundle``).
        """
        keys = sorted(files)
        parts, placed = bundle.pack([(key, files[key][0]) for key in keys])
        put = [
            bundle.Part(
                part.key, self.s3.put_object(Bucket=bucket, Key=prefix + part.key, Body=part.body)["ETag"].strip('"')
            )
            for part in parts
        ]
        etags = {key: str(files[key][1]["ETag"]).strip('"') for key in keys}
        checksums = {key: str(files[key][1].get("ChecksumSHA256", "")) for key in keys}
        index = bundle.index_text(placed, put, etags, checksums)
        self.s3.put_object(Bucket=bucket, Key=prefix + bundle.INDEX_KEY, Body=index.encode())

    def client(self, service: str) -> Any:
        session: Any = boto3.session.Session()
        return session.client(
            service,
            region_name=self.region,
            endpoint_url=self.endpoint,
            aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

    @cached_property
    def s3(self) -> S3Client:
        client: S3Client = self.client("s3")
        return client

    @cached_property
    def sns(self) -> SNSClient:
        client: SNSClient = self.client("sns")
        return client

    @cached_property
    def secretsmanager(self) -> SecretsManagerClient:
        client: SecretsManagerClient = self.client("secretsmanager")
        return client

    @cached_property
    def sqs(self) -> Any:  # no type stubs for SQS in the environment
        return self.client("sqs")


# Forgetting thousands of objects (the pagination tests) takes seconds on a loaded 2-core
# machine running two test sessions side by side: a set-up step, not something timed.
RESET_TIMEOUT_S = 60


def reset_moto(endpoint: str) -> None:
    """Forget everything a moto server holds."""
    request = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=RESET_TIMEOUT_S):
        pass
