"""Where migration files come from: the protocol, and the local-folder source.

The S3 source (``s3source.py``) implements the same protocol; both pass the shared
conformance tests in ``tests/integration/test_source_conformance.py``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

from .errors import ConfigError, SourceError
from .model import Entry, MigrationRef, parse_layout

__all__ = ["ChecksumSource", "LocalSource", "MigrationSource", "SettledSource"]


class MigrationSource(Protocol):
    """A set of migration files in the documented layout.

    ``list()`` returns every migration (validated, sorted; no file body is read) and
    raises LayoutError for a misnamed file, ConfigError when the folder does not exist
    and SourceError when the source cannot be reached; an empty source returns ``[]``.
    ``read(key)`` returns one file's bytes exactly as stored, or raises SourceError
    naming the key.
    """

    origin: str
    """Where the files are, for messages: a folder path or ``s3://bucket/prefix``."""

    def list(self) -> list[MigrationRef]: ...

    def read(self, key: str) -> bytes: ...


@runtime_checkable
class ChecksumSource(Protocol):
    """A source that knows its files' sha256 without reading them (a manifest)."""

    def checksum(self, key: str) -> str: ...


class LocalSource:
    """Migrations in a folder on disk (the repository's ``migrations/``)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.origin = str(self.root)

    def list(self) -> list[MigrationRef]:
        if not self.root.is_dir():  # a wrong --dir: configuration, not a failed migration
            what = "is not a folder" if self.root.exists() else "does not exist"
            raise ConfigError(
                f"migrations folder {self.origin} {what}",
                hint="pass --dir with the folder that holds one sub-folder per database",
            )
        entries = [Entry(key) for key in _files(self.root)]
        return parse_layout(entries, origin=self.origin)

    def read(self, key: str) -> bytes:
        try:
            with open(self.root / key, "rb") as file:
                return file.read()
        except OSError as exc:
            raise SourceError(f"cannot read {key} in {self.origin}: {exc.strerror}", file=key) from exc


def _files(root: Path) -> list[str]:
    """Keys of every file below ``root``: a scan of two levels (the layout's depth), deeper only where needed.

    Folders of the first two levels are listed too, as ``<name>/`` (as S3 lists a folder
    marker), so that a folder named like a migration file is not missed.
    """
    keys: list[str] = []
    with os.scandir(root) as top:
        for folder in top:
            if not folder.is_dir():
                keys.append(folder.name)
                continue
            keys.append(f"{folder.name}/")
            with os.scandir(folder.path) as inner:
                for entry in inner:
                    if entry.is_dir():
                        keys.append(f"{folder.name}/{entry.name}/")
                        base = Path(entry.path)
                        keys += [p.relative_to(root).as_posix() for p in base.rglob("*") if p.is_file()]
                    else:
                        keys.append(f"{folder.name}/{entry.name}")
    return keys


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


def _fingerprint(refs: list[MigrationRef]) -> list[tuple[str, str | None, str | None]]:
    return [(ref.key, ref.etag, ref.down_key) for ref in refs]
