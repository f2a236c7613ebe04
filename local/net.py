"""The port helpers of the stand-ins and the tests (loopback only)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["free_port", "refusing_port"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago, for a server that must be
    told its port (PostgreSQL): another process may take it before the server binds it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def refusing_port() -> Iterator[int]:
    """A TCP port on 127.0.0.1 where connections are refused at once, for as long as the context
    lasts: held bound and never listened on, so no other process (a second test session, a
    server of this one) can take it meanwhile, as it could a port merely found free."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        yield port
