"""Concurrent runs, the bounded wait for the lock, and the run's time budget."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg2
import pytest

from dbmigrate.config import Settings
from dbmigrate.errors import DeadlineError
from dbmigrate.lock import lock_key
from dbmigrate.runner import Runner
from dbmigrate.sources import LocalSource
from local.postgres import EmbeddedPostgres
from tests.helpers import history, query
from tests.integration.conftest import CliResult, Files

pytestmark = pytest.mark.every_pg_version

Write = Callable[[Files], Path]

FILES = 10


def counted_files() -> dict[str, str]:
    """A root file, a slow first file, then files that each leave a row in a log table."""
    files = {
        "postgres/1_create_appdb.up.sql": "CREATE DATABASE appdb;",
        "appdb/1_log.up.sql": "CREATE TABLE log (version int NOT NULL);\nINSERT INTO log VALUES (1);\n"
        "SELECT pg_sleep(1.5);\n",
    }
    for version in range(2, FILES + 1):
        files[f"appdb/{version}_step.up.sql"] = f"INSERT INTO log VALUES ({version});\nCREATE TABLE t{version} ();\n"
    return files


def test_eight_concurrent_runs_apply_each_file_once_and_the_waiting_ones_say_so(
    pg: EmbeddedPostgres, write_migrations: Write
) -> None:
    root = write_migrations(counted_files())
    env = {**os.environ, "DATABASE_URL": pg.url()}
    command = [sys.executable, "-m", "dbmigrate", "up", "--dir", str(root)]
    runs = [
        subprocess.Popen(
            [*command, *(["--json"] if i % 2 else [])],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(8)
    ]
    results = [(run.wait(timeout=120), *run.communicate()) for run in runs]

    assert [code for code, _, _ in results] == [0] * 8, [err for _, _, err in results]
    assert query(pg, "appdb", "SELECT version, count(*) FROM log GROUP BY 1 ORDER BY 1") == [
        (v, 1) for v in range(1, FILES + 1)
    ]
    assert len(history(pg, "appdb")) == FILES

    reports = [json.loads(out) for code, out, _ in results if out.startswith("{")]
    applied = [(d["name"], v) for report in reports for d in report["databases"] for v in d["applied"]]
    human = [err for _, out, err in results if not out.startswith("{")]
    winners = [r for r in reports if any(d["applied"] for d in r["databases"])]
    assert len(applied) == len(set(applied))
    waiting_json = [r for r in reports if r not in winners]
    assert all(r["lock_waited_s"] > 0.1 for r in waiting_json), waiting_json
    waiting_human = [err for err in human if "waiting for the migration lock, held by pid" in err]
    assert len(waiting_human) >= len(human) - 1
    assert all("waited" in err for err in waiting_human)


@pytest.fixture
def lock_held_elsewhere(pg: EmbeddedPostgres) -> Iterator[int]:
    """Another session holding the migration lock; yields its backend pid."""
    conn = psycopg2.connect(pg.dsn("postgres"), application_name="someone-else")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_lock(%s), pg_backend_pid()", (lock_key("dbmigrate"),))
        row = cur.fetchone()
    assert row
    yield row[1]
    conn.close()


def test_a_run_gives_up_waiting_for_the_lock_after_its_bound_and_names_the_holder(
    pg: EmbeddedPostgres, cli: Callable[..., CliResult], write_migrations: Write, lock_held_elsewhere: int
) -> None:
    root = write_migrations(counted_files())
    started = time.monotonic()
    result = cli("up", "--dir", str(root), "--lock-wait", "1", "--json")
    elapsed = time.monotonic() - started

    error = result.error()
    assert elapsed < 5
    assert error["error"] == "LockTimeoutError"
    assert error["holder"].startswith(f"pid {lock_held_elsewhere} (someone-else"), error
    assert "gave up after 1." in error["message"] and "--lock-wait" in error["hint"]
    assert query(pg, "postgres", "SELECT count(*) FROM pg_database WHERE datname = 'appdb'") == [(0,)]


def test_lock_connection_is_never_inside_a_transaction_during_a_run(
    pg: EmbeddedPostgres, write_migrations: Write
) -> None:
    # If the lock's session sat in a transaction, CREATE INDEX CONCURRENTLY would wait for it forever.
    root = write_migrations(
        {
            "postgres/1_create_appdb.up.sql": "CREATE DATABASE appdb;",
            "appdb/1_t.up.sql": "CREATE TABLE t (x int);",
            "appdb/2_idx.up.sql": "CREATE INDEX CONCURRENTLY t_x ON t (x);",
        }
    )
    states: list[str] = []

    def watch(event: dict[str, object]) -> None:
        if event["event"] == "file_start" and event["database"] == "appdb":
            rows = query(
                pg, "postgres", "SELECT state FROM pg_stat_activity WHERE application_name LIKE 'dbmigrate-lock %'"
            )
            states.extend(state for (state,) in rows)

    settings = Settings(url_template=pg.url(), statement_timeout_s=20)
    Runner(LocalSource(root), settings, on_event=watch).migrate()
    assert states == ["idle", "idle"]
    assert history(pg, "appdb") == [(1, "applied"), (2, "applied")]


@pytest.mark.parametrize(
    "second",
    [
        pytest.param("CREATE TABLE t2 ();\nSELECT pg_sleep(2.5);", id="sent-together"),
        pytest.param("SET search_path = public;\nCREATE TABLE t2 ();\nSELECT pg_sleep(2.5);", id="sent-alone"),
    ],
)
def test_run_stops_before_a_file_when_the_time_left_is_short_and_says_what_is_left(
    pg: EmbeddedPostgres, write_migrations: Write, second: str
) -> None:
    """2 s of budget beyond the reserve; file 2 takes 2.5 s: file 3 does not start, sent with it or not."""
    files = {f"appdb/{v}_t{v}.up.sql": f"CREATE TABLE t{v} ();" for v in range(1, 5)} | {"appdb/2_t2.up.sql": second}
    root = write_migrations({"postgres/1_create_appdb.up.sql": "CREATE DATABASE appdb;"} | files)
    ends = time.monotonic() + 32.0

    runner = Runner(
        LocalSource(root),
        Settings(url_template=pg.url(), min_time_left_s=30),
        time_left=lambda: ends - time.monotonic(),
    )
    with pytest.raises(DeadlineError) as caught:
        runner.migrate()

    error = caught.value
    assert error.file == "appdb/3_t3.up.sql"
    assert error.details["not_started"] == [3, 4]
    assert error.details["applied"] == [1, 2]
    assert "run again to continue" in str(error)
    assert history(pg, "appdb") == [(1, "applied"), (2, "applied")]
