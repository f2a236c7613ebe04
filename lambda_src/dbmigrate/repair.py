"""repair: the deliberate changes to a database's history, each one described.

Nothing calls this implicitly: a person runs ``dbmigrate repair`` after looking at
what an unfinished file did, or after reviewing an edit to an applied file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from .apply import sha256
from .errors import ConfigError
from .history import UNFINISHED, HistoryRow, Status
from .model import MigrationRef

__all__ = ["Repair", "RepairRequest"]


@dataclass
class Repair:
    """What a repair writes (``rows``), removes (``remove``: versions), and one sentence per change."""

    rows: list[HistoryRow] = field(default_factory=list)
    remove: list[int] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RepairRequest:
    """The repairs asked for on one database (``dbmigrate repair``'s options).

    With no versions given, unfinished records are removed (the file was undone by hand
    and is pending again). ``mark_applied`` records those unfinished files as applied
    (finished by hand); ``accept_checksums`` records the current content of those
    applied files. Only what was asked changes.
    """

    database: str
    accept_checksums: Sequence[int] = ()
    mark_applied: Sequence[int] = ()

    def resolve(
        self, rows: Sequence[HistoryRow], refs: Mapping[int, MigrationRef], read: Callable[[str], bytes]
    ) -> Repair:
        """What to write and remove; the caller records it in one transaction (a repair that fails changes nothing)."""
        by_version = {row.version: row for row in rows}
        _check(self.database, by_version, [*self.accept_checksums, *self.mark_applied], self.mark_applied)
        repair = Repair()
        clear = not self.accept_checksums and not self.mark_applied
        for row in rows:
            if row.status in UNFINISHED and (clear or row.version in self.mark_applied):
                _settle(repair, row, mark_applied=row.version in self.mark_applied)
        for version in self.accept_checksums:
            _accept(repair, self.database, by_version[version], refs.get(version), read)
        return repair


def _check(database: str, by_version: Mapping[int, HistoryRow], named: Sequence[int], marked: Sequence[int]) -> None:
    for version in named:
        if version not in by_version:
            raise ConfigError(f"version {version} has no history record", database=database)
    for version in marked:
        if by_version[version].status not in UNFINISHED:
            raise ConfigError(
                f"version {version} is {by_version[version].status}, not unfinished: nothing to mark applied",
                database=database,
                hint="--mark-applied is for a partial or running record finished by hand; nothing was changed",
            )


def _settle(repair: Repair, row: HistoryRow, *, mark_applied: bool) -> None:
    """An unfinished record: marked applied (finished by hand) or removed (undone by hand)."""
    ran = f"{row.statements_done or 0} of {row.statements_total} statements had run"
    if mark_applied:
        repair.rows.append(replace(row, status=Status.APPLIED, error=None, statements_done=row.statements_total))
        repair.changes.append(f"marked {row.file} as applied ({row.status} before: {ran})")
    else:
        repair.remove.append(row.version)
        repair.changes.append(f"removed the {row.status} record of {row.file} ({ran}); it is pending again")


def _accept(
    repair: Repair, database: str, row: HistoryRow, ref: MigrationRef | None, read: Callable[[str], bytes]
) -> None:
    """The current content of an applied file, accepted after review."""
    if ref is None:
        raise ConfigError(
            f"version {row.version} has no file in the source", database=database, hint="nothing was changed"
        )
    if ref.description != row.description:
        raise ConfigError(
            f"version {row.version} is a different file: the history has {row.file}, the source has {ref.key}",
            database=database,
            file=ref.key,
            hint="accepting it would mark a file that never ran as applied: check the folder and the "
            "database URL; nothing was changed",
        )
    checksum = sha256(read(ref.key))
    if checksum == row.checksum:
        repair.changes.append(f"{ref.key}: checksum already matches, nothing changed")
        return
    marked = [earlier for earlier in repair.rows if earlier.version == row.version]  # also --mark-applied
    repair.rows = [earlier for earlier in repair.rows if earlier.version != row.version]
    repair.rows.append(replace(marked[0] if marked else row, checksum=checksum, etag=ref.etag))
    repair.changes.append(f"accepted the current content of {ref.key}: checksum {row.checksum} -> {checksum}")
