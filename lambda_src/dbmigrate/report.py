"""The one JSON-serialisable result of every action: per database, what was done."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from .plan import DatabasePlan

__all__ = ["DatabaseResult", "RunReport", "ms_since", "target_problem"]

# What a plan shows of a database's state besides its pending files (status shows all of it).
DRIFT = ("exists", "changed", "different", "missing", "out_of_order", "unfinished", "notes")


def ms_since(started: float) -> int:
    """Milliseconds since ``started`` (a ``time.monotonic()`` reading)."""
    return int((time.monotonic() - started) * 1000)


def target_problem(target: str, problem: dict[str, Any]) -> dict[str, Any]:
    """A problem of one fleet target, in the fleet's list of problems: it names the target."""
    return {**problem, "target": target, "message": f"{target}: {problem.get('message', '')}"}


@dataclass
class DatabaseResult:
    """What a run did to one database; for plan and status, the state found (``plan``)."""

    name: str
    current_version: int | None
    applied: list[int] = field(default_factory=list)
    pending: list[int] = field(default_factory=list)
    duration_ms: int = 0
    plan: DatabasePlan | None = None
    reverted: list[int] = field(default_factory=list)
    to_undo: list[dict[str, Any]] | None = None

    def to_dict(self, action: str = "migrate") -> dict[str, Any]:
        """This database's part of the action's document (status: the whole state found)."""
        state = self.plan.to_dict() if self.plan else {}
        if action == "status" and state:
            return state
        data: dict[str, Any] = {
            "name": self.name,
            "current_version": self.current_version,
            "applied": self.applied,
            "pending": self.pending,
            "duration_ms": self.duration_ms,
        }
        if action == "plan":
            data.update((name, state[name]) for name in ("pending_files", *DRIFT) if name in state)
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
        data: dict[str, Any] = {
            "action": self.action,
            "source": self.source,
            "databases": [result.to_dict(self.action) for result in self.databases],
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
