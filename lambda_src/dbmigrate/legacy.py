"""Adopting the history another tool left in a database, on the first run.

golang-migrate keeps one row ``schema_migrations(version bigint, dirty boolean)``:
every file up to that version counts as applied, and a dirty row (a file that failed
half way) is refused with the way forward. Flyway keeps ``flyway_schema_history``:
its successful versioned rows count as applied; a failed row is refused. Adopted
files get history rows marked ``adopted`` with the checksums of the current files,
so later edits are caught as with any applied file.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .db import Connection
from .errors import MigrationError
from .history import HistoryRow, Status
from .model import MigrationRef

__all__ = ["LegacyHistoryError", "adopt"]


class LegacyHistoryError(MigrationError):
    """The history another tool left cannot be adopted as it is."""


@dataclass(frozen=True)
class _Table:
    name: str
    tool: str
    columns: dict[str, str]


GOLANG_MIGRATE = _Table("schema_migrations", "golang-migrate", {"version": "bigint", "dirty": "boolean"})
FLYWAY = _Table(
    "flyway_schema_history",
    "Flyway",
    {"version": "character varying", "script": "character varying", "success": "boolean"},
)

COLUMNS_QUERY = """
SELECT a.attname, format_type(a.atttypid, NULL)
FROM pg_attribute a
WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped
"""


def adopt(
    conn: Connection, database: str, refs: Sequence[MigrationRef], checksum: Callable[[MigrationRef], str]
) -> list[HistoryRow]:
    """History rows to record for the files another tool applied; [] when there is none."""
    for table in (GOLANG_MIGRATE, FLYWAY):
        if _has_shape(conn, table):
            versions = (
                _golang_versions(conn, database, refs) if table is GOLANG_MIGRATE else _flyway_versions(conn, database)
            )
            return _rows(database, refs, versions, table, checksum)
    return []


def _has_shape(conn: Connection, table: _Table) -> bool:
    with conn.cursor() as cur:
        cur.execute(COLUMNS_QUERY, (table.name,))
        columns = dict(cur.fetchall())
    return bool(columns) and all(columns.get(name) == kind for name, kind in table.columns.items())


def _golang_versions(conn: Connection, database: str, refs: Sequence[MigrationRef]) -> set[int]:
    with conn.cursor() as cur:
        cur.execute("SELECT version, dirty FROM schema_migrations ORDER BY version DESC LIMIT 1")
        row = cur.fetchone()
    if row is None:
        return set()
    version, dirty = int(row[0]), bool(row[1])
    file = next((ref.key for ref in refs if ref.version == version), f"version {version}")
    if dirty:
        raise LegacyHistoryError(
            f"golang-migrate left this database dirty at version {version}: {file} failed part way, "
            "so some of its statements may have run",
            database=database,
            file=file,
            hint=f"compare the schema with {file} and finish or undo it by hand; then record the outcome in "
            f"golang-migrate's table: `UPDATE schema_migrations SET dirty = false` if you finished it, or set "
            f"version to the previous version with dirty = false if you undid it; then run again",
            legacy_version=version,
        )
    if not any(ref.version == version for ref in refs):
        raise LegacyHistoryError(
            f"golang-migrate recorded version {version}, but no file has that version",
            database=database,
            hint="adopt from the same migration files golang-migrate applied (check the folder or prefix)",
            legacy_version=version,
        )
    return {ref.version for ref in refs if ref.version <= version}


def _flyway_versions(conn: Connection, database: str) -> set[int]:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT version, script, success FROM flyway_schema_history "
            "WHERE version IS NOT NULL ORDER BY installed_rank"
        )
        rows = cur.fetchall()
    versions: set[int] = set()
    for version, script, success in rows:
        if not success:
            raise LegacyHistoryError(
                f"Flyway recorded a failed run of version {version} ({script})",
                database=database,
                hint="fix the database by hand and run `flyway repair` (or delete that row), then run again",
                legacy_version=version,
            )
        if not str(version).isdigit():
            raise LegacyHistoryError(
                f"Flyway version {version!r} ({script}) is not a whole number",
                database=database,
                hint="rename the files to <integer version>_<description>.up.sql and update "
                "flyway_schema_history's versions to match, then run again",
                legacy_version=version,
            )
        versions.add(int(version))
    return versions


def _rows(
    database: str,
    refs: Sequence[MigrationRef],
    versions: set[int],
    table: _Table,
    checksum: Callable[[MigrationRef], str],
) -> list[HistoryRow]:
    known = {ref.version for ref in refs}
    unknown = sorted(versions - known)
    if unknown:
        raise LegacyHistoryError(
            f"{table.tool} recorded versions with no file here: {unknown[:10]}",
            database=database,
            hint=f"adopt from the same migration files {table.tool} applied (check the folder or prefix)",
        )
    return [
        HistoryRow(
            version=ref.version,
            description=ref.description,
            file=ref.key,
            checksum=checksum(ref),
            status=Status.ADOPTED,
            etag=ref.etag,
            mode="none",
            applied_by=f"adopted from {table.tool} ({table.name})",
        )
        for ref in refs
        if ref.version in versions
    ]
