"""The function's AWS clients: short timeouts and one retry, so an unreachable service fails in seconds.

A function that cannot reach S3 (a VPC with no S3 gateway endpoint) or Secrets Manager
then fails with that diagnosis instead of hanging until the Lambda times out. Standard
AWS configuration applies (region, credentials, ``AWS_ENDPOINT_URL_S3``).
"""

from __future__ import annotations

import os
import threading
from typing import Any

import botocore.session
from botocore.config import Config

from dbmigrate.prefetch import DEFAULT_WORKERS

__all__ = ["CLIENT_CONFIG", "aws_client", "new_client"]

CONNECT_TIMEOUT_S = 3
READ_TIMEOUT_S = 3
MAX_ATTEMPTS = 2  # the first call and one retry

CLIENT_CONFIG = Config(
    connect_timeout=CONNECT_TIMEOUT_S,
    read_timeout=READ_TIMEOUT_S,
    retries={"total_max_attempts": MAX_ATTEMPTS, "mode": "standard"},
    max_pool_connections=DEFAULT_WORKERS,
)
"""Worst case about 2 x 3 s plus one back-off. One connection per file read ahead (dbmigrate.prefetch)."""


_clients: dict[tuple[str, ...], Any] = {}
_made = threading.Lock()


def aws_client(service: str) -> Any:
    """The process's client for ``service`` with the fast-failing settings.

    Made once per process and configuration: a warm function's invocations reuse it (and its
    pooled connections) instead of paying 40-160 ms for a new one each time. The key is the
    service with every ``AWS_*`` variable, so a changed region, endpoint or credentials (as
    the tests change them) gets a client of its own. botocore clients are thread-safe; making
    one is not, hence the lock."""
    key = (service, *sorted(f"{name}={value}" for name, value in os.environ.items() if name.startswith("AWS_")))
    with _made:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = new_client(service)
    return client


def new_client(service: str) -> Any:
    """From botocore directly: boto3 would also load s3transfer, about 100 ms of the function's
    cold start for nothing it uses. Timestamps stay text: nothing here reads them, and parsing
    every LastModified of a 1,000-key listing page costs about 100 ms."""
    session = botocore.session.get_session()
    session.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=str)
    return session.create_client(service, config=CLIENT_CONFIG)
