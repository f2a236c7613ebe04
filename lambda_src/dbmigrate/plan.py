"""What to do: a pure function of the files in the source and the history of a database.

No I/O here. The runner reads the history and the checksums of applied files, calls
``plan_database``, and refuses to run while ``DatabasePlan.refusal()`` names a problem.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .errors import ChecksumMismatchError, ForeignHistoryError, MigrationError, OutOfOrderError, PartialMigrationError
from .model import MigrationRef

__all__ = ["APPLIED", "DONE", "UNFINISHED", "AppliedMigration", "DatabasePlan", "plan_database"]

APPLIED = "applied"
DONE = ("applied", "baselined", "adopted")
UNFINISHED = ("partial", "running")


@dataclass(frozen=True)
class AppliedMigration:
    """One row of a database's history table."""

    version: int
    description: str
    file: str
    checksum: str
    status: str
    etag: str | None = None
    mode: str | None = None
    applied_at: datetime | None = None
    duration_ms: int | None = None
    applied_by: str | None = None
    statements_done: int | None = None
    statements_total: int | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable view (timestamps as ISO 8601)."""
        data: dict[str, Any] = {
            "version": self.version,
            "description": self.description,
            "file": self.file,
            "checksum": self.checksum,
            "status": self.status,
            "applied_at": self.applied_at.isoformat() if self.applied_at else None,
            "duration_ms": self.duration_ms,
            "applied_by": self.applied_by,
        }
        if self.status in UNFINISHED:
            data.update(statements_done=self.statements_done, statements_total=self.statements_total, error=self.error)
        return data


@dataclass(frozen=True)
class DatabasePlan:
    """The state of one database against the source, and what a migrate would apply."""

    database: str
    applied: tuple[AppliedMigration, ...]
    pending: tuple[MigrationRef, ...]
    changed: tuple[tuple[MigrationRef, AppliedMigration, str], ...] = ()
    different: tuple[tuple[MigrationRef, AppliedMigration], ...] = ()
    missing: tuple[AppliedMigration, ...] = ()
    out_of_order: tuple[MigrationRef, ...] = ()
    unfinished: tuple[AppliedMigration, ...] = ()
    exists: bool = True
    notes: tuple[str, ...] = field(default=())

    @property
    def current_version(self) -> int | None:
        """The newest version recorded as done, or None for a database with no history."""
        done = [row.version for row in self.applied if row.status not in UNFINISHED]
        return max(done) if done else None

    def refusal(self, *, allow_out_of_order: bool) -> MigrationError | None:
        """The first reason not to apply anything to this database, or None."""
        if self.unfinished:
            return _unfinished_error(self.database, self.unfinished[0])
        if self.different:
            ref, row = self.different[0]
            more = f" (and {len(self.different) - 1} more)" if len(self.different) > 1 else ""
            return ForeignHistoryError(
                f"a different file at version {ref.version}{more}: the history has {row.file} "
                f"({row.description!r}), the folder has {ref.key} ({ref.description!r}); this database was "
                "migrated from another set of files",
                database=self.database,
                file=ref.key,
                hint="check that the folder (or bucket prefix) and the database URL belong together; nothing "
                "was applied (repair --accept-checksum would mark a file that never ran as applied)",
                version=ref.version,
                history_file=row.file,
                source_file=ref.key,
            )
        if self.changed:
            ref, row, checksum = self.changed[0]
            more = f" (and {len(self.changed) - 1} more)" if len(self.changed) > 1 else ""
            return ChecksumMismatchError(
                f"applied file was changed after it was applied{more}: checksum was {row.checksum}, is now {checksum}",
                database=self.database,
                file=ref.key,
                hint="restore the file as applied and put the change in a new migration; or, after review, "
                f"accept it with `dbmigrate repair --database {self.database} --accept-checksum {ref.version}`",
                applied_checksum=row.checksum,
                current_checksum=checksum,
            )
        if self.out_of_order and not allow_out_of_order:
            ref = self.out_of_order[0]
            newest = self.current_version
            return OutOfOrderError(
                f"version {ref.version} is lower than the newest applied version {newest}; "
                "it would be silently skipped by other tools",
                database=self.database,
                file=ref.key,
                hint="give the file a version above the newest applied one, or allow it explicitly "
                "with --allow-out-of-order",
            )
        return None

    def to_dict(self) -> dict[str, Any]:
        """The state for status output: applied and pending versions, and each problem."""
        return {
            "name": self.database,
            "exists": self.exists,
            "current_version": self.current_version,
            "applied": [row.version for row in self.applied if row.status not in UNFINISHED],
            "pending": [ref.version for ref in self.pending],
            "pending_files": [ref.key for ref in self.pending],
            "changed": [ref.version for ref, _, _ in self.changed],
            "different": [
                {"version": ref.version, "history_file": row.file, "source_file": ref.key}
                for ref, row in self.different
            ],
            "missing": [row.version for row in self.missing],
            "out_of_order": [ref.version for ref in self.out_of_order],
            "unfinished": [row.to_dict() for row in self.unfinished],
            "history": [row.to_dict() for row in self.applied],
            "notes": list(self.notes),
        }


def plan_database(
    database: str,
    refs: Sequence[MigrationRef],
    applied: Sequence[AppliedMigration],
    checksums: Mapping[int, str],
    *,
    exists: bool = True,
) -> DatabasePlan:
    """Compare a database's files with its history.

    ``refs`` are the source's files of this database; ``applied`` its history rows;
    ``checksums`` the sha256 of the current content of every file that has a history
    row (the runner may reuse a stored checksum when the source's ETag is unchanged).
    """
    by_version = {row.version: row for row in applied}
    newest = max((row.version for row in applied if row.status not in UNFINISHED), default=None)
    pending: list[MigrationRef] = []
    changed: list[tuple[MigrationRef, AppliedMigration, str]] = []
    different: list[tuple[MigrationRef, AppliedMigration]] = []
    out_of_order: list[MigrationRef] = []
    for ref in sorted(refs):
        row = by_version.get(ref.version)
        if row is None:
            pending.append(ref)
            if newest is not None and ref.version < newest:
                out_of_order.append(ref)
        elif row.status in DONE and checksums.get(ref.version, row.checksum) != row.checksum:
            # Same version, another name and other content: not an edit but another file.
            if row.description != ref.description:
                different.append((ref, row))
            else:
                changed.append((ref, row, checksums[ref.version]))
    present = {ref.version for ref in refs}
    missing = tuple(row for row in applied if row.version not in present and row.status not in UNFINISHED)
    notes = [f"version {row.version} ({row.file}) is applied but no longer in the source" for row in missing]
    if not exists:
        notes.append(f"database {database} does not exist yet: every file is pending")
    return DatabasePlan(
        database=database,
        applied=tuple(sorted(applied, key=lambda row: row.version)),
        pending=tuple(pending),
        changed=tuple(changed),
        different=tuple(different),
        missing=missing,
        out_of_order=tuple(out_of_order),
        unfinished=tuple(row for row in applied if row.status in UNFINISHED),
        exists=exists,
        notes=tuple(notes),
    )


def _unfinished_error(database: str, row: AppliedMigration) -> PartialMigrationError:
    """Why a file that ran outside a transaction blocks the database, as far as the record knows."""
    done = row.statements_done or 0
    if row.status == "running":
        # The record is written before each statement: the next one may have run, or still run.
        return PartialMigrationError(
            f"an earlier run of {row.file} stopped or is still running: statements 1-{done} of "
            f"{row.statements_total} are recorded done, statement {done + 1}: outcome unknown"
            + (f" ({row.error})" if row.error else ""),
            database=database,
            file=row.file,
            hint=f"make sure no run is still at work (pg_stat_activity), check whether statement {done + 1} took "
            "effect, finish or undo the rest by hand, then `dbmigrate repair --database "
            f"{database}` (add --mark-applied {row.version} if the file is now complete); do not simply run "
            "it again",
            version=row.version,
            statements_done=done,
            statements_total=row.statements_total,
            outcome_unknown=done + 1,
        )
    ran = f"statements 1-{done} of {row.statements_total} ran" if done else "none of its statements completed"
    return PartialMigrationError(
        f"an earlier run of {row.file} did not finish (partial: {ran}"
        + (f"; {row.error}" if row.error else "")
        + "); nothing more is applied to this database until it is repaired",
        database=database,
        file=row.file,
        hint="finish or undo that file's remaining statements by hand (and drop what a failed statement left), "
        f"then run `dbmigrate repair --database {database}` to clear the record",
        version=row.version,
        statements_done=done,
        statements_total=row.statements_total,
    )
