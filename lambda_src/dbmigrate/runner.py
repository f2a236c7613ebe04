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
from dataclasses import replace
from functools import partial
from typing import Any

from .apply import AppliedFile, how_it_runs, sha256
from .config import Settings
from .errors import ConfigError, DatabaseConnectError, DeadlineError, PrivilegeError
from .history import DONE, HistoryRow, Status
from .lifecycle import RunLifecycle
from .lock import HeldLock
from .model import MigrationRef
from .plan import DatabasePlan, down_files, plan_database
from .prefetch import ReadAhead
from .repair import RepairRequest
from .report import DatabaseResult, RunReport, ms_since
from .session import DatabaseSession
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
        with self._run.locked(self._lock_wait()) as lock:
            results = [self._migrate_database(database, _of(refs, database)) for database in targets]
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
        with self._exclusive(database, refs) as (lock, session, plan):
            request = RepairRequest(database, accept_checksums, mark_applied)
            repair = request.resolve(plan.applied, {ref.version: ref for ref in refs}, self.source.read)
            session.record(repair.rows, remove=repair.remove)
        result = DatabaseResult(database, None, duration_ms=ms_since(started))
        return self._locked_report("repair", [result], started, lock, changes=repair.changes)

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
        with ReadAhead(self.source) as reads, self._exclusive(database, refs, reads.read) as (lock, session, plan):
            files = down_files(plan, to_version, refs)
            to_undo = [{"version": ref.version, "file": ref.key, "down_file": key} for ref, key in files]
            self.on_event({"event": "down_plan", "database": database, "to": to_version, "undo": to_undo})
            reads.ahead([] if dry_run else [key for _, key in files])
            reverted = [] if dry_run else self._run_files(session, files, session.revert)
        remaining = [row.version for row in plan.applied if row.version <= to_version]
        current = plan.current_version if dry_run else max(remaining, default=None)
        result = DatabaseResult(database, current, duration_ms=ms_since(started), reverted=reverted, to_undo=to_undo)
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
        with self._exclusive(database, refs) as (lock, session, plan):
            if plan.applied:
                raise ConfigError(
                    f"{database} already has a history ({len(plan.applied)} rows, newest version "
                    f"{max(row.version for row in plan.applied)}); baseline is for a database that has none",
                    database=database,
                    hint="use `dbmigrate status` to see it; `dbmigrate up` applies what is pending",
                )
            marked = [ref for ref in refs if ref.version <= version]
            session.record([session.row(ref, self.source.read(ref.key), status=Status.BASELINED) for ref in marked])
        changes = [f"marked {len(marked)} file(s) of {database} up to version {version} as baselined"]
        result = DatabaseResult(database, version, duration_ms=ms_since(started))
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
            ms_since(started),
            lock_waited_s=lock.waited_s,
            warnings=lock.cleanup_errors,
            **fields,
        )

    def _targets(self, refs: Iterable[MigrationRef], requested: Sequence[str] | None) -> list[str]:
        """Root first, then by name; names were checked where they entered (flags, payload, layout)."""
        root = self.settings.root_database
        names = set(requested) if requested else {ref.database for ref in refs}
        return sorted(names, key=lambda name: (name != root, name))

    def _lock_wait(self) -> float:
        wait = self.settings.lock_wait_s
        if self.time_left is not None:
            wait = max(0.0, min(wait, self.time_left() - self.settings.min_time_left_s))
        return wait

    @contextmanager
    def _exclusive(
        self, database: str, refs: list[MigrationRef], read: Callable[[str], bytes] | None = None
    ) -> Iterator[tuple[HeldLock, DatabaseSession, DatabasePlan]]:
        """Under the run's lock: a session on ``database`` whose role may write the history, and its plan."""
        read = read or self.source.read
        with self._run.locked(self._lock_wait()) as lock, self._run.session(database, read) as session:
            plan = self._examine(session, refs, create=True)
            session.refuse_unless_writable()
            yield lock, session, plan

    def _migrate_database(self, database: str, refs: list[MigrationRef]) -> DatabaseResult:
        started = time.monotonic()
        with ReadAhead(self.source) as reads, self._run.session(database, reads.read) as session:
            plan = self._examine(session, refs, create=True)
            if plan.pending:  # a no-op run costs no extra round trip
                session.refuse_unless_writable()
            refusal = plan.refusal(allow_out_of_order=self.settings.allow_out_of_order)
            if refusal:
                raise refusal
            reads.ahead([ref.key for ref in plan.pending])
            if self.settings.all_or_nothing and plan.pending:
                applied = self._apply_as_one(session, list(plan.pending))
            else:
                applied = self._apply_files(session, list(plan.pending))
        known = [*applied] if plan.current_version is None else [*applied, plan.current_version]
        return DatabaseResult(database, max(known, default=None), applied, [], ms_since(started), plan)

    def _run_files(
        self,
        session: DatabaseSession,
        files: Sequence[tuple[MigrationRef, str]],
        step: Callable[[MigrationRef], AppliedFile],
    ) -> list[int]:
        """``step`` (apply or revert) each file in order, reporting progress; returns the versions done."""
        done: list[int] = []
        for index, (ref, key) in enumerate(files, start=1):
            self._check_time(ref, files[index - 1 :], done)
            self._run.before_file(ref, key, done)
            event = _file_event(ref, key, index, len(files))
            self.on_event({"event": "file_start", **event})
            outcome = self._run.run_file(session, partial(step, ref), ref, key, done)
            done.append(ref.version)
            self.on_event({"event": "file_done", **event, **outcome.measured()})
        return done

    def _apply_files(self, session: DatabaseSession, refs: list[MigrationRef]) -> list[int]:
        """Apply each file in order, consecutive plain transactional ones sent together; the versions done."""
        done: list[int] = []
        total = len(refs)
        while len(done) < total:
            first = refs[len(done)]
            self._check_time(first, [(ref, ref.key) for ref in refs[len(done) :]], done)
            self._run.before_file(first, first.key, done)
            group = session.together(refs[len(done) :])
            applied = self._progress(group, done, total)
            budget = None if self.time_left is None else self.time_left() - self.settings.min_time_left_s
            send = partial(session.apply_together, group, applied, start_within_s=budget)
            self._run.run_file(session, send, first, first.key, done)
        return done

    def _apply_as_one(self, session: DatabaseSession, refs: list[MigrationRef]) -> list[int]:
        """Every file in one transaction: all their versions, or an error and none."""
        done: list[int] = []
        first = refs[0]
        self._check_time(first, [(ref, ref.key) for ref in refs], done)
        self._run.before_file(first, first.key, done)
        applied = self._progress(refs, done, len(refs))
        self._run.run_file(session, partial(session.apply_as_one, refs, applied), first, first.key, done)
        return done

    def _progress(self, refs: Sequence[MigrationRef], done: list[int], total: int) -> Callable[[AppliedFile], None]:
        """``file_start`` for each of ``refs`` (files ``len(done) + 1``... of ``total``); then, given to
        the session, what reports each one applied (``file_done``) and adds its version to ``done``."""
        for index, ref in enumerate(refs, start=len(done) + 1):
            self.on_event({"event": "file_start", **_file_event(ref, ref.key, index, total)})

        def applied(outcome: AppliedFile) -> None:
            done.append(outcome.ref.version)
            event = _file_event(outcome.ref, outcome.ref.key, len(done), total)
            self.on_event({"event": "file_done", **event, **outcome.measured()})

        return applied

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

    def _examine(self, session: DatabaseSession, refs: list[MigrationRef], *, create: bool) -> DatabasePlan:
        """The plan of the session's database (its history created or adopted with ``create``)."""
        rows = session.rows(refs, create=create)
        return plan_database(session.database, refs, rows, self._checksums(refs, rows))

    def _checksums(self, refs: list[MigrationRef], applied: list[HistoryRow]) -> dict[int, str]:
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
        """Plan and status: the one look at every database; the report's action picks what it shows."""
        started = time.monotonic()
        refs = self.source.list()
        results: list[DatabaseResult] = []
        problems: list[dict[str, Any]] = []
        for database in self._targets(refs, databases):
            db_started = time.monotonic()
            plan, cannot_write = self._look(database, _of(refs, database))
            plan = replace(plan, modes=self._how_pending(plan.pending))
            problems += [mode["error"] for mode in plan.modes.values() if "error" in mode]
            refusal = plan.refusal(allow_out_of_order=self.settings.allow_out_of_order)
            problems += [problem.to_dict() for problem in (cannot_write, refusal) if problem]
            pending = [ref.version for ref in plan.pending]
            results.append(DatabaseResult(database, plan.current_version, [], pending, ms_since(db_started), plan))
        warnings = [] if refs or databases else [f"no migrations found at {self.source.origin}"]
        return RunReport(action, self.source.origin, results, ms_since(started), problems=problems, warnings=warnings)

    def _how_pending(self, pending: Sequence[MigrationRef]) -> dict[int, dict[str, Any]]:
        """How each pending file would run, read and parsed as a migrate would (not from a manifest)."""
        if isinstance(self.source, ChecksumSource):
            return {}
        return {ref.version: how_it_runs(self.source.read(ref.key), ref) for ref in pending}

    def _look(self, database: str, refs: list[MigrationRef]) -> tuple[DatabasePlan, PrivilegeError | None]:
        """The plan of one database, and why a migrate could not write its history (or None).

        A history the role cannot read is raised: a plan without it would call every file pending.
        """
        try:
            with self._run.session(database, self.source.read) as session:
                plan = self._examine(session, refs, create=False)
                return plan, session.write_refusal() if plan.pending else None
        except DatabaseConnectError as exc:
            if not exc.details.get("missing_database"):
                raise
            return plan_database(database, refs, [], {}, exists=False), None


def _file_event(ref: MigrationRef, key: str, index: int, total: int) -> dict[str, Any]:
    return {"database": ref.database, "file": key, "version": ref.version, "index": index, "total": total}


def _of(refs: Iterable[MigrationRef], database: str) -> list[MigrationRef]:
    return [ref for ref in refs if ref.database == database]
