"""The run's lock: one session-level advisory lock on the root database.

Taken on a connection of its own, in autocommit, before anything else, and held for
the whole run, so that a deploy-time run, an S3-event run and a person never apply
the same file twice. That connection never opens a transaction (CREATE INDEX
CONCURRENTLY waits for every open transaction, so a lock held inside one would
deadlock the run with itself). If the process dies the server ends the session and
the lock with it: there is no row to break by hand. The wait is bounded: the lock is
polled with ``pg_try_advisory_lock`` until a deadline, and who holds it is reported.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from .db import Connection
from .errors import LockTimeoutError

__all__ = ["advisory_lock", "lock_key"]

HOLDER_QUERY = """
SELECT a.pid, a.application_name, host(a.client_addr), a.backend_start, a.usename
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted
  AND l.classid = %(high)s AND l.objid = %(low)s AND l.objsubid = 1
LIMIT 1
"""


def lock_key(namespace: str) -> int:
    """A stable signed 64-bit key for ``namespace`` (the history schema name)."""
    digest = hashlib.sha256(f"dbmigrate:{namespace}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def describe_holder(conn: Connection, key: int) -> str:
    """Who holds the lock, e.g. ``pid 123 (dbmigrate, 10.0.1.5, since 12:00:01Z)``."""
    unsigned = key & 0xFFFFFFFFFFFFFFFF
    with conn.cursor() as cur:
        cur.execute(HOLDER_QUERY, {"high": unsigned >> 32, "low": unsigned & 0xFFFFFFFF})
        row = cur.fetchone()
    if not row:
        return "another session"
    pid, application, address, since, user = row
    return (
        f"pid {pid} ({application or 'unnamed'} as {user}"
        f"{' from ' + address if address else ''}, connected since {since:%Y-%m-%d %H:%M:%S%z})"
    )


@contextmanager
def advisory_lock(
    conn: Connection,
    key: int,
    *,
    wait_s: float,
    on_wait: Callable[[dict[str, Any]], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[float]:
    """Hold the lock for the ``with`` block; yields the seconds spent waiting for it.

    Raises LockTimeoutError naming the holder when it is not free within ``wait_s``.
    """
    start = clock()
    deadline = start + wait_s
    delay = 0.05
    announced = False
    with conn.cursor() as cur:
        while True:
            cur.execute("SELECT pg_try_advisory_lock(%s)", (key,))
            row = cur.fetchone()
            if row and row[0]:
                break
            holder = describe_holder(conn, key)
            if not announced and on_wait:
                on_wait({"event": "lock_wait", "holder": holder, "max_wait_s": round(wait_s, 1)})
                announced = True
            now = clock()
            if now >= deadline:
                raise LockTimeoutError(
                    f"another migration run holds the lock: {holder}; gave up after {now - start:.1f} s",
                    hint="wait for that run to finish and try again, or allow a longer wait "
                    "(--lock-wait, LOCK_WAIT_S); a run that died releases the lock by itself",
                    holder=holder,
                )
            time.sleep(min(delay, deadline - now))
            delay = min(delay * 2, 1.0)
    waited = clock() - start
    try:
        yield waited
    finally:
        if not conn.closed:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock(%s)", (key,))
