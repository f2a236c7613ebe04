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

    Unfinished records are removed (the file was undone by hand and is pending again)
    unless their version is in ``mark_applied`` (finished by hand: recorded as applied).
    ``accept_checksums`` records the current content of those applied files.
    """
    by_version = {row.version: row for row in rows}
    database = history.conn.info.dbname
    for version in [*accept_checksums, *mark_applied]:
        if version not in by_version:
            raise ConfigError(f"version {version} has no history record", database=database)
    changes: list[str] = []
    for row in rows:
        if row.status not in UNFINISHED:
            continue
        ran = f"{row.statements_done or 0} of {row.statements_total} statements had run"
        if row.version in mark_applied:
            history.update(row.version, status=APPLIED, error=None, statements_done=row.statements_total)
            changes.append(f"marked {row.file} as applied ({row.status} before: {ran})")
        else:
            history.delete(row.version)
            changes.append(f"removed the {row.status} record of {row.file} ({ran}); it is pending again")
    for version in accept_checksums:
        row, ref = by_version[version], refs.get(version)
        if ref is None:
            raise ConfigError(f"version {version} has no file in the source", database=database)
        checksum = sha256(read(ref.key))
        if checksum == row.checksum:
            changes.append(f"{ref.key}: checksum already matches, nothing changed")
            continue
        history.update(version, checksum=checksum, etag=ref.etag)
        changes.append(f"accepted the current content of {ref.key}: checksum {row.checksum} -> {checksum}")
    return changes
