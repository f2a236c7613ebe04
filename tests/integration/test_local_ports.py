"""The stand-ins' ports cannot be taken from under them by another process (a second test
session beside this one, a test's own socket): the kernel's port is used where it can be, and
a port chosen before a server binds it is chosen again when it was taken meanwhile."""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Iterator

import psycopg2
import pytest

import local.postgres
from local import net
from local.aws import LocalAws
from local.postgres import EmbeddedPostgres

pytestmark = pytest.mark.any_pg_version("which port a stand-in listens on, not what the server does there")


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port another process listens on, as one that took it a moment after free_port chose it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        yield listener.getsockname()[1]


def test_a_server_whose_chosen_port_was_taken_starts_on_another_and_keeps_it_on_restart(
    taken_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    ports = iter([taken_port, net.free_port()])
    monkeypatch.setattr(local.postgres, "free_port", lambda: next(ports))
    server = EmbeddedPostgres(tls=False)
    try:
        server.start()
        assert server.port != taken_port
        started_on = server.port
        server.restart()
        assert server.port == started_on
        with psycopg2.connect(server.dsn()) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
            assert cur.fetchone() == (1,)
    finally:
        server.destroy()


def test_a_server_given_a_port_that_is_taken_fails_naming_it_and_takes_no_other(taken_port: int) -> None:
    server = EmbeddedPostgres(port=taken_port, tls=False)
    try:
        with pytest.raises(RuntimeError, match="Address already in use"):
            server.start()
        assert server.port == taken_port
    finally:
        server.destroy()


def test_two_moto_servers_get_their_own_ports_from_the_kernel() -> None:
    first, second = LocalAws("us-east-1"), LocalAws("eu-west-1")
    with pytest.raises(RuntimeError, match="no port until start"):
        first.endpoint  # noqa: B018  (the property raises)
    with first, second:
        assert first.port != second.port and 0 not in (first.port, second.port)
        for aws in (first, second):
            assert aws.environ["AWS_ENDPOINT_URL"] == aws.endpoint
            aws.reset()
            assert aws.s3.list_buckets()["Buckets"] == []
            with urllib.request.urlopen(f"{aws.endpoint}/moto-api/data.json", timeout=10) as answer:
                assert answer.status == 200


def test_a_refusing_port_refuses_and_cannot_be_taken_while_it_is_held() -> None:
    with net.refusing_port() as port:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other, pytest.raises(OSError, match="in use"):
            other.bind(("127.0.0.1", port))
