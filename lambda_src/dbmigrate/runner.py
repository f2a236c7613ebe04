"""The engine's entry point: migrate, plan and status over every database of a source.

The root database runs first, then the others in name order (or those asked for).
``migrate`` holds the advisory lock on the root database for the whole run, creates
each database's history table, refuses to start while a database has a changed
applied file, an unfinished file or (unless allowed) an out-of-order version, and
stops starting new files when the time budget runs short.

The lock, the run's sessions and how a lost connection or a stop request ends a run
live in ``lifecycle.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any

import psycopg2.errors

from .access import check_access
from .apply import apply_file, sha256
from .config import Settings
from .db import Connection, connect
from .errors import ConfigError, DatabaseConnectError, DeadlineError, PrivilegeError
from .history import History
from .legacy import adopt
from .lifecycle import RunLifecycle
from .lock import HeldLock
from .model import DATABASE_NAME, MigrationRef
from .plan import DONE, AppliedMigration, DatabasePlan, plan_database
from .repair import repair_history
from .report import DatabaseResult, RunReport
from .sources import ChecksumSource, MigrationSource

__all__ = ["DatabaseResult", "RunReport", "Runner"]

EventSink = Callable[[dict[str, Any]], None]


class Runner:
    """Runs the actions of one source against one server.

    ``on_event`` receives progress dicts (``lock_wait``, ``leftover_wait``, ``lock_acquired``,
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
        self._run = RunLifecycle(settings, self.on_event)

    def interrupt(self, reason: str) -> None:
        """Stop the run at the statement in flight; no further file starts (safe from any thread)."""
        self._run.interrupt(reason)

    # -- actions -------------------------------------------------------------------------
    def migrate(self, databases: Sequence[str] | None = None) -> RunReport:
        """Apply every pending file; raise a MigrationError on the first failure."""
        started = time.monotonic()
        refs = self.source.list()
        if not refs and not databases:
            raise ConfigError(
                f"no migrations found at {self.source.origin}",
                hint="point {source} at the folder that holds one sub-folder per database, "
                f"e.g. {self.settings.root_database}/202401010000_create_app.up.sql",
                settings=("source",),
            )
        targets = self._targets(refs, databases)
        results: list[DatabaseResult] = []
        with self._run.locked(self._lock_wait()) as lock:
            for database in targets:
                results.append(self._migrate_database(database, _of(refs, database)))
        return self._locked_report("migrate", results, started, lock)

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
        refs = _of(self.source.list(), database)
        with self._run.locked(self._lock_wait()) as lock, self._session(database, refs) as (history, plan):
            changes = repair_history(
                history,
                plan.applied,
                {ref.version: ref for ref in refs},
                read=self.source.read,
                accept_checksums=accept_checksums,
                mark_applied=mark_applied,
            )
        result = DatabaseResult(database, None, duration_ms=_ms_since(started))
        return self._locked_report("repair", [result], started, lock, changes=changes)

    def down(self, database: str, to_version: int, *, dry_run: bool = False) -> RunReport:
        """Undo, newest first, every applied version above ``to_version`` with its down file.

        The target must be 0 (undo everything), an applied version, or the version of a
        file in the source; anything else (a typo) is refused before anything is undone.
        What will be undone is reported (event ``down_plan``, ``report.to_undo``) before
        it is undone; with ``dry_run`` nothing else happens. Every down file must exist
        before anything is undone; each runs in its own transaction with the removal of
        its history row (or in autocommit, recorded).
        """
        started = time.monotonic()
        refs = _of(self.source.list(), database)
        by_version = {ref.version: ref for ref in refs}
        with self._run.locked(self._lock_wait()) as lock, self._session(database, refs) as (history, plan):
            if plan.unfinished:
                raise plan.refusal(allow_out_of_order=True) or AssertionError("unfinished without refusal")
            _check_down_target(database, to_version, plan, by_version)
            undo = [row for row in reversed(plan.applied) if row.version > to_version]
            files = self._down_files(database, undo, by_version)
            to_undo = [{"version": ref.version, "file": ref.key, "down_file": key} for ref, key in files]
            self.on_event({"event": "down_plan", "database": database, "to": to_version, "undo": to_undo})
            reverted = [] if dry_run else self._run_files(history, files, undo=True)
        remaining = [row.version for row in plan.applied if row.version <= to_version]
        current = max(remaining, default=None) if not dry_run else plan.current_version
        result = DatabaseResult(database, current, duration_ms=_ms_since(started))
        result.reverted = reverted
        result.to_undo = to_undo
        return self._locked_report("down", [result], started, lock, dry_run=dry_run)

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
        with self._run.locked(self._lock_wait()) as lock, self._session(database, refs) as (history, plan):
            if plan.applied:
                raise ConfigError(
                    f"{database} already has a history ({len(plan.applied)} rows, newest version "
                    f"{max(row.version for row in plan.applied)}); baseline is for a database that has none",
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
        changes = [f"marked {len(marked)} file(s) of {database} up to version {version} as baselined"]
        result = DatabaseResult(database, version, duration_ms=_ms_since(started))
        return self._locked_report("baseline", [result], started, lock, changes=changes)

    def plan(self, databases: Sequence[str] | None = None) -> RunReport:
        """What a migrate would apply, and what would stop it; applies and locks nothing."""
        return self._inspect("plan", databases)

    def status(self, databases: Sequence[str] | None = None) -> RunReport:
        """Applied, pending and problem files of every database; changes nothing."""
        return self._inspect("status", databases)

    # -- internals -----------------------------------------------------------------------
    def _locked_report(
        self, action: str, results: list[DatabaseResult], started: float, lock: HeldLock, **fields: Any
    ) -> RunReport:
        """The report of an action that held the lock: how long it waited, what releasing it left."""
        return RunReport(
            action,
            self.source.origin,
            results,
            _ms_since(started),
            lock_waited_s=lock.waited_s,
            warnings=lock.cleanup_errors,
            **fields,
        )

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

    @contextmanager
    def _session(
        self, database: str, refs: list[MigrationRef], *, writes: bool = True
    ) -> Iterator[tuple[History, DatabasePlan]]:
        """A connection to ``database`` (as its History) and its plan; the history table is
        created (or adopted from another tool) if missing. Only under the lock. With
        ``writes`` the role's right to write the history is checked first (migrate checks
        it only when something is pending: a no-op run costs no extra round trip)."""
        history = History(self._run.connect(database), self.settings.history_schema)
        try:
            plan = self._plan(database, refs, self._history(history.conn, database, refs, create=True))
            if writes or plan.pending:
                self._refuse_unless_writable(history.conn)
            yield history, plan
        finally:
            history.conn.close()  # the file loop may have replaced the first connection

    def _refuse_unless_writable(self, conn: Connection) -> None:
        refusal = check_access(conn, self.settings.history_schema).refusal(write=True)
        if refusal:
            raise refusal

    def _migrate_database(self, database: str, refs: list[MigrationRef]) -> DatabaseResult:
        started = time.monotonic()
        with self._session(database, refs, writes=False) as (history, plan):
            refusal = plan.refusal(allow_out_of_order=self.settings.allow_out_of_order)
            if refusal:
                raise refusal
            applied = self._run_files(history, [(ref, ref.key) for ref in plan.pending], undo=False)
        known = [*applied] if plan.current_version is None else [*applied, plan.current_version]
        return DatabaseResult(database, max(known, default=None), applied, [], _ms_since(started), plan)

    def _run_files(self, history: History, files: Sequence[tuple[MigrationRef, str]], *, undo: bool) -> list[int]:
        """Apply (or undo) files in order, reporting progress; returns the versions done."""
        done: list[int] = []
        for index, (ref, key) in enumerate(files, start=1):
            self._check_time(ref, files[index - 1 :], done)
            self._run.before_file(ref, key, done)
            event = {"database": ref.database, "file": key, "version": ref.version, "index": index, "total": len(files)}
            self.on_event({"event": "file_start", **event})
            run = partial(apply_file, history.conn, history, ref, self.source.read(key), self.settings.applied_by)
            outcome = self._run.apply(history.conn, partial(run, undo=undo), ref, key, done)
            done.append(ref.version)
            if outcome.reconnect:  # the file changed what only a new session sees
                history.conn.close()
                history.conn = self._run.connect(ref.database)
            self.on_event(
                {"event": "file_done", **event, "mode": outcome.mode.value, "duration_ms": outcome.duration_ms}
            )
        return done

    def _down_files(
        self, database: str, undo: list[AppliedMigration], by_version: dict[int, MigrationRef]
    ) -> list[tuple[MigrationRef, str]]:
        """The down file of every version to undo; ConfigError naming each one missing."""
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
        return [(by_version[row.version], by_version[row.version].down_key or "") for row in undo]

    def _check_time(self, ref: MigrationRef, remaining: Sequence[tuple[MigrationRef, str]], applied: list[int]) -> None:
        if self.time_left is None:
            return
        left = self.time_left()
        if left >= self.settings.min_time_left_s:
            return
        raise DeadlineError(
            f"stopped before {ref.key}: {left:.0f} s left, less than the {self.settings.min_time_left_s:.0f} s "
            f"kept in reserve; applied in this run: {applied or 'none'}; not started: "
            f"{[r.version for r, _ in remaining]}",
            database=ref.database,
            file=ref.key,
            hint="run again to continue (applied files are recorded), or give the run {time_budget}",
            settings=("time_budget",),
            applied=applied,
            not_started=[r.version for r, _ in remaining],
        )

    def _history(
        self, conn: Connection, database: str, refs: list[MigrationRef], *, create: bool
    ) -> list[AppliedMigration]:
        """The database's history; on the first run, adopted from another tool's table.

        With ``create`` (only under the lock) a missing table is created together with
        the adopted rows; plan and status only show what would be adopted.
        """
        history = History(conn, self.settings.history_schema)
        try:
            rows = history.read()
        except psycopg2.errors.InsufficientPrivilege as exc:
            access = check_access(conn, self.settings.history_schema)
            raise access.refusal(write=False) or PrivilegeError(
                f"role {access.role!r} may not read the history {self.settings.history_schema}.history: "
                f"{str(exc).strip().splitlines()[0]}",
                database=database,
                role=access.role,
                hint=f"GRANT USAGE ON SCHEMA {self.settings.history_schema} and SELECT, INSERT, UPDATE, DELETE "
                f"ON {self.settings.history_schema}.history TO {access.role}",
            ) from exc
        if rows is not None:
            return rows
        adopted = adopt(conn, database, refs, lambda ref: sha256(self.source.read(ref.key)))
        if create:
            self._refuse_unless_writable(conn)
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
            elif isinstance(self.source, ChecksumSource):  # a manifest: checksums without bodies
                checksums[ref.version] = self.source.checksum(ref.key)
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
            plan, cannot_write = self._read_plan(database, _of(refs, database))
            refusal = plan.refusal(allow_out_of_order=self.settings.allow_out_of_order)
            for problem in (cannot_write, refusal):
                if problem:
                    problems.append(problem.to_dict())
            pending = [ref.version for ref in plan.pending]
            results.append(DatabaseResult(database, plan.current_version, [], pending, _ms_since(db_started), plan))
        warnings = [] if refs or databases else [f"no migrations found at {self.source.origin}"]
        return RunReport(action, self.source.origin, results, _ms_since(started), problems=problems, warnings=warnings)

    def _read_plan(self, database: str, refs: list[MigrationRef]) -> tuple[DatabasePlan, PrivilegeError | None]:
        """The plan of one database, and why a migrate could not write its history (or None).

        A history the role cannot read is raised: a plan without it would call every file pending.
        """
        try:
            conn: Connection = connect(self.settings, database)
        except DatabaseConnectError as exc:
            if not exc.details.get("missing_database"):
                raise
            return plan_database(database, refs, [], {}, exists=False), None
        try:
            plan = self._plan(database, refs, self._history(conn, database, refs, create=False))
            if not plan.pending:
                return plan, None
            return plan, check_access(conn, self.settings.history_schema).refusal(write=True)
        finally:
            conn.close()


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


def _of(refs: Iterable[MigrationRef], database: str) -> list[MigrationRef]:
    return [ref for ref in refs if ref.database == database]


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
