"""What to do: a pure function of the files in the source and the history of a database.

No I/O here. The runner reads the history and the checksums of applied files, calls
``plan_database``, and refuses to run while ``DatabasePlan.refusal()`` names a problem.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import (
    ChecksumMismatchError,
    ConfigError,
    ForeignHistoryError,
    MigrationError,
    OutOfOrderError,
    PartialMigrationError,
)
from .history import DONE, UNFINISHED, HistoryRow, Status
from .model import MigrationRef

__all__ = ["NOT_READ", "DatabasePlan", "down_files", "plan_database"]

# A pending file whose body was not read (a manifest carries checksums only).
NOT_READ: Mapping[str, Any] = {"mode": None, "declared": False, "reason": "not read (the manifest has checksums only)"}


@dataclass(frozen=True)
class DatabasePlan:
    """The state of one database against the source, and what a migrate would apply."""

    database: str
    applied: tuple[HistoryRow, ...]
    pending: tuple[MigrationRef, ...]
    changed: tuple[tuple[MigrationRef, HistoryRow, str], ...] = ()
    different: tuple[tuple[MigrationRef, HistoryRow], ...] = ()
    missing: tuple[HistoryRow, ...] = ()
    out_of_order: tuple[MigrationRef, ...] = ()
    unfinished: tuple[HistoryRow, ...] = ()
    exists: bool = True
    notes: tuple[str, ...] = field(default=())
    modes: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)
    """How each pending file would run (``Script.to_dict()``, or its ``error``), by version; read by plan and status."""

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
                "with {allow_out_of_order}",
                settings=("allow_out_of_order",),
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
            "pending_files": [
                {"version": ref.version, "file": ref.key, **self.modes.get(ref.version, NOT_READ)}
                for ref in self.pending
            ],
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
    applied: Sequence[HistoryRow],
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
    changed: list[tuple[MigrationRef, HistoryRow, str]] = []
    different: list[tuple[MigrationRef, HistoryRow]] = []
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


def down_files(plan: DatabasePlan, to_version: int, refs: Sequence[MigrationRef]) -> list[tuple[MigrationRef, str]]:
    """What a down to ``to_version`` undoes, newest first: each applied version above it and its down file.

    Refused, before anything is undone, while a file is unfinished, for a target that is
    neither 0, an applied version nor a file's version (a typo), and when a down file is missing.
    """
    if plan.unfinished:
        raise plan.refusal(allow_out_of_order=True) or AssertionError("unfinished without refusal")
    by_version = {ref.version: ref for ref in refs}
    _check_down_target(plan.database, to_version, plan, by_version)
    undo = [row for row in reversed(plan.applied) if row.version > to_version]
    missing = []
    for row in undo:
        ref = by_version.get(row.version)
        if ref is None:
            missing.append(f"{row.file} (the applied file itself is gone)")
        elif ref.down_key is None:
            missing.append(ref.key.removesuffix(".up.sql") + ".down.sql")
    if missing:
        raise ConfigError(
            f"cannot undo: no down file for {', '.join(missing)}",
            database=plan.database,
            file=missing[0].split(" ")[0],
            hint="write the missing down file(s), or go down to a higher version; nothing was undone",
        )
    return [(by_version[row.version], by_version[row.version].down_key or "") for row in undo]


def _check_down_target(database: str, to_version: int, plan: DatabasePlan, by_version: dict[int, MigrationRef]) -> None:
    """A down target is 0, an applied version or a file's version: never a typo that undoes everything."""
    applied = [row.version for row in plan.applied if row.status in DONE]
    if to_version == 0 or to_version in applied or to_version in by_version:
        return
    below = [v for v in applied if v < to_version]
    raise ConfigError(
        f"down target {to_version} is neither 0, an applied version, nor the version of a file of {database}; "
        f"it would undo every version above {max(below) if below else 'none (all of them)'}",
        database=database,
        hint=f"use one of the applied versions ({', '.join(map(str, applied[-5:])) or 'none'}) or 0 to undo all; "
        "nothing was undone",
        target=to_version,
        applied=applied,
    )


def _unfinished_error(database: str, row: HistoryRow) -> PartialMigrationError:
    """Why a file that ran outside a transaction blocks the database, as far as the record knows."""
    done = row.statements_done or 0
    if row.status is Status.RUNNING:
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
