"""repair: the deliberate changes to a database's history, each one described.

Nothing calls this implicitly: a person runs ``dbmigrate repair`` after looking at
what an unfinished file did, or after reviewing an edit to an applied file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from .apply import sha256
from .errors import ConfigError
from .history import History
from .model import MigrationRef
from .plan import APPLIED, UNFINISHED, AppliedMigration

__all__ = ["repair_history"]


def repair_history(
    history: History,
    rows: Sequence[AppliedMigration],
    refs: Mapping[int, MigrationRef],
    *,
    read: Callable[[str], bytes],
    accept_checksums: Sequence[int] = (),
    mark_applied: Sequence[int] = (),
) -> list[str]:
    """Apply the repairs asked for and return one sentence per change made.

    With no versions given, unfinished records are removed (the file was undone by hand
    and is pending again). ``mark_applied`` records those unfinished files as applied
    (finished by hand); ``accept_checksums`` records the current content of those
    applied files. Only what was asked changes, and in one transaction: a repair that
    fails changes nothing.
    """
    by_version = {row.version: row for row in rows}
    database = history.conn.info.dbname
    for version in [*accept_checksums, *mark_applied]:
        if version not in by_version:
            raise ConfigError(f"version {version} has no history record", database=database)
    for version in mark_applied:
        if by_version[version].status not in UNFINISHED:
            raise ConfigError(
                f"version {version} is {by_version[version].status}, not unfinished: nothing to mark applied",
                database=database,
                hint="--mark-applied is for a partial or running record finished by hand; nothing was changed",
            )
    statements: list[str] = []
    changes: list[str] = []
    clear = not accept_checksums and not mark_applied
    for row in rows:
        if row.status not in UNFINISHED or not (clear or row.version in mark_applied):
            continue
        ran = f"{row.statements_done or 0} of {row.statements_total} statements had run"
        if row.version in mark_applied:
            statements.append(
                history.update_sql(row.version, status=APPLIED, error=None, statements_done=row.statements_total)
            )
            changes.append(f"marked {row.file} as applied ({row.status} before: {ran})")
        else:
            statements.append(history.delete_sql(row.version))
            changes.append(f"removed the {row.status} record of {row.file} ({ran}); it is pending again")
    for version in accept_checksums:
        row, ref = by_version[version], refs.get(version)
        if ref is None:
            raise ConfigError(
                f"version {version} has no file in the source",
                database=database,
                hint="nothing was changed",
            )
        if ref.description != row.description:
            raise ConfigError(
                f"version {version} is a different file: the history has {row.file}, the source has {ref.key}",
                database=database,
                file=ref.key,
                hint="accepting it would mark a file that never ran as applied: check the folder and the "
                "database URL; nothing was changed",
            )
        checksum = sha256(read(ref.key))
        if checksum == row.checksum:
            changes.append(f"{ref.key}: checksum already matches, nothing changed")
            continue
        statements.append(history.update_sql(version, checksum=checksum, etag=ref.etag))
        changes.append(f"accepted the current content of {ref.key}: checksum {row.checksum} -> {checksum}")
    history.execute_together(statements)
    return changes
