"""Where our engine spends its time: py-spy samples of ``dbmigrate up``, idle time included.

Two runs are profiled: applying the 1,000-file set, and the no-op re-run of the largest
set. py-spy comes from the Pipfile environment, PATH or ``bench/.venv-peers``; without
it, nothing is profiled.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from local.postgres import EmbeddedPostgres

from .measure import fresh_database, run_measured
from .sets import MigrationSet, write_layouts
from .tools import PEERS_VENV, Tool

__all__ = ["profile_ours", "summarize"]

RATE = 1000  # samples per second
TOP = 22
# Interpreter plumbing that would crowd the list: the import machinery and runpy.
PLUMBING = ("<frozen", "runpy")
FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _py_spy() -> str | None:
    """py-spy from the Pipfile environment, PATH, or bench/.venv-peers."""
    for candidate in (Path(sys.executable).parent / "py-spy", PEERS_VENV / "bin" / "py-spy"):
        if candidate.is_file():
            return str(candidate)
    return shutil.which("py-spy")


def profile_ours(ours: Tool, server: EmbeddedPostgres, sets: list[MigrationSet], work: Path) -> dict[str, Any]:
    """Profiles of our apply (the set closest to 1,000 files) and our no-op (the largest set)."""
    py_spy = _py_spy()
    if py_spy is None:
        return {}
    small = [s for s in sets if s.kind == "small"]
    apply_set = min(small, key=lambda s: abs(s.files - 1000))
    noop_set = max(sets, key=lambda s: s.files)
    profiles = {}
    layouts = write_layouts(apply_set, work / "sets" / apply_set.name)
    fresh_database(server)
    profiles[f"apply, {apply_set.name}"] = _record(py_spy, ours, ours.commands(layouts, server)[0], work)
    layouts = write_layouts(noop_set, work / "sets" / noop_set.name)
    fresh_database(server)
    run_measured(ours.commands(layouts, server), env=ours.env, log=work / "tool-output.log")
    profiles[f"no-op re-run, {noop_set.name}"] = _record(py_spy, ours, ours.commands(layouts, server)[0], work)
    return profiles


def _record(py_spy: str, tool: Tool, command: list[str], work: Path) -> dict[str, Any]:
    raw = work / "profile.raw"
    subprocess.run(
        [py_spy, "record", "--idle", "--rate", str(RATE), "--format", "raw", "--output", str(raw), "--", *command],
        env=tool.env,
        capture_output=True,
        check=True,
    )
    return summarize(raw.read_text())


def summarize(raw: str) -> dict[str, Any]:
    """Inclusive share of the samples per function, from py-spy's collapsed stacks."""
    inclusive: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        seen = set()
        frames = [_short(frame) for frame in stack.split(";")]
        frames = [name for name in frames if not any(marker in name for marker in PLUMBING)]
        for name in frames:
            if name not in seen:
                seen.add(name)
                inclusive[name] += count
        if frames:
            leaf[frames[-1]] += count
    return {
        "samples": total,
        "top": [(name, n / total) for name, n in inclusive.most_common(TOP)],
        "self": [(name, n / total) for name, n in leaf.most_common(TOP // 2)],
    }


def _short(frame: str) -> str:
    match = FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match["file"]
    for marker in ("site-packages/", "lambda_src/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{match['function']} ({path})"
