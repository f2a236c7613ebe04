"""Render a plan (``dbmigrate plan --json``, local or ``--function``) as Markdown for a CI job summary.

``python -m ci.plan_summary plan.json >> "$GITHUB_STEP_SUMMARY"``; exits 1 when the plan
names a problem (a migrate would be refused), 2 when the file is not a plan.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def render(plan: dict[str, Any]) -> str:
    """The plan as Markdown: one row per database, then every problem."""
    lines = [
        "### Migrations plan",
        "",
        "| database | current version | would apply | changed since applied | missing | out of order |",
        "|---|---|---|---|---|---|",
    ]
    for database in plan.get("databases", []):
        lines.append(
            "| {name} | {current} | {pending} | {changed} | {missing} | {late} |".format(
                name=database["name"],
                current=database.get("current_version") or "-",
                pending=_versions(database.get("pending")),
                changed=_versions(database.get("changed")),
                missing=_versions(database.get("missing")),
                late=_versions(database.get("out_of_order")),
            )
        )
    problems = plan.get("problems", [])
    lines.append("")
    if problems:
        lines.append("**A deploy would fail:**")
        lines += [f"- {problem['message']}" for problem in problems]
    else:
        lines.append("No drift: a deploy would apply the files listed.")
    return "\n".join(lines) + "\n"


def _versions(versions: list[int] | None) -> str:
    return ", ".join(str(v) for v in versions) if versions else "-"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        plan = json.loads(Path(args[0]).read_text())
    except (IndexError, OSError, ValueError) as exc:
        print(f"**No plan:** {exc}")
        return 2
    if not isinstance(plan, dict) or "databases" not in plan:
        print(f"**No plan:** the function answered `{str(plan)[:300]}`")
        return 2
    print(render(plan), end="")
    return 1 if plan.get("problems") else 0


if __name__ == "__main__":
    sys.exit(main())
