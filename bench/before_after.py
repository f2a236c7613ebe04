"""Our engine at a git revision against the work tree, beside dbmate and the psql floor, on a durable server.

``.venv/bin/python -m bench.before_after --before REV [--files 100 1000] [--runs 7] [--append]``

For each set of small files (``bench.sets.small_set``), every tool applies it to a fresh
database of one throwaway server with durable settings (as RDS commits), once untimed
and then ``--runs`` times in rotating order, so that a load that comes and goes on the
machine falls on every tool alike. Prints the median wall time (min-max), the median CPU
time of the tool's processes (which moves less with that load), and each tool against
dbmate and against the floor; ``--append`` writes the section into bench/RESULTS.md.
A quicker check than ``bench.run`` for one change (a few minutes); nothing here asserts.
"""

from __future__ import annotations

import argparse
import os
import statistics
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from local.postgres import EmbeddedPostgres

from .measure import Sample, fresh_database, run_measured
from .report import publish
from .run import SERVER_SETTINGS, SERVERS, WORK
from .sets import small_set, write_layouts
from .tools import DBMATE_NAME, OURS_TOOLS, PSQL_FLOOR, Tool, engine_snapshot, find_tools

HEADING = "## Before and after one change: our engine at two revisions (durable server)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="the git revision to compare the work tree with")
    parser.add_argument("--files", type=int, nargs="+", default=[100, 1000], help="sizes of the small sets")
    parser.add_argument("--runs", type=int, default=7, help="timed runs per tool and set")
    parser.add_argument("--append", action="store_true", help="write the section into bench/RESULTS.md")
    args = parser.parse_args()
    work = WORK / "before_after"
    start_load = os.getloadavg()
    with EmbeddedPostgres(settings={**SERVERS["durable"], **SERVER_SETTINGS}) as server:
        tools = _tools(server, engine_snapshot(args.before, work), args.before)
        rows = [_measure(server, tools, count, args.runs, work) for count in args.files]
    section = _section(rows, args, start_load)
    publish(section, append=args.append)


def _tools(server: EmbeddedPostgres, before: Path, revision: str) -> list[Tool]:
    """Ours before and after (each also with --all-or-nothing), dbmate, and the psql floor."""
    after, _ = find_tools(server)
    old, _ = find_tools(server, before)
    renamed = [replace(tool, name=f"{tool.name}, before ({revision})") for tool in old if tool.name in OURS_TOOLS]
    now = [replace(tool, name=f"{tool.name}, after (work tree)") for tool in after if tool.name in OURS_TOOLS]
    return renamed + now + [tool for tool in after if tool.name in (DBMATE_NAME, PSQL_FLOOR)]


def _measure(
    server: EmbeddedPostgres, tools: list[Tool], count: int, runs: int, work: Path
) -> tuple[int, dict[str, list[Sample]]]:
    layouts = write_layouts(small_set(count), work / f"small-{count}")
    samples: dict[str, list[Sample]] = {tool.name: [] for tool in tools}
    log = work / "tools.log"
    for run in range(-1, runs):  # run -1: untimed, warms the caches
        order = tools[run % len(tools) :] + tools[: run % len(tools)] if run >= 0 else tools
        for tool in order:
            fresh_database(server)
            sample = run_measured(tool.commands(layouts, server), env=tool.env, log=log)
            if run >= 0:
                samples[tool.name].append(sample)
            print(f"small-{count} #{run + 1} {tool.name}: {sample.seconds:.2f} s", flush=True)
    return count, samples


def _section(
    rows: list[tuple[int, dict[str, list[Sample]]]], args: argparse.Namespace, start_load: tuple[float, float, float]
) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = " ".join(f"{value:.1f}" for value in start_load), " ".join(f"{value:.1f}" for value in os.getloadavg())
    lines = [
        "",
        HEADING,
        "",
        f"`python -m bench.before_after --before {args.before} --files {' '.join(map(str, args.files))} "
        f"--runs {args.runs}`: measured {when}, load average {load[0]} to {load[1]}; median of "
        f"{args.runs} runs in rotating order after an untimed one; CPU: the tool's processes (user + system).",
        "",
    ]
    for count, samples in rows:
        wall = {name: statistics.median(s.seconds for s in runs) for name, runs in samples.items()}
        floor, dbmate = wall[PSQL_FLOOR], wall.get(DBMATE_NAME)
        lines += [
            f"small-{count}:",
            "",
            "| tool | wall (s): median (min-max) | CPU (s) | vs dbmate | vs psql floor |",
            "|---|---|---|---|---|",
        ]
        for name, runs in samples.items():
            low, high = min(s.seconds for s in runs), max(s.seconds for s in runs)
            cpu = statistics.median(s.cpu_s for s in runs)
            versus = f"{wall[name] / dbmate:.2f}x" if dbmate else "-"
            spread = f"{wall[name]:.3f} ({low:.3f}-{high:.3f})"
            lines.append(f"| {name} | {spread} | {cpu:.3f} | {versus} | {wall[name] / floor:.2f}x |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
