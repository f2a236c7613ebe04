"""Migrations in an S3 bucket, under an optional key prefix: the Lambda's source.

The only engine module that talks to AWS, through a client the edge makes (the
function's has short timeouts and one retry, so a function that cannot reach S3 fails in
seconds with that diagnosis instead of hanging until the Lambda times out).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    HTTPClientError,
    NoCredentialsError,
    SSLError,
)

from . import bundle
from .errors import SourceError
from .model import Entry, MigrationRef, parse_layout

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["BODIES", "GATHER_MAX_BYTES", "GATHER_MIN", "UNREACHABLE_HINT", "BodyCache", "S3Source", "normalize_prefix"]

log = logging.getLogger(__name__)

GATHER_MIN = 16
"""Files to read, at least, for the bundle to be read instead (fewer take one round of parallel reads)."""
GATHER_MAX_BYTES = 32 * 1024 * 1024
"""Bodies taken from the bundle and not yet read, at most: the rest is read file by file."""

UNREACHABLE_HINT = (
    "the function cannot reach S3: a Lambda in a VPC needs an S3 gateway endpoint "
    "(com.amazonaws.<region>.s3) on the route tables of its subnets, or a NAT; check the "
    "route tables and the endpoint's policy"
)
# What S3 answers, by error code: the message and the fix ({what}: the bucket or key).
MISSING_KEY = (
    "{what} does not exist (it was listed; was it deleted during the run?)",
    "upload the file again or run again",
)
DENIED = (
    "access to {what} was denied ({code})",
    "grant the function's role {grant} (and kms:Decrypt if the bucket uses a KMS key); "
    "check the bucket policy and the S3 endpoint's policy",
)
ANSWERS: dict[str, tuple[str, str | None]] = {
    "NoSuchBucket": (
        "bucket {bucket!r} does not exist (or is in another account)",
        "set MIGRATIONS_BUCKET to the bucket that holds the migrations",
    ),
    **dict.fromkeys(("NoSuchKey", "404", "NotFound"), MISSING_KEY),
    **dict.fromkeys(("AccessDenied", "403", "Forbidden", "AllAccessDisabled"), DENIED),
}


class BodyCache:
    """File bodies a warm process has read, by bucket, key and ETag: what S3 answered, never guessed.

    A body is stored under the ETag of the GetObject answer that carried it and found under
    the ETag the listing gives, so a hit is the very content the listing names: an object
    written again has another ETag and is read again. The engine already trusts an unchanged
    ETag for an applied file's checksum (``Runner._checksums``). Bounded: at most
    ``max_bytes`` in all, none over ``max_body``; the least recently used go first.
    """

    def __init__(self, max_bytes: int = 32 << 20, max_body: int = 1 << 20) -> None:
        self.max_bytes, self.max_body = max_bytes, max_body
        self._bodies: OrderedDict[tuple[str, str, str], bytes] = OrderedDict()
        self._held = 0
        self._lock = threading.Lock()

    def get(self, bucket: str, key: str, etag: str | None) -> bytes | None:
        if etag is None:
            return None
        with self._lock:
            body = self._bodies.get((bucket, key, etag))
            if body is not None:
                self._bodies.move_to_end((bucket, key, etag))
            return body

    def put(self, bucket: str, key: str, etag: str | None, body: bytes) -> None:
        if etag is None or len(body) > self.max_body:
            return
        with self._lock:
            if (bucket, key, etag) in self._bodies:
                return
            self._bodies[(bucket, key, etag)] = body
            self._held += len(body)
            while self._held > self.max_bytes:
                _, dropped = self._bodies.popitem(last=False)
                self._held -= len(dropped)

    def clear(self) -> None:
        with self._lock:
            self._bodies.clear()
            self._held = 0


BODIES = BodyCache()
"""The process's bodies: a warm function's invocations (a fleet's targets, a tenant group's
runs) read an unchanged file once."""


class S3Source:
    """Migration files stored as ``s3://<bucket>/<prefix><database>/<file>``.

    ``prefix`` is empty or ends in ``/`` (``normalize_prefix``: the edge normalizes it
    once, where it reads it). Keys in the returned refs are relative to the prefix (the
    same keys as in the repository's ``migrations/`` folder); ``read()`` takes such a
    key. ETags are kept without their quotes.

    Reads wait on the network, so the engine reads ahead (``prefetch.RemoteSource``):
    ``concurrent_reads`` is the client's connection pool; ``size(key)`` is the size the
    last listing gave. A file the process read before, unchanged since (the same ETag in
    the last listing), is not read again (``bodies``, by default the process's ``BODIES``).
    """

    def __init__(self, bucket: str, prefix: str, client: S3Client, *, bodies: BodyCache | None = None) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.origin = f"s3://{bucket}/{prefix}"
        self._client = client
        config: Any = client.meta.config  # the stubs name none of its settings
        self.concurrent_reads: int = config.max_pool_connections or 1
        self._sizes: dict[str, int] = {}
        self._etags: dict[str, str | None] = {}
        self._bodies = BODIES if bodies is None else bodies
        self._index: bundle.Index | None = None
        self._gathered: dict[str, bytes] = {}
        self._gather_lock = threading.Lock()

    def list(self) -> list[MigrationRef]:
        entries: list[Entry] = []
        sizes: dict[str, int] = {}
        etags: dict[str, str | None] = {}
        try:
            paginator = self._client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
                for item in page.get("Contents", []):
                    key = item["Key"][len(self.prefix) :]
                    if key:
                        etags[key] = _unquote(item.get("ETag"))
                        entries.append(Entry(key, etags[key]))
                        if "Size" in item:
                            sizes[key] = item["Size"]
        except (BotoCoreError, ClientError) as exc:
            raise self._error(exc, action="list") from exc
        self._sizes, self._etags = sizes, etags
        self._index, self._gathered = None, {}
        return parse_layout(entries, origin=self.origin)

    def size(self, key: str) -> int | None:
        return self._sizes.get(key)

    def read(self, key: str) -> bytes:
        name = self.prefix + key
        known = self._bodies.get(self.bucket, name, self._etags.get(key))
        if known is not None:
            return known
        gathered = self._gathered.pop(key, None)
        if gathered is not None:
            self._bodies.put(self.bucket, name, self._etags.get(key), gathered)
            return gathered
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=name)
            body: bytes = response["Body"].read()
        except (BotoCoreError, ClientError) as exc:
            raise self._error(exc, action="read", key=key) from exc
        self._bodies.put(self.bucket, name, _unquote(response.get("ETag")), body)
        return body

    def gather(self, keys: Sequence[str]) -> None:
        """Take the bodies of ``keys`` from the deploy's bundle, in a request per part, where it holds them unchanged.

        Only for at least GATHER_MIN keys not read before, and only when the last listing
        has the bundle's index. ``read`` then hands those bodies over; every other key is
        read from its own object. A bundle that cannot be read or parsed is logged and left.
        """
        with self._gather_lock:
            wanted = [
                key
                for key in keys
                if key not in self._gathered
                and self._bodies.get(self.bucket, self.prefix + key, self._etags.get(key)) is None
            ]
            index_etag = self._etags.get(bundle.INDEX_KEY)
            if len(wanted) < GATHER_MIN or not index_etag:
                return
            try:
                self._index = self._index or bundle.Index.parse(self._get(bundle.INDEX_KEY, etag=index_etag))
                held = sum(len(body) for body in self._gathered.values())
                places = self._index.wanted(wanted, self._etags, GATHER_MAX_BYTES - held)
                for part, placed in places.items():
                    first, data = 0, b""  # empty files only: no bytes to read
                    if (span := bundle.span(placed)) is not None:
                        first, last = span
                        named = self._index.parts[part]  # its ETag is the listing's (``wanted``): not replaced since
                        data = self._get(named.key, etag=named.etag, byte_range=f"bytes={first}-{last}")
                    self._gathered.update(bundle.unpack(self._index, placed, first, data))
            except (BotoCoreError, ClientError, ValueError) as exc:
                log.warning(
                    "the bundle at %s%s was not used, each file is read from its own object: %s",
                    self.origin,
                    bundle.INDEX_KEY,
                    exc,
                )
                return
            log.info(
                "%d of %d files to read taken from the bundle at %s%s in %d requests",
                len(set(wanted) & self._gathered.keys()),
                len(wanted),
                self.origin,
                bundle.INDEX_KEY,
                1 + len(places),
            )

    def _get(self, key: str, *, etag: str, byte_range: str = "") -> bytes:
        """The object ``key`` (or ``byte_range`` of it) if it still has ``etag``; S3 answers 412 if not."""
        name, quoted = self.prefix + key, f'"{etag}"'
        if byte_range:
            response = self._client.get_object(Bucket=self.bucket, Key=name, IfMatch=quoted, Range=byte_range)
        else:
            response = self._client.get_object(Bucket=self.bucket, Key=name, IfMatch=quoted)
        body: bytes = response["Body"].read()
        return body

    def _error(self, exc: BotoCoreError | ClientError, *, action: str, key: str | None = None) -> SourceError:
        what = self.origin + (key or "")
        if not isinstance(exc, ClientError):
            message, hint = self._unanswered(exc)
            unreachable = isinstance(exc, ConnectionError | HTTPClientError) and not isinstance(exc, SSLError)
            details: dict[str, Any] = {"unreachable": True} if unreachable else {}
            return SourceError(f"cannot {action} {what}: {message}", file=key, hint=hint, **details)
        error: dict[str, Any] = dict(exc.response.get("Error", {}))
        code = str(error.get("Code", "Unknown"))
        forbidden = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 403
        if code not in ANSWERS and not forbidden:
            message = str(error.get("Message", "")) or str(exc)
            return SourceError(f"cannot {action} {what}: S3 answered {code}: {message}", file=key)
        message, hint = ANSWERS.get(code, DENIED)
        grant = f"s3:ListBucket on arn:aws:s3:::{self.bucket}"
        if action == "read":
            grant = f"s3:GetObject on arn:aws:s3:::{self.bucket}/{self.prefix}*"
        facts = {"what": what, "code": code, "bucket": self.bucket, "grant": grant}
        return SourceError(message.format(**facts), file=key, hint=hint and hint.format(**facts))

    def _unanswered(self, exc: BotoCoreError) -> tuple[str, str | None]:
        """What a transport failure means, and its fix."""
        if isinstance(exc, SSLError):
            hint = "check AWS_CA_BUNDLE and any TLS-intercepting proxy between the function and S3"
            return f"the TLS handshake with S3 failed: {exc}", hint
        if isinstance(exc, ConnectionError | HTTPClientError):
            config: Any = self._client.meta.config  # the stubs name none of its settings
            attempts = (config.retries or {}).get("total_max_attempts", "several")
            limits = f"a {config.connect_timeout} s connect and {config.read_timeout} s read timeout"
            return f"S3 did not answer ({type(exc).__name__}) after {attempts} attempts with {limits}", UNREACHABLE_HINT
        if isinstance(exc, NoCredentialsError):
            return "no AWS credentials", "run with an IAM role (the function's execution role) or set AWS credentials"
        return str(exc), None


def normalize_prefix(prefix: str) -> str:
    """``migrations`` and ``/migrations/`` both become ``migrations/``; empty stays empty."""
    prefix = prefix.strip("/")
    return f"{prefix}/" if prefix else ""


def _unquote(etag: str | None) -> str | None:
    return etag.strip('"') if etag else None
