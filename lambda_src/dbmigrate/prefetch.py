"""Reading ahead: the bodies of the files a run will apply, fetched in parallel while earlier ones apply.

A read from S3 waits tens of milliseconds on the network; one file after another, those
waits are most of a first deploy. ``ReadAhead`` stands in for a source's ``read``: told
the keys a run will read, in order (``ahead``), it fetches them a few at a time on
threads of its own, and ``read(key)`` hands each body over when the run reaches it.
A folder on disk gains nothing from this: only a source that says its reads wait on a
network (``RemoteSource``) is read ahead.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from types import TracebackType
from typing import Protocol, runtime_checkable

from .sources import MigrationSource

__all__ = ["DEFAULT_MAX_BYTES", "DEFAULT_MAX_FILES", "DEFAULT_WORKERS", "ReadAhead", "RemoteSource"]

DEFAULT_WORKERS = 8
"""Reads in flight at once (the function's S3 client holds as many connections: aws_clients.py)."""
DEFAULT_MAX_BYTES = 32 * 1024 * 1024
"""Bytes held at once: bodies being fetched (by their listed size) or fetched and not yet read."""
DEFAULT_MAX_FILES = 64
"""Files held at once, the same way."""
THREAD_NAME = "dbmigrate-read-ahead"


@runtime_checkable
class RemoteSource(Protocol):
    """A source whose reads wait on a network, so that reading several at once pays.

    ``concurrent_reads`` is how many reads it serves at once (its client's connections);
    ``size(key)`` is the size its listing gave for ``key``, or None when it does not know.
    """

    concurrent_reads: int

    def size(self, key: str) -> int | None: ...


class _State(Enum):
    QUEUED = "queued"
    FETCHING = "fetching"
    READY = "ready"
    TAKEN = "taken"  # handed over, or read plainly: never fetched again


@dataclass
class _Slot:
    state: _State = _State.QUEUED
    held: int = 0  # bytes counted against the budget: the listed size, then the body's
    body: bytes | None = None
    error: BaseException | None = None


class ReadAhead:
    """``source.read``, with the bodies of the keys given to ``ahead`` fetched before they are asked for.

    ``read(key)`` returns what ``source.read(key)`` returns, or raises the same error
    (a SourceError naming the key), and only when that key is read: the keys before it
    are handed over first. After a failed read nothing further is fetched. Each key given
    to ``ahead`` is fetched at most once; a key not given (or read again) is read plainly.
    At most ``workers`` reads are in flight and at most ``max_files`` files and
    ``max_bytes`` bytes are held (a file bigger than that is fetched alone).
    ``close()`` (leaving ``with``) starts nothing new, waits for the reads in flight (the
    client's timeouts bound them) and drops what was not read: no thread is left reading.
    """

    def __init__(
        self,
        source: MigrationSource,
        *,
        workers: int = DEFAULT_WORKERS,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_files: int = DEFAULT_MAX_FILES,
    ) -> None:
        self._read = source.read
        self._gather = getattr(source, "gather", None)
        self._source: RemoteSource | None = source if isinstance(source, RemoteSource) else None
        self._workers = min(workers, self._source.concurrent_reads) if self._source else 0
        self._max_bytes = max_bytes
        self._max_files = max(1, max_files)
        self._cond = threading.Condition()
        self._keys: list[str] = []
        self._next = 0  # index in _keys of the next key to fetch
        self._slots: dict[str, _Slot] = {}
        self._held_files = 0
        self._held_bytes = 0
        self._running = 0
        self._threads: list[threading.Thread] = []
        self._stopped = False
        self._failed = False

    def __enter__(self) -> ReadAhead:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def ahead(self, keys: Sequence[str]) -> None:
        """Start fetching ``keys``, in this order, after any given before (nothing for a local source).

        A source that can read many keys in fewer requests (``gather``: a bucket with the
        deploy's bundle) is first given them all; what it took is handed over at once.
        """
        if self._gather is not None and not self._stopped:
            self._gather(keys)
        if not self._workers:
            return
        with self._cond:
            if self._stopped:
                return
            for key in keys:
                if key not in self._slots:
                    self._slots[key] = _Slot()
                    self._keys.append(key)
            start = min(self._workers, len(self._keys) - self._next) - self._running
            self._running += max(0, start)
            self._cond.notify_all()
        for _ in range(start):
            thread = threading.Thread(target=self._work, name=THREAD_NAME, daemon=True)
            self._threads.append(thread)
            thread.start()

    def read(self, key: str) -> bytes:
        """The body of ``key`` (waiting for its fetch if it is in flight), or the error reading it raised."""
        with self._cond:
            slot = self._slots.get(key)
            if slot is None or slot.state in (_State.QUEUED, _State.TAKEN):
                if slot is not None:
                    slot.state = _State.TAKEN  # reached before its turn came: read here, never fetched
                fetched = None
            else:
                while slot.state is _State.FETCHING:
                    self._cond.wait()
                fetched = self._hand_over(slot)
        if fetched is None:
            return self._read(key)
        body, error = fetched
        if error is not None:
            raise error
        assert body is not None
        return body

    def close(self) -> None:
        """Fetch nothing more, wait for the reads in flight, drop the bodies not read."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join()
        with self._cond:
            self._threads.clear()
            self._slots.clear()
            self._held_files = self._held_bytes = 0

    # -- the fetching threads ------------------------------------------------------------
    def _work(self) -> None:
        while True:
            with self._cond:
                key = self._claim_next()
                if key is None:
                    self._running -= 1
                    return
            body: bytes | None = None
            error: BaseException | None = None
            try:
                body = self._read(key)
            except BaseException as exc:  # handed to the thread that reads this key, raised there
                error = exc
            with self._cond:
                self._arrived(self._slots[key], body, error)

    def _claim_next(self) -> str | None:
        """The next key to fetch, once the budget has room for it; None when there is none (or stopped)."""
        while not (self._stopped or self._failed) and self._next < len(self._keys):
            key = self._keys[self._next]
            slot = self._slots[key]
            if slot.state is not _State.QUEUED:  # read plainly meanwhile
                self._next += 1
                continue
            size = (self._source.size(key) if self._source else None) or 0
            fits = self._held_files < self._max_files and self._held_bytes + size <= self._max_bytes
            if fits or self._held_files == 0:
                self._next += 1
                slot.state, slot.held = _State.FETCHING, size
                self._held_files += 1
                self._held_bytes += size
                return key
            self._cond.wait()
        return None

    def _arrived(self, slot: _Slot, body: bytes | None, error: BaseException | None) -> None:
        actual = len(body) if body is not None else 0
        self._held_bytes += actual - slot.held  # the listed size may be stale (a file replaced since)
        slot.held, slot.body, slot.error, slot.state = actual, body, error, _State.READY
        self._failed = self._failed or error is not None  # nothing after a failed file applies
        self._cond.notify_all()

    def _hand_over(self, slot: _Slot) -> tuple[bytes | None, BaseException | None]:
        fetched = slot.body, slot.error
        self._held_files -= 1
        self._held_bytes -= slot.held
        slot.state, slot.held, slot.body, slot.error = _State.TAKEN, 0, None, None
        self._cond.notify_all()
        return fetched
