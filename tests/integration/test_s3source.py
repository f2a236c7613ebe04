"""What only the S3 source does: prefixes, and errors that name the bucket and the fix.

Pagination is in the conformance suite (moto pages at 1,000 keys like S3).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest

from aws_clients import CLIENT_CONFIG, aws_client
from dbmigrate.errors import SourceError
from dbmigrate.s3source import S3Source
from local.aws import LocalAws
from tests.integration.aws import REGION

BUCKET = "acme-dbmigrate-migrations"


def client(endpoint: str) -> Any:
    """An S3 client for ``endpoint`` with credentials of its own (no test's environment needed)."""
    return boto3.client(
        "s3",
        region_name=REGION,
        endpoint_url=endpoint,
        config=CLIENT_CONFIG,
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


def test_the_prefix_is_a_folder_not_a_start_of_keys(aws: LocalAws) -> None:
    aws.bucket(BUCKET)
    aws.upload(BUCKET, {"migrations/projectdb/1_a.up.sql": "SELECT 1;", "migrations-old/projectdb/2_b.up.sql": "x"})
    source = S3Source(BUCKET, "migrations/", aws_client("s3"))
    assert source.origin == f"s3://{BUCKET}/migrations/"
    assert [ref.key for ref in source.list()] == ["projectdb/1_a.up.sql"]


def test_no_prefix_means_the_bucket_root(aws: LocalAws) -> None:
    aws.bucket(BUCKET)
    aws.upload(BUCKET, {"projectdb/1_a.up.sql": "SELECT 1;"})
    source = S3Source(BUCKET, "", aws_client("s3"))
    assert source.origin == f"s3://{BUCKET}/"
    assert source.read(source.list()[0].key) == b"SELECT 1;"


def test_a_missing_bucket_is_named_with_the_setting_to_fix(aws: LocalAws) -> None:
    with pytest.raises(SourceError) as caught:
        S3Source("no-such-bucket-here", "", aws_client("s3")).list()
    assert "bucket 'no-such-bucket-here' does not exist" in str(caught.value)
    assert "MIGRATIONS_BUCKET" in str(caught.value)


class AccessDenied(BaseHTTPRequestHandler):
    """Answers every request as S3 does when the role lacks the permission."""

    BODY = (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
        b"<Message>Access Denied</Message><RequestId>7Q1SXA9FJ3BQ</RequestId><HostId>x</HostId></Error>"
    )

    def do_GET(self) -> None:
        self.send_response(403)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(self.BODY)))
        self.end_headers()
        self.wfile.write(self.BODY)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def denying_endpoint() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), AccessDenied)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_access_denied_on_listing_names_the_permission_to_grant(denying_endpoint: str) -> None:
    with pytest.raises(SourceError) as caught:
        S3Source(BUCKET, "migrations/", client(denying_endpoint)).list()
    message = str(caught.value)
    assert f"access to s3://{BUCKET}/migrations/ was denied (AccessDenied)" in message
    assert f"s3:ListBucket on arn:aws:s3:::{BUCKET}" in message


def test_access_denied_on_reading_names_the_key_and_the_permission(denying_endpoint: str) -> None:
    with pytest.raises(SourceError) as caught:
        S3Source(BUCKET, "migrations/", client(denying_endpoint)).read("projectdb/1_a.up.sql")
    assert caught.value.file == "projectdb/1_a.up.sql"
    assert f"s3:GetObject on arn:aws:s3:::{BUCKET}/migrations/*" in str(caught.value)


def test_unreachable_s3_fails_saying_the_vpc_needs_a_gateway_endpoint(refusing_endpoint: str) -> None:
    # test_handler.py times both an endpoint that refuses and one that never answers.
    source = S3Source(BUCKET, "migrations/", client(refusing_endpoint))
    started = time.monotonic()
    with pytest.raises(SourceError) as caught:
        source.list()
    elapsed = time.monotonic() - started
    assert elapsed < 10
    assert "the function cannot reach S3" in str(caught.value)
    assert "S3 gateway endpoint" in str(caught.value)
    assert caught.value.details["unreachable"] is True
