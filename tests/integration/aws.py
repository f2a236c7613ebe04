"""AWS stand-ins for the tests (a pytest plugin, registered in tests/conftest.py).

``moto_server`` is the local deploy's own stand-in (``local.aws.LocalAws``), one per
session; ``aws`` resets it and points the standard AWS environment variables at it (so
boto3 in the code under test and in a subprocess reach it through ``AWS_ENDPOINT_URL``).
``unanswering_endpoint`` and ``refusing_endpoint`` stand for an S3 the function cannot
reach: a listener that accepts and never answers, and a port where nothing listens.
The Lambda context is the local runtime's (``local.lambda_runtime.Context``).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Final

import pytest

from local.aws import LocalAws
from local.net import refusing_port

__all__ = ["REGION", "aws", "moto_server", "refusing_endpoint", "unanswering_endpoint"]

REGION: Final = "eu-west-1"


@pytest.fixture(scope="session")
def moto_server() -> Iterator[LocalAws]:
    """A moto server on 127.0.0.1 that lives for the session (reset it before use)."""
    with LocalAws(REGION) as server:
        yield server


@pytest.fixture
def aws(moto_server: LocalAws, monkeypatch: pytest.MonkeyPatch) -> LocalAws:
    """A clean moto server, and the AWS environment variables pointing at it."""
    moto_server.reset(REGION)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_SECRETS_MANAGER"):
        monkeypatch.delenv(name, raising=False)
    for name, value in moto_server.environ.items():
        monkeypatch.setenv(name, value)
    return moto_server


@pytest.fixture
def unanswering_endpoint() -> Iterator[str]:
    """An HTTP endpoint on 127.0.0.1 that accepts connections and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


@pytest.fixture
def refusing_endpoint() -> Iterator[str]:
    """An HTTP endpoint on 127.0.0.1 where nothing listens: connections are refused."""
    with refusing_port() as port:
        yield f"http://127.0.0.1:{port}"
