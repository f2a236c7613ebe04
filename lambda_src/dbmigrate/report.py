"""The one JSON-serialisable result of every action: per database, what was done."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .plan import DatabasePlan

__all__ = ["DatabaseResult", "RunReport"]


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
    to_undo: list[dict[str, Any]] | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "current_version": self.current_version,
            "applied": self.applied,
            "pending": self.pending,
            "duration_ms": self.duration_ms,
        }
        if self.reverted:
            data["reverted"] = self.reverted
        if self.to_undo is not None:
            data["to_undo"] = self.to_undo
        return data


@dataclass
class RunReport:
    """The one JSON-serialisable result of an action.

    ``migrate``: per database the versions applied by this run and those still pending.
    ``plan``: the versions a migrate would apply, the drift (changed, missing and
    out-of-order versions), and the problems that would stop a migrate.
    ``status``: per database every applied version, the pending ones, and the history.
    ``down``: per database what was to be undone (``to_undo``: version, file, down file)
    and the versions undone (``reverted``), newest first; nothing with ``dry_run``.
    ``repair`` and ``baseline``: ``changes``, each change made to the history.
    ``warnings``: what is worth a look but stops nothing: a source with no migrations, or
    what went wrong after the work was done (releasing the lock), never a reason to
    doubt what the report says was applied.
    """

    action: str
    source: str
    databases: list[DatabaseResult]
    duration_ms: int = 0
    lock_waited_s: float | None = None
    problems: list[dict[str, Any]] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        if self.action == "status":
            databases = [result.plan.to_dict() if result.plan else result.to_dict() for result in self.databases]
        elif self.action == "plan":
            databases = [{**result.to_dict(), **_drift(result.plan)} for result in self.databases]
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
        if self.warnings:
            data["warnings"] = self.warnings
        if self.action == "down":
            data["dry_run"] = self.dry_run
        return data


def _drift(plan: DatabasePlan | None) -> dict[str, Any]:
    """What a plan found besides pending files: changed, missing and out-of-order versions."""
    if plan is None:
        return {}
    state = plan.to_dict()
    return {
        name: state[name]
        for name in (
            "pending_files",
            "exists",
            "changed",
            "different",
            "missing",
            "out_of_order",
            "unfinished",
            "notes",
        )
    }
