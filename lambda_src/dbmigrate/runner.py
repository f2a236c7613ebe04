"""The engine's entry point: migrate, plan and status over every database of a source.

The root database runs first, then the others in name order (or those asked for).
``migrate`` holds the advisory lock on the root database for the whole run, creates
each database's history table, refuses to start while a database has a changed
applied file, an unfinished file or (unless allowed) an out-of-order version, and
stops starting new files when the time budget runs short.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from .apply import apply_file, sha256
from .config import Settings
from .db import Connection, connect
from .errors import ConfigError, DatabaseConnectError, DeadlineError
from .history import History
from .legacy import adopt
from .lock import advisory_lock, lock_key
from .model import DATABASE_NAME, MigrationRef
from .plan import APPLIED, DONE, UNFINISHED, AppliedMigration, DatabasePlan, plan_database
from .sources import MigrationSource

__all__ = ["DatabaseResult", "RunReport", "Runner"]

EventSink = Callable[[dict[str, Any]], None]


@dataclass
class DatabaseResult:
    """What a run did to one database."""

    name: str
    current_version: int | None
    applied: list[int] = field(default_factory=list)
    pending: list[int] = field(default_factory=list)
    duration_ms: int = 0
    plan: DatabasePlan | None = None
    reverted: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "reverted": self.reverted,
            "name": self.name,
            "current_version": self.current_version,
            "applied": self.applied,
            "pending": self.pending,
            "duration_ms": self.duration_ms,
        }


@dataclass
class RunReport:
    """The one JSON-serialisable result of an action.

    ``migrate``: per database the versions applied by this run and those still pending.
    ``plan``: the versions a migrate would apply, and the problems that would stop it.
    ``status``: per database every applied version, the pending ones, and the history.
    """

    action: str
    source: str
    databases: list[DatabaseResult]
    duration_ms: int = 0
    lock_waited_s: float | None = None
    problems: list[dict[str, Any]] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        if self.action == "status":
            databases = [result.plan.to_dict() if result.plan else result.to_dict() for result in self.databases]
        else:
            databases = [result.to_dict() for result in self.databases]
        data: dict[str, Any] = {
            "action": self.action,
            "source": self.source,
            "databases": databases,
            "duration_ms": self.duration_ms,
        }
        if self.lock_waited_s is not None:
            data["lock_waited_s"] = round(self.lock_waited_s, 3)
        if self.action in ("plan", "status"):
            data["problems"] = self.problems
        if self.action in ("repair", "baseline"):
            data["changes"] = self.changes
        return data


class Runner:
    """Runs the actions of one source against one server.

    ``on_event`` receives progress dicts (``lock_wait``, ``lock_acquired``,
    ``file_start``, ``file_done``); ``time_left`` returns the seconds left of the
    run's budget (the Lambda's remaining time), or is None for no budget.
    """

    def __init__(
        self,
        source: MigrationSource,
        settings: Settings,
        *,
        on_event: EventSink | None = None,
        time_left: Callable[[], float] | None = None,
    ) -> None:
        self.source = source
        self.settings = settings
        self.on_event: EventSink = on_event or (lambda event: None)
        self.time_left = time_left

    # -- actions -------------------------------------------------------------------------
    def migrate(self, databases: Sequence[str] | None = None) -> RunReport:
        """Apply every pending file; raise a MigrationError on the first failure."""
        started = time.monotonic()
        refs = self.source.list()
        targets = self._targets(refs, databases)
        results: list[DatabaseResult] = []
        with self._locked() as waited:
            for database in targets:
                results.append(self._migrate_database(database, _of(refs, database)))
        return RunReport("migrate", self.source.origin, results, _ms_since(started), lock_waited_s=waited)

    def repair(
        self, database: str, *, accept_checksums: Sequence[int] = (), mark_applied: Sequence[int] = ()
    ) -> RunReport:
        """Change one database's history on purpose; ``report.changes`` says exactly what changed.

        By default removes the record of every unfinished file (undone by hand: it is
        pending again). ``mark_applied`` instead records those versions as applied
        (finished by hand). ``accept_checksums`` takes the current content of those
        applied files as reviewed. Nothing is ever repaired implicitly.
        """
        started = time.monotonic()
        refs = {ref.version: ref for ref in _of(self.source.list(), database)}
        changes: list[str] = []
        with self._locked() as waited:
            conn = connect(self.settings, database)
            try:
                history = History(conn, self.settings.history_schema)
                rows = {row.version: row for row in history.read() or []}
                for version in [*accept_checksums, *mark_applied]:
                    if version not in rows:
                        raise ConfigError(f"version {version} has no history record", database=database)
                for row in rows.values():
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
                    row, ref = rows[version], refs.get(version)
                    if ref is None:
                        raise ConfigError(f"version {version} has no file in {self.source.origin}", database=database)
                    checksum = sha256(self.source.read(ref.key))
                    if checksum == row.checksum:
                        changes.append(f"{ref.key}: checksum already matches, nothing changed")
                        continue
                    history.update(version, checksum=checksum, etag=ref.etag)
                    changes.append(f"accepted the current content of {ref.key}: checksum {row.checksum} -> {checksum}")
            finally:
                conn.close()
        result = DatabaseResult(database, None, duration_ms=_ms_since(started))
        return RunReport(
            "repair", self.source.origin, [result], _ms_since(started), lock_waited_s=waited, changes=changes
        )

    def down(self, database: str, to_version: int) -> RunReport:
        """Undo, newest first, every applied version above ``to_version`` with its down file.

        Every down file must exist before anything is undone; each runs in its own
        transaction with the removal of its history row (or in autocommit, recorded).
        """
        started = time.monotonic()
        refs = _of(self.source.list(), database)
        by_version = {ref.version: ref for ref in refs}
        with self._locked() as waited:
            conn = connect(self.settings, database)
            try:
                history = History(conn, self.settings.history_schema)
                plan = self._plan(database, refs, self._history(conn, database, refs, create=True))
                if plan.unfinished:
                    raise plan.refusal(allow_out_of_order=True) or AssertionError("unfinished without refusal")
                undo = [row for row in reversed(plan.applied) if row.version > to_version]
                self._require_down_files(database, undo, by_version)
                reverted: list[int] = []
                for index, row in enumerate(undo, start=1):
                    ref = by_version[row.version]
                    self._check_time(ref, [by_version[r.version] for r in undo[index - 1 :]], reverted)
                    down_key = ref.down_key or ref.key
                    self.on_event(
                        {
                            "event": "file_start",
                            "database": database,
                            "file": down_key,
                            "version": ref.version,
                            "index": index,
                            "total": len(undo),
                        }
                    )
                    outcome = apply_file(
                        conn, history, ref, self.source.read(down_key), self.settings.applied_by, undo=True
                    )
                    reverted.append(ref.version)
                    self.on_event(
                        {
                            "event": "file_done",
                            "database": database,
                            "file": down_key,
                            "version": ref.version,
                            "index": index,
                            "total": len(undo),
                            "mode": outcome.mode.value,
                            "duration_ms": outcome.duration_ms,
                        }
                    )
            finally:
                conn.close()
        remaining = [row.version for row in plan.applied if row.version <= to_version]
        result = DatabaseResult(database, max(remaining, default=None), duration_ms=_ms_since(started))
        result.reverted = reverted
        return RunReport("down", self.source.origin, [result], _ms_since(started), lock_waited_s=waited)

    def baseline(self, database: str, version: int) -> RunReport:
        """Record an existing database as being at ``version`` without running any file.

        Every file up to ``version`` gets a ``baselined`` history row with its current
        checksum; later files apply normally. Only for a database with no history.
        """
        started = time.monotonic()
        refs = _of(self.source.list(), database)
        if not any(ref.version == version for ref in refs):
            near = ", ".join(str(v) for v in sorted(ref.version for ref in refs)[:5]) or "none"
            raise ConfigError(
                f"no file of {database} has version {version}",
                database=database,
                hint=f"baseline at the version of one of its files (the first are: {near})",
            )
        with self._locked() as waited:
            conn = connect(self.settings, database)
            try:
                history = History(conn, self.settings.history_schema)
                existing = self._history(conn, database, refs, create=True)
                if existing:
                    raise ConfigError(
                        f"{database} already has a history ({len(existing)} rows, newest version "
                        f"{max(row.version for row in existing)}); baseline is for a database that has none",
                        database=database,
                        hint="use `dbmigrate status` to see it; `dbmigrate up` applies what is pending",
                    )
                marked = [ref for ref in refs if ref.version <= version]
                for ref in marked:
                    history.insert(
                        {
                            "version": ref.version,
                            "description": ref.description,
                            "file": ref.key,
                            "checksum": sha256(self.source.read(ref.key)),
                            "etag": ref.etag,
                            "status": "baselined",
                            "mode": "none",
                            "applied_by": self.settings.applied_by,
                        }
                    )
            finally:
                conn.close()
        changes = [f"marked {len(marked)} file(s) of {database} up to version {version} as baselined"]
        result = DatabaseResult(database, version, duration_ms=_ms_since(started))
        return RunReport(
            "baseline", self.source.origin, [result], _ms_since(started), lock_waited_s=waited, changes=changes
        )

    def plan(self, databases: Sequence[str] | None = None) -> RunReport:
        """What a migrate would apply, and what would stop it; applies and locks nothing."""
        return self._inspect("plan", databases)

    def status(self, databases: Sequence[str] | None = None) -> RunReport:
        """Applied, pending and problem files of every database; changes nothing."""
        return self._inspect("status", databases)

    # -- internals -----------------------------------------------------------------------
    @contextmanager
    def _locked(self) -> Iterator[float]:
        """Hold the run's advisory lock on the root database; yields the seconds waited."""
        # Never `with conn:`: psycopg2 opens a transaction there even in autocommit.
        conn = connect(self.settings, self.settings.root_database, application_name="dbmigrate-lock")
        try:
            with advisory_lock(
                conn, lock_key(self.settings.history_schema), wait_s=self._lock_wait(), on_wait=self.on_event
            ) as waited:
                self.on_event({"event": "lock_acquired", "waited_s": round(waited, 3)})
                yield waited
        finally:
            conn.close()

    def _targets(self, refs: Iterable[MigrationRef], requested: Sequence[str] | None) -> list[str]:
        root = self.settings.root_database
        names = set(requested) if requested else {ref.database for ref in refs}
        for name in names:
            if not DATABASE_NAME.match(name):
                raise ConfigError(f"{name!r} is not a valid database name")
        return sorted(names, key=lambda name: (name != root, name))

    def _lock_wait(self) -> float:
        wait = self.settings.lock_wait_s
        if self.time_left is not None:
            wait = max(0.0, min(wait, self.time_left() - self.settings.min_time_left_s))
        return wait

    def _migrate_database(self, database: str, refs: list[MigrationRef]) -> DatabaseResult:
        started = time.monotonic()
        conn = connect(self.settings, database)
        try:
            history = History(conn, self.settings.history_schema)
            plan = self._plan(database, refs, self._history(conn, database, refs, create=True))
            refusal = plan.refusal(allow_out_of_order=self.settings.allow_out_of_order)
            if refusal:
                raise refusal
            applied: list[int] = []
            for index, ref in enumerate(plan.pending, start=1):
                self._check_time(ref, plan.pending[index - 1 :], applied)
                self.on_event(
                    {
                        "event": "file_start",
                        "database": database,
                        "file": ref.key,
                        "version": ref.version,
                        "index": index,
                        "total": len(plan.pending),
                    }
                )
                outcome = apply_file(conn, history, ref, self.source.read(ref.key), self.settings.applied_by)
                applied.append(ref.version)
                self.on_event(
                    {
                        "event": "file_done",
                        "database": database,
                        "file": ref.key,
                        "version": ref.version,
                        "index": index,
                        "total": len(plan.pending),
                        "mode": outcome.mode.value,
                        "duration_ms": outcome.duration_ms,
                    }
                )
        finally:
            conn.close()
        known = [*applied] if plan.current_version is None else [*applied, plan.current_version]
        return DatabaseResult(database, max(known, default=None), applied, [], _ms_since(started), plan)

    def _require_down_files(
        self, database: str, undo: list[AppliedMigration], by_version: dict[int, MigrationRef]
    ) -> None:
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
                database=database,
                file=missing[0].split(" ")[0],
                hint="write the missing down file(s), or go down to a higher version; nothing was undone",
            )

    def _check_time(self, ref: MigrationRef, remaining: Sequence[MigrationRef], applied: list[int]) -> None:
        if self.time_left is None:
            return
        left = self.time_left()
        if left >= self.settings.min_time_left_s:
            return
        raise DeadlineError(
            f"stopped before {ref.key}: {left:.0f} s left, less than the {self.settings.min_time_left_s:.0f} s "
            f"kept in reserve; applied in this run: {applied or 'none'}; not started: "
            f"{[r.version for r in remaining]}",
            database=ref.database,
            file=ref.key,
            hint="run again to continue (applied files are recorded), or give the function a longer timeout",
            applied=applied,
            not_started=[r.version for r in remaining],
        )

    def _history(
        self, conn: Connection, database: str, refs: list[MigrationRef], *, create: bool
    ) -> list[AppliedMigration]:
        """The database's history; on the first run, adopted from another tool's table.

        With ``create`` (only under the lock) a missing table is created together with
        the adopted rows; plan and status only show what would be adopted.
        """
        history = History(conn, self.settings.history_schema)
        rows = history.read()
        if rows is not None:
            return rows
        adopted = adopt(conn, database, refs, lambda ref: sha256(self.source.read(ref.key)))
        if create:
            history.create(adopted)
        return [AppliedMigration(**row) for row in adopted]

    def _plan(self, database: str, refs: list[MigrationRef], applied: list[AppliedMigration]) -> DatabasePlan:
        return plan_database(database, refs, applied, self._checksums(refs, applied))

    def _checksums(self, refs: list[MigrationRef], applied: list[AppliedMigration]) -> dict[int, str]:
        """Current checksums of applied files; an unchanged ETag saves reading the file."""
        rows = {row.version: row for row in applied if row.status in DONE}
        checksums: dict[int, str] = {}
        for ref in refs:
            row = rows.get(ref.version)
            if row is None:
                continue
            if ref.etag is not None and ref.etag == row.etag:
                checksums[ref.version] = row.checksum
            else:
                checksums[ref.version] = sha256(self.source.read(ref.key))
        return checksums

    def _inspect(self, action: str, databases: Sequence[str] | None) -> RunReport:
        started = time.monotonic()
        refs = self.source.list()
        results: list[DatabaseResult] = []
        problems: list[dict[str, Any]] = []
        for database in self._targets(refs, databases):
            db_started = time.monotonic()
            plan = self._read_plan(database, _of(refs, database))
            refusal = plan.refusal(allow_out_of_order=self.settings.allow_out_of_order)
            if refusal:
                problems.append(refusal.to_dict())
            pending = [ref.version for ref in plan.pending]
            results.append(DatabaseResult(database, plan.current_version, [], pending, _ms_since(db_started), plan))
        return RunReport(action, self.source.origin, results, _ms_since(started), problems=problems)

    def _read_plan(self, database: str, refs: list[MigrationRef]) -> DatabasePlan:
        try:
            conn: Connection = connect(self.settings, database)
        except DatabaseConnectError as exc:
            if not exc.details.get("missing_database"):
                raise
            return plan_database(database, refs, [], {}, exists=False)
        try:
            return self._plan(database, refs, self._history(conn, database, refs, create=False))
        finally:
            conn.close()


def _of(refs: Iterable[MigrationRef], database: str) -> list[MigrationRef]:
    return [ref for ref in refs if ref.database == database]


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
