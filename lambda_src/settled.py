"""The upload-settling source: an upload event's run waits until the bucket stops changing.

Only the function uses it (``handler.py``, for S3 and SNS events); the engine knows nothing of uploads.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from dbmigrate.errors import SourceError
from dbmigrate.model import MigrationRef
from dbmigrate.sources import MigrationSource

__all__ = ["SettledSource"]


class SettledSource:
    """A source whose listing is trusted only once it has stopped changing.

    An upload event can arrive while the rest of a batch is still being uploaded (a
    ``terraform apply`` puts every object in parallel, and each fires an event). Run
    on a partial listing, a later file could be applied before an earlier one lands,
    which then counts as out of order. So ``list()`` lists again after ``settle_s``
    until two listings agree (names and content tags), for at most ``max_wait_s``.
    """

    def __init__(
        self,
        source: MigrationSource,
        *,
        settle_s: float,
        max_wait_s: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.source = source
        self.origin = source.origin
        self.settle_s = settle_s
        self.max_wait_s = max_wait_s
        self.clock = clock
        self.sleep = sleep

    def list(self) -> list[MigrationRef]:
        deadline = self.clock() + self.max_wait_s
        current = self.source.list()
        while self.settle_s > 0:
            if self.clock() + self.settle_s > deadline:
                raise SourceError(
                    f"files in {self.origin} were still changing after {self.max_wait_s:.0f} s",
                    hint="uploads are still under way; the next upload event (or a retry) runs them",
                )
            self.sleep(self.settle_s)
            again = self.source.list()
            if _fingerprint(again) == _fingerprint(current):
                return again
            current = again
        return current

    def read(self, key: str) -> bytes:
        return self.source.read(key)

    def gather(self, keys: Sequence[str]) -> None:
        """The wrapped source's (a bucket reads many files from its bundle: ``dbmigrate.prefetch``)."""
        gather = getattr(self.source, "gather", None)
        if gather is not None:
            gather(keys)

    @property
    def concurrent_reads(self) -> int:
        """The wrapped source's, so that a bucket is still read ahead (``dbmigrate.prefetch``); 1 for a folder."""
        return getattr(self.source, "concurrent_reads", 1)

    def size(self, key: str) -> int | None:
        size = getattr(self.source, "size", None)
        return size(key) if size else None


def _fingerprint(refs: list[MigrationRef]) -> list[tuple[str, str | None, str | None]]:
    return [(ref.key, ref.etag, ref.down_key) for ref in refs]
