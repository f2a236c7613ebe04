"""repair: the only way history changes besides applying, and it says what it changed."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from local.postgres import EmbeddedPostgres
from tests.helpers import history, query, tables
from tests.integration.conftest import CliResult, Files
from tests.integration.processes import wait_until_running

pytestmark = pytest.mark.every_pg_version

Cli = Callable[..., CliResult]
Write = Callable[[Files], Path]

PARTIAL = {
    "postgres/1_create_appdb.up.sql": "CREATE DATABASE appdb;",
    "appdb/1_t.up.sql": "CREATE TABLE t (x int, y int);",
    "appdb/2_idx.up.sql": "CREATE INDEX CONCURRENTLY t_x ON t (x);\nCREATE INDEX CONCURRENTLY t_z ON t (z);\n",
    "appdb/3_after.up.sql": "CREATE TABLE after ();",
}


def indexes(pg: EmbeddedPostgres) -> list[str]:
    return [name for (name,) in query(pg, "appdb", "SELECT indexname FROM pg_indexes WHERE tablename = 't' ORDER BY 1")]


def test_repair_after_undoing_a_partial_file_makes_it_pending_and_the_fixed_file_applies(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    root = write_migrations(PARTIAL)
    assert cli("up", "--dir", str(root)).code == 1
    query(pg, "appdb", "DROP INDEX t_x")  # undo what ran, by hand
    write_migrations(
        {"appdb/2_idx.up.sql": "CREATE INDEX CONCURRENTLY t_x ON t (x);\nCREATE INDEX CONCURRENTLY t_y ON t (y);\n"}
    )

    repair = cli("repair", "--dir", str(root), "--database", "appdb")
    assert repair.code == 0
    assert "changed: removed the partial record of appdb/2_idx.up.sql (1 of 2 statements had run)" in repair.out
    assert cli("up", "--dir", str(root)).code == 0
    assert indexes(pg) == ["t_x", "t_y"]
    assert history(pg, "appdb") == [(1, "applied"), (2, "applied"), (3, "applied")]


def test_repair_can_record_a_partial_file_finished_by_hand_as_applied(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    root = write_migrations(PARTIAL)
    assert cli("up", "--dir", str(root)).code == 1
    query(pg, "appdb", "CREATE INDEX t_y ON t (y)")  # finish by hand what the file meant

    repair = cli("repair", "--dir", str(root), "--database", "appdb", "--mark-applied", "2", "--json")
    assert repair.code == 0
    assert repair.json()["changes"] == [
        "marked appdb/2_idx.up.sql as applied (partial before: 1 of 2 statements had run)"
    ]
    assert cli("up", "--dir", str(root)).code == 0
    assert "after" in tables(pg, "appdb")


def test_repair_accepts_a_reviewed_change_to_an_applied_file(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    root = write_migrations(
        {"postgres/1_create_appdb.up.sql": "CREATE DATABASE appdb;", "appdb/1_t.up.sql": "CREATE TABLE t ();"}
    )
    assert cli("up", "--dir", str(root)).code == 0
    write_migrations(
        {"appdb/1_t.up.sql": "-- reformatted\nCREATE TABLE t ();\n", "appdb/2_u.up.sql": "CREATE TABLE u ();"}
    )
    assert cli("up", "--dir", str(root)).code == 1

    repair = cli("repair", "--dir", str(root), "--database", "appdb", "--accept-checksum", "1")
    assert repair.code == 0
    assert "accepted the current content of appdb/1_t.up.sql: checksum" in repair.out
    assert cli("up", "--dir", str(root)).code == 0
    assert tables(pg, "appdb") == ["t", "u"]


def test_repair_with_nothing_to_repair_changes_nothing_and_says_so(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    root = write_migrations(
        {"postgres/1_create_appdb.up.sql": "CREATE DATABASE appdb;", "appdb/1_t.up.sql": "CREATE TABLE t ();"}
    )
    assert cli("up", "--dir", str(root)).code == 0
    before = query(pg, "appdb", "SELECT * FROM dbmigrate.history")
    result = cli("repair", "--dir", str(root), "--database", "appdb")
    assert result.code == 0 and "nothing to repair" in result.out
    assert query(pg, "appdb", "SELECT * FROM dbmigrate.history") == before


def test_repair_of_a_version_without_history_is_a_usage_error(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    root = write_migrations(
        {"postgres/1_create_appdb.up.sql": "CREATE DATABASE appdb;", "appdb/1_t.up.sql": "CREATE TABLE t ();"}
    )
    assert cli("up", "--dir", str(root)).code == 0
    result = cli("repair", "--dir", str(root), "--database", "appdb", "--accept-checksum", "7", "--json")
    error = result.error(2)
    assert (error["error"], error["database"]) == ("ConfigError", "appdb")
    assert "version 7 has no history record" in error["message"]


def test_a_run_killed_inside_an_autocommit_file_blocks_until_repair_then_the_next_run_continues(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    root = write_migrations(
        {
            "postgres/1_create_appdb.up.sql": "CREATE DATABASE appdb;",
            "appdb/1_t.up.sql": "CREATE TABLE t (x int);",
            "appdb/2_slow.up.sql": "CREATE INDEX CONCURRENTLY t_x ON t (x);\nSELECT pg_sleep(60);\n",
            "appdb/3_after.up.sql": "CREATE TABLE after ();",
        }
    )
    env = {**os.environ, "DATABASE_URL": pg.url()}
    run = subprocess.Popen(
        [sys.executable, "-m", "dbmigrate", "up", "--dir", str(root)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # Statement 2 running, so statement 1 is done: the history's "running" row alone comes before
    # statement 1 ends (a kill then, on a loaded machine, left 0 statements done).
    wait_until_running(pg, "pg_sleep(60)")
    run.kill()  # the process dies mid-file, as a Lambda does at its timeout
    run.wait()
    query(pg, "postgres", "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%'")

    blocked = cli("up", "--dir", str(root), "--json")
    assert blocked.code == 1
    refusal = blocked.json()
    assert (refusal["file"], refusal["statements_done"], refusal["outcome_unknown"]) == ("appdb/2_slow.up.sql", 1, 2)
    assert "statement 2: outcome unknown (statement 2 (line 2) was running" in refusal["message"]
    status = cli("status", "--dir", str(root), "--database", "appdb")
    assert "running (1/2 statements)" in status.out

    query(pg, "appdb", "DROP INDEX t_x")
    write_migrations({"appdb/2_slow.up.sql": "CREATE INDEX CONCURRENTLY t_x ON t (x);\n"})
    assert cli("repair", "--dir", str(root), "--database", "appdb").code == 0
    assert cli("up", "--dir", str(root)).code == 0
    assert history(pg, "appdb") == [(1, "applied"), (2, "applied"), (3, "applied")]
    assert "after" in tables(pg, "appdb")
