"""The function's AWS clients: one per process and configuration, made once even when asked from many threads."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import aws_clients
from aws_clients import aws_client


def test_a_client_is_made_once_per_service_and_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAONECALLER")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "one")
    s3 = aws_client("s3")
    assert aws_client("s3") is s3
    assert aws_client("secretsmanager") is not s3
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-2")
    moved = aws_client("s3")
    assert moved is not s3
    assert (s3.meta.region_name, moved.meta.region_name) == ("eu-west-1", "us-east-2")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAOTHERCALLER")  # other credentials, another client
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "other")
    assert aws_client("s3") is not moved


def test_threads_asking_at_once_share_one_client(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_ACCESS_KEY_ID": "AKIA1",
        "AWS_SECRET_ACCESS_KEY": "x",
    }.items():
        monkeypatch.setenv(name, value)
    made: list[str] = []
    make = aws_clients.new_client

    def slow(service: str) -> Any:
        made.append(service)
        return make(service)

    monkeypatch.setattr(aws_clients, "new_client", slow)
    start = threading.Barrier(8)
    got: list[Any] = []

    def ask() -> None:
        start.wait()
        got.append(aws_client("s3"))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert made == ["s3"]
    assert len({id(client) for client in got}) == 1
