"""Render a plan (``dbmigrate plan --json``, local or ``--function``) as Markdown for a CI job summary.

``python -m ci.plan_summary plan.json >> "$GITHUB_STEP_SUMMARY"``; exits 1 when the plan
names a problem (a deploy would be refused), 2 when the file is not a plan (the error
the CLI printed instead is shown).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["main", "render"]

SHOWN_VERSIONS = 10
"""A first deploy can have hundreds of pending files: cells list this many, then a count."""


def render(plan: dict[str, Any]) -> str:
    """The plan as Markdown: one row per database, then every problem."""
    lines = [
        "### Migrations plan",
        "",
        "| database | current version | would apply | changed since applied | missing | out of order |",
        "|---|---|---|---|---|---|",
    ]
    pending = 0
    for database in plan.get("databases", []):
        pending += len(database.get("pending") or [])
        current = database.get("current_version")
        if current is None:
            current = "none yet" if database.get("exists", True) else "not created yet"
        lines.append(
            "| {name} | {current} | {pending} | {changed} | {missing} | {late} |".format(
                name=database["name"],
                current=current,
                pending=_versions(database.get("pending")),
                changed=_versions(database.get("changed")),
                missing=_versions(database.get("missing")),
                late=_versions(database.get("out_of_order")),
            )
        )
    problems = plan.get("problems") or []
    lines.append("")
    if problems:
        lines.append("**A deploy would fail:**")
        lines += [f"- {_one_line(problem.get('message', problem))}" for problem in problems]
    else:
        lines.append(f"No drift: a deploy would apply {pending} file(s).")
    return "\n".join(lines) + "\n"


def _versions(versions: list[int] | None) -> str:
    if not versions:
        return "-"
    shown = ", ".join(str(v) for v in versions[:SHOWN_VERSIONS])
    return shown + (f" and {len(versions) - SHOWN_VERSIONS} more" if len(versions) > SHOWN_VERSIONS else "")


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def main(argv: list[str] | None = None) -> int:
    """Print the summary of the plan file named by the first argument; the exit code says if it is safe."""
    args = sys.argv[1:] if argv is None else argv
    try:
        plan = json.loads(Path(args[0]).read_text())
    except (IndexError, OSError, ValueError) as exc:
        print(f"**No plan:** {exc}")
        return 2
    if not isinstance(plan, dict) or "databases" not in plan:
        answer = plan.get("message", plan) if isinstance(plan, dict) else plan
        print(f"**No plan:** `{_one_line(answer)[:500]}`")
        return 2
    print(render(plan), end="")
    return 1 if plan.get("problems") else 0


if __name__ == "__main__":
    sys.exit(main())
