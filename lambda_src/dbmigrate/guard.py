"""A client-side guard for the statement a run has in flight.

TCP keepalives and ``tcp_user_timeout`` notice a peer that is gone, but not a path that
still acknowledges packets and forwards nothing (a proxy or NAT that stopped
forwarding): the client would wait for its result forever. While a file runs, the
guard asks the server through the lock's connection, every ``timeout_s``, whether the
file's session is still executing. When that question gets no answer within
``timeout_s``, or the server says twice in a row that the session has been done (or is
gone) while the client still waits, the guard cuts the connections (shuts their
sockets), so the run fails at once with the reason in ``Guard.reason``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from contextlib import suppress
from types import TracebackType
from typing import Any

import psycopg2

from .db import Connection

__all__ = ["Guard", "cut"]

log = logging.getLogger(__name__)

PROBE_QUERY = "SELECT state, query_start FROM pg_stat_activity WHERE pid = %s"


def cut(conn: Connection) -> None:
    """Shut the connection's socket: a thread blocked reading it gets an error at once."""
    with suppress(OSError, psycopg2.Error):
        sock = socket.socket(fileno=os.dup(conn.fileno()))
        try:
            sock.shutdown(socket.SHUT_RDWR)
        finally:
            sock.close()


class Guard:
    """Watches ``busy()`` (the connection of the file in flight, or None) from a thread of its own."""

    def __init__(self, probe_conn: Connection, busy: Callable[[], Connection | None], *, timeout_s: float) -> None:
        self.probe_conn = probe_conn
        self.busy = busy
        self.timeout_s = timeout_s
        self.reason: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="dbmigrate-guard", daemon=True)

    def __enter__(self) -> Guard:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=self.timeout_s + 1)

    def _watch(self) -> None:
        watched: Connection | None = None
        last: Any = None
        while not self._stop.wait(self.timeout_s):
            conn = self.busy()
            if conn is None or conn.closed:
                watched, last = None, None
                continue
            if conn is not watched:
                watched, last = conn, None
            answered, row = self._probe(conn.get_backend_pid())
            if not answered:
                self._cut(conn, f"the server did not answer for {self.timeout_s:g} s (network or server hung)")
                cut(self.probe_conn)
                return
            if row is None or row[0] == "idle":
                if row is None or row == last:
                    what = "ended the session" if row is None else "finished the statement"
                    self._cut(conn, f"the server {what} but its answer never arrived (the connection hung)")
                    return
                last = row
            else:
                last = None

    def _probe(self, pid: int) -> tuple[bool, Any]:
        """(answered in time, the session's (state, query_start) or None); an error counts as answered."""
        result: dict[str, Any] = {"row": ("unknown", None)}

        def ask() -> None:
            try:
                with self.probe_conn.cursor() as cur:
                    cur.execute(PROBE_QUERY, (pid,))
                    result["row"] = cur.fetchone()
            except psycopg2.Error:
                pass  # the lock's connection failed: the run finds that out before the next file

        asker = threading.Thread(target=ask, name="dbmigrate-probe", daemon=True)
        asker.start()
        asker.join(self.timeout_s)
        return not asker.is_alive(), result["row"]

    def _cut(self, conn: Connection, reason: str) -> None:
        log.warning("cutting a connection of the run: %s", reason)
        self.reason = reason
        cut(conn)
