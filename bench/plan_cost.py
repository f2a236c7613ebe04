"""What showing each pending file's transaction mode costs ``dbmigrate plan``.

Plan reads and parses every pending file (as a migrate would) to say how it will run.
This times ``dbmigrate plan --json`` in this process on a database with nothing applied
(every file pending), once as it is and once with that reading switched off (the plan
before it showed modes: history and listing only), alternating, median of 5 each.

    .venv/bin/python -m bench.plan_cost

Prints a Markdown table (paste it into RESULTS.md); nothing asserts on a number.
"""

from __future__ import annotations

import contextlib
import io
import statistics
import tempfile
import time
from pathlib import Path
from unittest import mock

from bench.sets import MigrationSet, medium_set, small_set, write_layouts
from dbmigrate.cli import main as cli_main
from dbmigrate.runner import Runner
from local.postgres import EmbeddedPostgres

RUNS = 5


def timed_plan(folder: Path, url: str) -> float:
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        code = cli_main(["plan", "--dir", str(folder), "--database-url", url, "--json"])
    if code != 0:
        raise RuntimeError(f"plan exited {code}")
    return time.perf_counter() - started


def measure(migration_set: MigrationSet, url: str, work: Path) -> tuple[float, float]:
    folder = write_layouts(migration_set, work / migration_set.name).ours
    with_modes, without = [], []
    for _ in range(RUNS):
        with_modes.append(timed_plan(folder, url))
        with mock.patch.object(Runner, "_how_pending", lambda self, pending: {}):
            without.append(timed_plan(folder, url))
    return statistics.median(with_modes), statistics.median(without)


def main() -> None:
    server = EmbeddedPostgres().start()
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="dbmigrate-plan-cost-") as work:
            for migration_set in (small_set(100), small_set(1000), medium_set(200)):
                with_modes, without = measure(migration_set, server.url(), Path(work))
                size = sum(len(m.sql) for m in migration_set.migrations) / 1e6
                added = with_modes - without
                rows.append(
                    f"| {migration_set.name} ({size:.2f} MB) | {without * 1000:.0f} | {with_modes * 1000:.0f} "
                    f"| {added * 1000:.0f} | {added / migration_set.files * 1000:.2f} |"
                )
    finally:
        server.stop()
    print("| set (SQL size) | plan without modes (ms) | plan with modes (ms) | added (ms) | added per file (ms) |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
