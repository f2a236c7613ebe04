"""Migrations in an S3 bucket, under an optional key prefix: the Lambda's source.

The only engine module that talks to AWS (through botocore, which boto3 is built on).
The client has short timeouts and one retry, so a function that cannot reach S3 (a VPC
with no S3 gateway endpoint) fails in seconds with that diagnosis instead of hanging until the Lambda times out.
Standard AWS configuration applies (region, credentials, ``AWS_ENDPOINT_URL_S3``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import botocore.session
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    HTTPClientError,
    NoCredentialsError,
    SSLError,
)

from .errors import ConfigError, SourceError
from .model import Entry, MigrationRef, parse_layout

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["CLIENT_CONFIG", "UNREACHABLE_HINT", "S3Source", "aws_client", "fast_client_config", "normalize_prefix"]

CONNECT_TIMEOUT_S = 3
READ_TIMEOUT_S = 3
MAX_ATTEMPTS = 2  # the first call and one retry

UNREACHABLE_HINT = (
    "the function cannot reach S3: a Lambda in a VPC needs an S3 gateway endpoint "
    "(com.amazonaws.<region>.s3) on the route tables of its subnets, or a NAT; check the "
    "route tables and the endpoint's policy"
)


def aws_client(service: str) -> Any:
    """A client with the fast-failing settings, from botocore directly: boto3 would also load
    s3transfer, about 100 ms of the function's cold start for nothing it uses. Timestamps
    stay text: nothing here reads them, and parsing every LastModified of a 1,000-key
    listing page costs about 100 ms."""
    session = botocore.session.get_session()
    session.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=str)
    return session.create_client(service, config=fast_client_config())


def fast_client_config() -> Config:
    """Client settings that fail within seconds: worst case about 2 x 3 s plus one back-off."""
    return Config(
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=READ_TIMEOUT_S,
        retries={"total_max_attempts": MAX_ATTEMPTS, "mode": "standard"},
    )


CLIENT_CONFIG = fast_client_config()


class S3Source:
    """Migration files stored as ``s3://<bucket>/<prefix><database>/<file>``.

    Keys in the returned refs are relative to the prefix (the same keys as in the
    repository's ``migrations/`` folder); ``read()`` takes such a key. ETags are kept
    without their quotes. ``client`` defaults to a boto3 S3 client with short timeouts.
    """

    def __init__(self, bucket: str, prefix: str = "", client: S3Client | None = None) -> None:
        if not bucket:
            raise ConfigError("no bucket given for the S3 migration source", hint="set MIGRATIONS_BUCKET")
        self.bucket = bucket
        self.prefix = normalize_prefix(prefix)
        self.origin = f"s3://{bucket}/{self.prefix}"
        self._client: S3Client = client or aws_client("s3")

    def list(self) -> list[MigrationRef]:
        entries: list[Entry] = []
        try:
            paginator = self._client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
                for item in page.get("Contents", []):
                    key = item["Key"][len(self.prefix) :]
                    if key:
                        entries.append(Entry(key, _unquote(item.get("ETag"))))
        except (BotoCoreError, ClientError) as exc:
            raise self._error(exc, action="list") from exc
        return parse_layout(entries, origin=self.origin)

    def read(self, key: str) -> bytes:
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=self.prefix + key)
            body: bytes = response["Body"].read()
        except (BotoCoreError, ClientError) as exc:
            raise self._error(exc, action="read", key=key) from exc
        return body

    def _error(self, exc: BotoCoreError | ClientError, *, action: str, key: str | None = None) -> SourceError:
        what = f"{self.origin}{key}" if key else self.origin
        if isinstance(exc, SSLError):
            return SourceError(
                f"cannot {action} {what}: the TLS handshake with S3 failed: {exc}",
                file=key,
                hint="check AWS_CA_BUNDLE and any TLS-intercepting proxy between the function and S3",
            )
        if isinstance(exc, ConnectionError | HTTPClientError):
            return SourceError(
                f"cannot {action} {what}: S3 did not answer ({type(exc).__name__}) after "
                f"{MAX_ATTEMPTS} attempts with a {CONNECT_TIMEOUT_S} s connect and {READ_TIMEOUT_S} s read timeout",
                file=key,
                hint=UNREACHABLE_HINT,
                unreachable=True,
            )
        if isinstance(exc, NoCredentialsError):
            return SourceError(
                f"cannot {action} {what}: no AWS credentials",
                file=key,
                hint="run with an IAM role (the function's execution role) or set AWS credentials",
            )
        if not isinstance(exc, ClientError):
            return SourceError(f"cannot {action} {what}: {exc}", file=key)
        error: dict[str, Any] = dict(exc.response.get("Error", {}))
        code = str(error.get("Code", "Unknown"))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code == "NoSuchBucket":
            return SourceError(
                f"bucket {self.bucket!r} does not exist (or is in another account)",
                hint="set MIGRATIONS_BUCKET to the bucket that holds the migrations",
            )
        if code in ("NoSuchKey", "404", "NotFound"):
            return SourceError(
                f"{what} does not exist (it was listed; was it deleted during the run?)",
                file=key,
                hint="upload the file again or run again",
            )
        if code in ("AccessDenied", "403", "Forbidden", "AllAccessDisabled") or status == 403:
            grant = (
                f"s3:ListBucket on arn:aws:s3:::{self.bucket}"
                if action == "list"
                else f"s3:GetObject on arn:aws:s3:::{self.bucket}/{self.prefix}*"
            )
            return SourceError(
                f"access to {what} was denied ({code})",
                file=key,
                hint=f"grant the function's role {grant} (and kms:Decrypt if the bucket uses a KMS key); "
                "check the bucket policy and the S3 endpoint's policy",
            )
        message = str(error.get("Message", "")) or str(exc)
        return SourceError(f"cannot {action} {what}: S3 answered {code}: {message}", file=key)


def normalize_prefix(prefix: str) -> str:
    """``migrations`` and ``/migrations/`` both become ``migrations/``; empty stays empty."""
    prefix = prefix.strip("/")
    return f"{prefix}/" if prefix else ""


def _unquote(etag: str | None) -> str | None:
    return etag.strip('"') if etag else None
