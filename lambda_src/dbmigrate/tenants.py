"""Tenant databases: one folder of the layout applied to every database of a group on a server.

A tenant group names a folder of the layout (``tenant/``: its files are written like any
database's) and which databases of the server belong to it (``match``, a LIKE pattern
such as ``tenant_%``, read from ``pg_database`` when the run starts). Each tenant database
gets the folder's files with its own history; the folder itself is not a database. The
root database's files run first, as always, and may create tenants; a tenant created
later matches at the next run, where every file of the group is pending for it.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from .db import Connection
from .errors import ConfigError
from .model import DATABASE_NAME, MigrationRef, validate_database_name
from .sources import MigrationSource

__all__ = ["TenantGroup", "TenantSource", "tenants_of"]

MATCH = re.compile(r"^[a-z0-9_%]{1,63}$")
TENANTS_QUERY = (
    "SELECT datname FROM pg_database WHERE datname LIKE %s AND datallowconn AND NOT datistemplate ORDER BY datname"
)


@dataclass(frozen=True)
class TenantGroup:
    """The layout's ``folder`` of tenant files, and the LIKE pattern ``match`` naming its databases."""

    folder: str
    match: str

    def __post_init__(self) -> None:
        validate_database_name(self.folder)
        if not MATCH.fullmatch(self.match):
            raise ConfigError(
                f"tenant group {self.folder}: match {self.match!r} is not a LIKE pattern of database names",
                hint="use lower-case letters, digits, _ and %, e.g. tenant_%",
            )


def tenants_of(conn: Connection, group: TenantGroup) -> list[str]:
    """The group's databases on the server ``conn`` is connected to, by name."""
    with conn.cursor() as cur:
        cur.execute(TENANTS_QUERY, (group.match,))
        names = [name for (name,) in cur.fetchall()]
    odd = [name for name in names if not DATABASE_NAME.fullmatch(name)]
    if odd:
        raise ConfigError(
            f"tenant group {group.folder}: database(s) {odd} match {group.match!r} but their names are not "
            f"migrated by this tool ({DATABASE_NAME.pattern})",
            hint="rename them, or narrow the group's match so that it leaves them out",
        )
    return names


class TenantSource:
    """``source`` seen from one server's tenant group: the root database's files, then the group's
    folder once per tenant database (keys stay the folder's: each file is read once for all tenants)."""

    def __init__(self, source: MigrationSource, group: TenantGroup, tenants: list[str], *, root_database: str) -> None:
        self.origin = source.origin
        self._source, self._group, self._tenants, self._root = source, group, tenants, root_database
        self._bodies: dict[str, bytes] = {}
        self._refs: builtins.list[MigrationRef] | None = None

    def list(self) -> list[MigrationRef]:
        """Listed once: each tenant of the run is a run of its own over the same listing."""
        if self._refs is None:
            self._refs = self._expand(self._source.list())
        return self._refs

    def _expand(self, refs: Sequence[MigrationRef]) -> builtins.list[MigrationRef]:
        files = [ref for ref in refs if ref.database == self._group.folder]
        if not files:
            raise ConfigError(
                f"tenant group {self._group.folder}: no folder {self._group.folder}/ with migrations in {self.origin}",
                hint="put the files every tenant database gets in that folder, or name the folder that holds them",
            )
        root = [ref for ref in refs if ref.database == self._root]
        return root + [replace(ref, database=tenant) for tenant in self._tenants for ref in files]

    def read(self, key: str) -> bytes:
        """One read per file for every tenant: the tenants share the folder's files."""
        if key not in self._bodies:
            self._bodies[key] = self._source.read(key)
        return self._bodies[key]

    @property
    def concurrent_reads(self) -> int:
        """The wrapped source's, so that a bucket is still read ahead (``dbmigrate.prefetch``)."""
        return int(getattr(self._source, "concurrent_reads", 1))

    def size(self, key: str) -> int | None:
        size = getattr(self._source, "size", None)
        return size(key) if size else None

    def __getattr__(self, name: str) -> Any:
        """Whatever else the wrapped source offers: a manifest's ``checksum`` stays visible (``ChecksumSource``)."""
        return getattr(self._source, name)
