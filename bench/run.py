"""Benchmark: dbmigrate against dbmate, yoyo and the psql floors, on one throwaway server.

``.venv/bin/python -m bench.run`` generates the sets (1,000 small files, 200 medium
files, 5,000 small files), applies each with every tool on a fresh database of one
throwaway PostgreSQL, at least 3 times (median reported; 9 on sets of at most 100 files), times a second run with
nothing to do, records peak memory, counts the queries each tool sends (one extra
untimed run with ``log_statement = all``), profiles our engine when py-spy is found,
and writes ``bench/RESULTS.md`` and ``bench/time_vs_files.png``.

Every set runs on two servers, one after the other: a durable one (fsync,
synchronous_commit and full_page_writes on, PostgreSQL's defaults, as RDS commits: the
main table) and a fast one (all three off, as in the tests: commits cost nothing, so the
second table shows client overhead and round trips alone). ``--server durable|fast``
runs one; a full run then keeps the other's tables from the last full run's results.

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
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from local.postgres import EmbeddedPostgres

from . import chart as charts
from . import lambda_numbers, report
from .measure import count_queries, fresh_database, run_measured
from .profile import profile_ours
from .sets import MigrationSet, medium_set, small_set, write_layouts
from .tools import BENCH, OURS, PSQL_PER_FILE, Tool, engine_snapshot, find_tools

WORK = BENCH / ".work"
COUNT_PEERS_UP_TO = 1000  # files; counting queries on larger sets only for ours (yoyo is slow)
PER_FILE_PSQL_UP_TO = 1000  # files; one psql process per file takes minutes on larger sets
# Sets this small run in well under a second a tool, and their spread between runs (the disk) is as
# large as the differences they show: they get SHORT_SET_FACTOR times the repetitions, cheaply.
SHORT_SET_UP_TO = 100  # files
SHORT_SET_FACTOR = 3
# A single transaction creating thousands of tables (the psql floor) needs more lock slots.
SERVER_SETTINGS = {"max_locks_per_transaction": "1024"}
DURABILITY = ("fsync", "synchronous_commit", "full_page_writes")
# The main table: PostgreSQL's defaults, each commit waits for its WAL to reach the disk (as on RDS).
# The second: the tests' throwaway settings (local/postgres.py), where a commit costs almost nothing.
SERVERS = {"durable": dict.fromkeys(DURABILITY, "on"), "fast": dict.fromkeys(DURABILITY, "off")}


@dataclass(frozen=True)
class Plan:
    """What one run measures: the sets, runs per tool and set, our engine (None: the work tree), and
    whether it is a quick run (no zip built) and profiles our engine."""

    sets: list[MigrationSet]
    repetitions: int
    engine: Path | None
    quick: bool
    profile: bool


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sets, one repetition (under a minute)")
    parser.add_argument("--repetitions", type=int, default=None, help="runs per tool and set (default 3; quick 1)")
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy profile of our engine")
    parser.add_argument(
        "--server",
        choices=[*SERVERS, "both"],
        default="both",
        help="durable (fsync, synchronous_commit, full_page_writes on), fast (off), or both (default)",
    )
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
    results_json = WORK / ("results-quick.json" if args.quick else "results.json")
    previous = json.loads(results_json.read_text()) if results_json.is_file() and not args.quick else None

    engine = engine_snapshot(args.engine, WORK) if args.engine else None
    plan = Plan(sets, repetitions, engine, args.quick, profile=not (args.quick or args.no_profile))
    started = time.monotonic()
    data: dict[str, Any] = {"sets": [{"name": s.name, "kind": s.kind, "files": s.files} for s in sets]}
    servers = {name: _bench_server(name, plan, data) for name in (SERVERS if args.server == "both" else [args.server])}
    measured = {**_kept(previous, data["sets"], skip=servers), **servers}
    data["servers"] = {name: measured[name] for name in SERVERS if name in measured}  # the main table first
    data["results"] = servers[next(iter(servers))]["results"]  # the chart's and the no-op's: the first server run
    data["quick"] = args.quick
    data["elapsed_s"] = round(time.monotonic() - started, 1)
    data["environment"]["load_end"] = report.load_average()
    results_json.write_text(json.dumps(data, indent=2))
    return _write(data, results_json, out)


def _bench_server(name: str, plan: Plan, data: dict[str, Any]) -> dict[str, Any]:
    """Every set on a new server of this kind; the first server run also fills ``data``'s
    environment, profile and Lambda numbers."""
    started, load = time.monotonic(), report.load_average()
    server = EmbeddedPostgres(settings={**SERVER_SETTINGS, **SERVERS[name]}).start()
    try:
        tools, missing = find_tools(server, plan.engine)
        for line in missing:
            print(f"skipped {line}", file=sys.stderr)
        results = {s.name: _bench_set(s, tools, server, _repetitions(s, plan), label=name) for s in plan.sets}
        if "environment" not in data:
            data["environment"] = report.environment(server, tools, plan.repetitions)
            data["environment"]["short_sets"] = {
                "up_to_files": SHORT_SET_UP_TO,
                "repetitions": _repetitions(small_set(1), plan),
            }
            data["missing"] = missing
            data["profiles"] = profile_ours(tools[0], server, plan.sets, WORK) if plan.profile else {}
            data["lambda"] = lambda_numbers.measure(
                server, WORK, files=max(s.files for s in plan.sets), lambda_src=plan.engine, quick=plan.quick
            )
    finally:
        server.destroy()
    return {
        "settings": SERVERS[name],
        "results": results,
        "measured": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "engine": tools[0].version,
        "load": f"{load} to {report.load_average()}",
        "elapsed_s": round(time.monotonic() - started, 1),
    }


def _kept(previous: dict[str, Any] | None, sets: list[dict[str, Any]], *, skip: dict[str, Any]) -> dict[str, Any]:
    """The servers of the last full run that this run did not measure (same sets only), marked as kept."""
    if previous is None or previous.get("sets") != sets:
        return {}
    # Results written before the durable server existed were all measured on the fast one.
    engine = previous.get("environment", {}).get("tools", {}).get(OURS, "?")
    servers = previous.get("servers") or {"fast": {"results": previous["results"], "engine": engine}}
    return {name: {**server, "kept": True} for name, server in servers.items() if name in SERVERS and name not in skip}


def _write(data: dict[str, Any], results_json: Path, out: Path) -> int:
    chart = charts.chart(data, results_json, out / "time_vs_files.png")
    markdown = report.render(data, chart=chart)
    target = out / "RESULTS.md"
    report.write_preserving_notes(target, markdown)
    print(report.summary_table(data))
    print(f"wrote {target}" + (f" and {chart}" if chart else " (no chart: matplotlib missing)"))
    return 0


def _repetitions(migration_set: MigrationSet, plan: Plan) -> int:
    """Runs per tool on this set: more on the short sets, unless a quick run."""
    if plan.quick or migration_set.files > SHORT_SET_UP_TO:
        return plan.repetitions
    return plan.repetitions * SHORT_SET_FACTOR


def _bench_set(
    migration_set: MigrationSet, tools: list[Tool], server: EmbeddedPostgres, repetitions: int, *, label: str
) -> Any:
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
            print(f"{label} {migration_set.name} #{repetition + 1} {tool.name}: {seconds:.2f} s", flush=True)
    results: dict[str, Any] = {}
    for tool in tools:
        entry: dict[str, Any] = {"version": tool.version, "peer": tool.peer, **samples[tool.name]}
        for phase in ("apply", "noop"):
            runs = samples[tool.name][phase]
            if runs:
                entry[f"{phase}_median_s"] = statistics.median(r["seconds"] for r in runs)
                entry[f"{phase}_max_rss_kib"] = max(r["max_rss_kib"] for r in runs)
                entry[f"{phase}_cpu_s"] = statistics.median(r.get("cpu_s", 0.0) for r in runs)
        if tool.history and (not tool.peer or migration_set.files <= COUNT_PEERS_UP_TO):
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
