"""Benchmark: dbmigrate against dbmate, yoyo and the psql floors, on one throwaway server.

``.venv/bin/python -m bench.run`` generates the sets (1,000 small files, 200 medium
files, 5,000 small files), applies each with every tool on a fresh database of one
throwaway PostgreSQL, at least 3 times (median reported), times a second run with
nothing to do, records peak memory, counts the queries each tool sends (one extra
untimed run with ``log_statement = all``), profiles our engine when py-spy is found,
and writes ``bench/RESULTS.md`` and ``bench/time_vs_files.png``.

``--quick`` (100 small and 20 medium files, one repetition, no profile) writes to
``bench/.work/`` instead and prints the table: a check to re-run after a change.
Not part of the test suite: nothing here asserts on a time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from local.postgres import EmbeddedPostgres

from . import chart as charts
from . import lambda_numbers, profile, report
from .measure import count_queries, fresh_database, run_measured
from .sets import MigrationSet, medium_set, small_set, write_layouts
from .tools import BENCH, OURS, PSQL_PER_FILE, Tool, engine_snapshot, find_tools

WORK = BENCH / ".work"
COUNT_PEERS_UP_TO = 1000  # files; counting queries on larger sets only for ours (yoyo is slow)
PER_FILE_PSQL_UP_TO = 1000  # files; one psql process per file takes minutes on larger sets
# A single transaction creating thousands of tables (the psql floor) needs more lock slots.
SERVER_SETTINGS = {"max_locks_per_transaction": "1024"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sets, one repetition (under a minute)")
    parser.add_argument("--repetitions", type=int, default=None, help="runs per tool and set (default 3; quick 1)")
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy profile of our engine")
    parser.add_argument(
        "--engine", metavar="REV", help="benchmark our engine as of this git revision (default: the work tree)"
    )
    parser.add_argument(
        "--render-only", action="store_true", help="rewrite RESULTS.md and the chart from the last full run's numbers"
    )
    args = parser.parse_args(argv)
    if args.render_only:
        return _write(json.loads((WORK / "results.json").read_text()), WORK / "results.json", BENCH)
    repetitions = args.repetitions or (1 if args.quick else 3)
    if args.quick:
        sets = [small_set(100), medium_set(20)]
    else:
        sets = [small_set(100), small_set(1000), medium_set(200), small_set(5000)]
    out = WORK if args.quick else BENCH
    WORK.mkdir(exist_ok=True)

    engine = engine_snapshot(args.engine, WORK) if args.engine else None
    started = time.monotonic()
    server = EmbeddedPostgres(settings=SERVER_SETTINGS).start()
    try:
        tools, missing = find_tools(server, engine)
        for line in missing:
            print(f"skipped {line}", file=sys.stderr)
        results = {s.name: _bench_set(s, tools, server, repetitions) for s in sets}
        profiles = {} if args.quick or args.no_profile else profile.profile_ours(tools[0], server, sets, WORK)
        environment = report.environment(server, tools, repetitions)
        lambdas = lambda_numbers.measure(
            server, WORK, files=max(s.files for s in sets), lambda_src=engine, quick=args.quick
        )
    finally:
        server.destroy()
    data = {
        "environment": environment,
        "missing": missing,
        "sets": [{"name": s.name, "kind": s.kind, "files": s.files} for s in sets],
        "results": results,
        "profiles": profiles,
        "lambda": lambdas,
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    results_json = WORK / ("results-quick.json" if args.quick else "results.json")
    results_json.write_text(json.dumps(data, indent=2))
    return _write(data, results_json, out)


def _write(data: dict[str, Any], results_json: Path, out: Path) -> int:
    chart = charts.chart(data, results_json, out / "time_vs_files.png")
    markdown = report.render(data, chart=chart)
    target = out / "RESULTS.md"
    report.write_preserving_notes(target, markdown)
    print(report.summary_table(data))
    print(f"wrote {target}" + (f" and {chart}" if chart else " (no chart: matplotlib missing)"))
    return 0


def _bench_set(migration_set: MigrationSet, tools: list[Tool], server: EmbeddedPostgres, repetitions: int) -> Any:
    layouts = write_layouts(migration_set, WORK / "sets" / migration_set.name)
    log = WORK / "tool-output.log"
    log.write_bytes(b"")
    if migration_set.files > PER_FILE_PSQL_UP_TO:
        tools = [tool for tool in tools if tool.name != PSQL_PER_FILE]
    samples: dict[str, dict[str, list[Any]]] = {tool.name: {"apply": [], "noop": []} for tool in tools}
    # One untimed run first: the first DDL on a fresh cluster is slower than the rest.
    fresh_database(server)
    run_measured(tools[-1].commands(layouts, server), env=tools[-1].env, log=log)
    for repetition in range(repetitions):
        # Rotate the order so that no tool always runs first (or last) on a warm server.
        order = tools[repetition % len(tools) :] + tools[: repetition % len(tools)]
        for tool in order:
            fresh_database(server)
            commands = tool.commands(layouts, server)
            samples[tool.name]["apply"].append(asdict(run_measured(commands, env=tool.env, log=log)))
            if tool.history:
                samples[tool.name]["noop"].append(asdict(run_measured(commands, env=tool.env, log=log)))
            seconds = samples[tool.name]["apply"][-1]["seconds"]
            print(f"{migration_set.name} #{repetition + 1} {tool.name}: {seconds:.2f} s", flush=True)
    results: dict[str, Any] = {}
    for tool in tools:
        entry: dict[str, Any] = {"version": tool.version, "peer": tool.peer, **samples[tool.name]}
        for phase in ("apply", "noop"):
            runs = samples[tool.name][phase]
            if runs:
                entry[f"{phase}_median_s"] = statistics.median(r["seconds"] for r in runs)
                entry[f"{phase}_max_rss_kib"] = max(r["max_rss_kib"] for r in runs)
                entry[f"{phase}_cpu_s"] = statistics.median(r.get("cpu_s", 0.0) for r in runs)
        if tool.history and (tool.name == OURS or migration_set.files <= COUNT_PEERS_UP_TO):
            entry["queries"] = _count(tool, layouts, server)
        results[tool.name] = entry
    return results


def _count(tool: Tool, layouts: Any, server: EmbeddedPostgres) -> dict[str, Any]:
    fresh_database(server)
    commands = tool.commands(layouts, server)
    log = WORK / "tool-output.log"
    with count_queries(server) as applied:
        run_measured(commands, env=tool.env, log=log)
    with count_queries(server) as noop:
        run_measured(commands, env=tool.env, log=log)
    return {
        "apply": {"connections": applied.connections, "queries": len(applied.queries)},
        "noop": {
            "connections": noop.connections,
            "queries": len(noop.queries),
            "history_reads": noop.history_reads,
            "sent": noop.queries,
        },
    }


if __name__ == "__main__":
    sys.exit(main())
