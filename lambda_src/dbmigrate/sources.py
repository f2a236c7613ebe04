"""Where migration files come from: the protocol, and the local-folder source.

The S3 source (``s3source.py``) implements the same protocol; both pass the shared
conformance tests in ``tests/integration/test_source_conformance.py``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

from .errors import SourceError
from .model import Entry, MigrationRef, parse_layout

__all__ = ["LocalSource", "MigrationSource"]


class MigrationSource(Protocol):
    """A set of migration files in the documented layout.

    ``list()`` returns every migration (validated, sorted; no file body is read) and
    raises LayoutError for a misnamed file and SourceError when the source cannot be
    reached; an empty source returns ``[]``. ``read(key)`` returns one file's bytes
    exactly as stored, or raises SourceError naming the key.
    """

    origin: str
    """Where the files are, for messages: a folder path or ``s3://bucket/prefix``."""

    def list(self) -> list[MigrationRef]: ...

    def read(self, key: str) -> bytes: ...


class LocalSource:
    """Migrations in a folder on disk (the repository's ``migrations/``)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.origin = str(self.root)

    def list(self) -> list[MigrationRef]:
        if not self.root.is_dir():
            raise SourceError(
                f"migrations folder {self.origin} does not exist",
                hint="pass --dir with the folder that holds one sub-folder per database",
            )
        entries = [Entry(path.relative_to(self.root).as_posix()) for path in self.root.rglob("*") if path.is_file()]
        return parse_layout(entries, origin=self.origin)

    def read(self, key: str) -> bytes:
        try:
            return (self.root / key).read_bytes()
        except OSError as exc:
            raise SourceError(f"cannot read {key} in {self.origin}: {exc.strerror}", file=key) from exc
