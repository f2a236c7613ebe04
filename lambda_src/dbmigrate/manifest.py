"""Manifests: the migrations' names and checksums without their bodies, for a remote plan.

``dbmigrate plan --function NAME`` sends the local folder's manifest to the deployed
function, whose ``plan`` compares it with each database's history before any file is
uploaded: what would be applied, and any drift (an applied file whose checksum differs,
an applied file missing, an out-of-order version).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .apply import sha256
from .errors import ConfigError, SourceError
from .model import Entry, MigrationRef, parse_layout
from .sources import MigrationSource

__all__ = ["ManifestSource", "manifest_of", "parse_manifest"]

MANIFEST_LIMIT = 20_000
"""Files one manifest may name: a Lambda payload holds 6 MB, about 60,000 such entries."""


def manifest_of(source: MigrationSource, databases: Sequence[str] | None = None) -> list[dict[str, str]]:
    """``[{"file": key, "sha256": ...}]`` for every up and down file of the source (bodies read here).

    The one loop over a source's files and their checksums: the remote plan sends it, and
    the stack (``infra/bucket.py``) uploads one object per entry.
    """
    entries = []
    for ref in source.list():
        if databases and ref.database not in databases:
            continue
        for key in (ref.key, ref.down_key):
            if key:
                entries.append({"file": key, "sha256": sha256(source.read(key))})
    return entries


class ManifestSource:
    """A source made of a manifest (``parse_manifest``'s file -> sha256): names and checksums, no bodies.

    ``list()`` validates the names as any source does; ``checksum(key)`` gives the
    manifest's checksum, so planning never reads a body; ``read()`` refuses.
    """

    def __init__(self, checksums: Mapping[str, str], *, origin: str = "the manifest") -> None:
        self.origin = origin
        self._checksums = checksums

    def list(self) -> list[MigrationRef]:
        return parse_layout([Entry(key) for key in self._checksums], origin=self.origin)

    def read(self, key: str) -> bytes:
        raise SourceError(f"{self.origin} holds checksums only, not the body of {key}", file=key)

    def checksum(self, key: str) -> str:
        return self._checksums[key]


def parse_manifest(manifest: object) -> Mapping[str, str]:
    """A manifest as it arrives (a payload's list of ``{file, sha256}``), checked once: file -> sha256."""
    hint = 'send [{"file": "projectdb/202401010100_create_users.up.sql", "sha256": "<64 hex digits>"}, ...]'
    if not isinstance(manifest, list) or len(manifest) > MANIFEST_LIMIT:
        raise ConfigError(f"the manifest must be a list of at most {MANIFEST_LIMIT} files", hint=hint)
    checksums: dict[str, str] = {}
    for item in manifest:
        entry: Any = item
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("file"), str)
            or not isinstance(entry.get("sha256"), str)
            or len(entry["sha256"]) != 64
            or any(c not in "0123456789abcdef" for c in entry["sha256"])
        ):
            raise ConfigError(f"a manifest entry is not {{file, sha256}}: {str(entry)[:120]}", hint=hint)
        checksums[entry["file"]] = entry["sha256"]
    return checksums
