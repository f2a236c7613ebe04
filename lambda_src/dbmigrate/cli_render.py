"""Output for people, rendered from the result documents that ``--json`` prints: one renderer per action.

A local run's ``report.to_dict()`` and the deployed function's answer to a remote plan
are the same documents, so they print the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TextIO

__all__ = ["render"]

Document = dict[str, Any]
UNFINISHED = ("partial", "running")


def render(result: Document, out: TextIO, err: TextIO) -> None:
    """Print one action's result: its own lines, then changes and problems (and warnings on ``err``)."""
    RENDERERS[result["action"]](result, out)
    changes = result.get("changes", [])
    for change in changes:
        print(f"changed: {change}", file=out)
    if result["action"] == "repair" and not changes:
        print("nothing to repair", file=out)
    for problem in result.get("problems", []):
        print(f"problem: {problem['message']}", file=out)
    for warning in result.get("warnings", []):
        print(f"warning: {warning}", file=err)


def _migrate(result: Document, out: TextIO) -> None:
    rows = [("DATABASE", "CURRENT VERSION", "APPLIED NOW", "TIME")]
    rows += [
        (d["name"], _version(d["current_version"]), str(len(d["applied"])), f"{d['duration_ms']} ms")
        for d in result["databases"]
    ]
    _table(rows, out)
    total = sum(len(d["applied"]) for d in result["databases"])
    print(f"applied {total} file(s) in {result['duration_ms']} ms", file=out)


def _plan(result: Document, out: TextIO) -> None:
    for database in result["databases"]:
        pending = database["pending"]
        print(f"{database['name']}: {len(pending)} pending (current {_version(database['current_version'])})", file=out)
        for entry in database.get("pending_files", pending):  # a function deployed before pending_files: versions
            print(f"  + {_pending_line(entry)}", file=out)
        for kind in ("changed", "missing", "out_of_order"):
            if database.get(kind):
                print(f"  {kind.replace('_', ' ')}: {database[kind]}", file=out)
        for note in database.get("notes", []):
            print(f"  note: {note}", file=out)


def _status(result: Document, out: TextIO) -> None:
    rows = [("DATABASE", "VERSION", "FILE", "STATE", "APPLIED AT", "TOOK", "BY")]
    for database in result["databases"]:
        name = database["name"]
        rows += [(name, str(row["version"]), row["file"], *_history_cells(row)) for row in database.get("history", [])]
        rows += [
            (name, str(entry["version"]), entry["file"], "pending", "", "", "")
            for entry in database.get("pending_files", [])
        ]
    _table(rows, out)


def _pending_line(entry: Document | int) -> str:
    """A pending file and how it would run: one transaction, or statement by statement and why."""
    if not isinstance(entry, dict):
        return str(entry)
    if entry.get("error"):
        return f"{entry['file']}  (would fail: {entry['error']['message']})"
    if entry["mode"] == "transaction":
        return f"{entry['file']}  (one transaction{', as the file says' if entry['declared'] else ''})"
    if entry["mode"] == "autocommit":
        return f"{entry['file']}  (statement by statement: {entry['reason']})"
    return f"{entry['file']}  ({entry['reason']})"


def _history_cells(row: Document) -> tuple[str, str, str, str]:
    """STATE, APPLIED AT, TOOK and BY of one history row."""
    state = row["status"]
    if row["status"] in UNFINISHED and row.get("statements_done") is not None:
        state += f" ({row['statements_done']}/{row['statements_total']} statements)"
    when = datetime.fromisoformat(row["applied_at"]).strftime("%Y-%m-%d %H:%M:%S") if row["applied_at"] else ""
    took = f"{row['duration_ms']} ms" if row["duration_ms"] is not None else ""
    return state, when, took, row["applied_by"] or ""


def _down(result: Document, out: TextIO) -> None:
    for database in result["databases"]:
        if result["dry_run"]:
            would = [item["version"] for item in database.get("to_undo") or []]
            print(f"{database['name']}: would undo {would or 'nothing'} (dry run: nothing undone)", file=out)
        else:
            undid = database.get("reverted") or "nothing"
            print(f"{database['name']}: undid {undid}; now at {_version(database['current_version'])}", file=out)


def _fleet(result: Document, out: TextIO) -> None:
    """A table (status) or the plan of each target, stage by stage; its errors are among the problems."""
    for target in result["targets"]:
        print(f"target {target['target']} ({target['stage']}, {target['server']})", file=out)
        if target["errors"]:
            print(f"  {len(target['errors'])} error(s): see the problems below", file=out)
        if result["action"] == "fleet-plan":
            _plan(target, out)
        elif target["databases"]:
            rows = [("DATABASE", "CURRENT VERSION", "APPLIED", "PENDING", "DRIFT")]
            rows += [
                (d["name"], _version(d["current_version"]), str(d["applied"]), str(len(d["pending"])), _drift(d))
                for d in target["databases"]
            ]
            _table(rows, out)
        print(file=out)
    counts = {"up to date": 0, "pending": 0, "with problems": 0}
    for target in result["targets"]:
        troubled = target["errors"] or target["problems"]
        busy = any(database["pending"] for database in target["databases"])
        counts["with problems" if troubled else "pending" if busy else "up to date"] += 1
    said = ", ".join(f"{count} {what}" for what, count in counts.items())
    print(f"{len(result['targets'])} target(s): {said}", file=out)


def _drift(database: Document) -> str:
    """What is wrong with a database's history, in a few words (status --json has the versions)."""
    kinds = ("changed", "different", "missing", "out_of_order", "unfinished")
    said = [f"{len(database[kind])} {kind.replace('_', ' ')}" for kind in kinds if database.get(kind)]
    if database.get("exists") is False:
        said.insert(0, "not created")
    return ", ".join(said)


def _changes_only(result: Document, out: TextIO) -> None:
    """repair and baseline: what they changed is all there is to say (``render`` prints it)."""


RENDERERS: dict[str, Callable[[Document, TextIO], None]] = {
    "migrate": _migrate,
    "plan": _plan,
    "status": _status,
    "down": _down,
    "repair": _changes_only,
    "baseline": _changes_only,
    "fleet-status": _fleet,
    "fleet-plan": _fleet,
}


def _version(version: int | None) -> str:
    return "-" if version is None else str(version)


def _table(rows: Sequence[tuple[str, ...]], out: TextIO) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip(), file=out)
