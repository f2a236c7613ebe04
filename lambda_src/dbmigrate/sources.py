"""Where migration files come from: the protocol, and the local-folder source.

The S3 source (``s3source.py``) implements the same protocol; both pass the shared
conformance tests in ``tests/integration/test_source_conformance.py``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from .errors import ConfigError, SourceError
from .model import Entry, MigrationRef, parse_layout

__all__ = ["ChecksumSource", "ListedOnce", "LocalSource", "MigrationSource"]


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


class ListedOnce:
    """``source`` listed once, for several runs over the same files in one go (a tenant group's
    root database, then each tenant): one listing, so one view of what there is. Everything else
    (reads, sizes, a manifest's checksums) is the wrapped source's."""

    def __init__(self, source: MigrationSource) -> None:
        self._source = source
        self.origin = source.origin
        self._refs: list[MigrationRef] | None = None

    def list(self) -> list[MigrationRef]:
        if self._refs is None:
            self._refs = self._source.list()
        return list(self._refs)

    def read(self, key: str) -> bytes:
        return self._source.read(key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._source, name)
