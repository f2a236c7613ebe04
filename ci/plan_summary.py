"""Render a plan (``dbmigrate plan --json``, local or ``--function``) as Markdown for a CI job summary.

``python -m ci.plan_summary plan.json >> "$GITHUB_STEP_SUMMARY"``; exits 1 when the plan
names a problem (a deploy would be refused), 2 when the file is not a plan (the error
the CLI printed instead is shown). Below the table it says what the infrastructure diff
always shows for the deploy-time run in the stack's run mode (read like ``main.py`` does:
``cdktf.json`` and ``DBMIGRATE_RUN_MODE``), so that nobody reads it as drift.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["main", "render"]

SHOWN_VERSIONS = 10
"""A first deploy can have hundreds of pending files: cells list this many, then a count."""


INVOCATION_NOTE = {
    "every-apply": (
        "**About the infrastructure diff (not drift):** every infrastructure plan shows the deploy-time "
        "run (`aws_lambda_invocation`) "
        "as *must be replaced*, so the plan is never empty (at least 1 to add and 1 to destroy, and "
        "`migration_result` known after apply): its trigger `applied_at` is `timestamp()`, known only "
        "at apply, and a changed trigger forces a new invocation. That is how it runs on every apply. "
        "Each apply invokes the function twice: the old invocation's destroy "
        '(`"tf": {"action": "delete"}`, answered without touching a database), then the new one\'s '
        'create (`"tf": {"action": "create"}`), which migrates. A refresh never invokes it.'
    ),
    "on-change": (
        "**About the infrastructure diff (not drift):** the infrastructure plan shows the deploy-time "
        "run (`aws_lambda_invocation`) "
        "as *must be replaced* whenever its trigger `content` changes (a migration file, the prefix "
        "or the function's package). The apply then invokes the function twice: the old invocation's "
        'destroy (`"tf": {"action": "delete"}`, answered without touching a database), then the new '
        'one\'s create (`"tf": {"action": "create"}`), which migrates. A refresh never invokes it.'
    ),
}
"""What the infrastructure diff shows for the invocation (internal/service/lambda/invocation.go:
``triggers`` is ForceNew, replacement is destroy-then-create, delete invokes in CRUD scope, read
is a no-op)."""


def render(plan: dict[str, Any], run_mode: str | None = "every-apply") -> str:
    """The plan as Markdown: one row per database, every problem, then what the diff shows for the run.

    ``run_mode`` is the stack's; ``None`` (unknown) explains both modes.
    """
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
    modes = [run_mode] if run_mode in INVOCATION_NOTE else list(INVOCATION_NOTE)
    for mode in modes:
        lines += ["", (f"With run_mode `{mode}`: " if len(modes) > 1 else "") + INVOCATION_NOTE[mode]]
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
    print(render(plan, _run_mode()), end="")
    return 1 if plan.get("problems") else 0


def _run_mode() -> str | None:
    """The stack's run mode, as the synth reads it; ``None`` when the configuration is not readable."""
    from infra.config import ConfigError  # noqa: PLC0415
    from main import load_config  # noqa: PLC0415

    try:
        return load_config(os.environ).run_mode
    except (ConfigError, OSError, ValueError):
        return None


if __name__ == "__main__":
    sys.exit(main())
