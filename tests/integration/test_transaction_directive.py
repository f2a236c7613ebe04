"""How a file runs, said by the file (``-- dbmigrate: transaction=...``) and shown by plan, on a real server."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from local.postgres import EmbeddedPostgres
from tests.helpers import history, query, tables
from tests.integration.conftest import CliResult, Files

pytestmark = pytest.mark.every_pg_version

Cli = Callable[..., CliResult]
Write = Callable[[Files], Path]

CREATE_APPDB = {"postgres/1_create_appdb.up.sql": "CREATE DATABASE appdb;\n"}
IDS = "appdb/1_ids.up.sql"
# Two statements recording the transaction they ran in: one id for one transaction, two for two.
TWO_TRANSACTIONS = (
    "CREATE TABLE ids (id bigint);\nINSERT INTO ids SELECT txid_current();\nINSERT INTO ids SELECT txid_current();\n"
)
# Statements the server refuses to share one transaction with, found only when it runs them.
# The enum exists before the file (a type created in the same transaction may use its new
# value on PostgreSQL 18): file 0 creates it.
MOOD = {"appdb/0_mood.up.sql": "CREATE TYPE mood AS ENUM ('ok');\n"}
NEEDS_COMMITS = {
    "enum-value-used": "ALTER TYPE mood ADD VALUE 'meh';\nCREATE TABLE feelings (m mood DEFAULT 'meh');\n",
    "pending-trigger-events": "CREATE TABLE p (id int PRIMARY KEY);\n"
    "CREATE TABLE c (p int REFERENCES p DEFERRABLE INITIALLY DEFERRED);\n"
    "INSERT INTO p VALUES (1);\nINSERT INTO c VALUES (1);\nALTER TABLE c ADD COLUMN x int;\n",
}


def transactions_seen(pg: EmbeddedPostgres) -> int:
    return int(query(pg, "appdb", "SELECT count(DISTINCT id) FROM ids")[0][0])


def test_transaction_false_runs_each_statement_in_its_own_transaction(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    root = write_migrations({**CREATE_APPDB, IDS: f"-- dbmigrate: transaction=false\n{TWO_TRANSACTIONS}"})
    result = cli("up", "--dir", str(root), "--json")
    assert result.code == 0, result.out
    assert transactions_seen(pg) == 2
    assert history(pg, "appdb") == [(1, "applied")]


def test_without_the_directive_the_same_file_is_one_transaction(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    root = write_migrations({**CREATE_APPDB, IDS: TWO_TRANSACTIONS})
    assert cli("up", "--dir", str(root)).code == 0
    assert transactions_seen(pg) == 1


def test_a_transaction_false_file_that_fails_part_way_is_recorded_partial(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    sql = "-- dbmigrate: transaction=false\nCREATE TABLE a ();\nCREATE TABLE a ();\n"
    root = write_migrations({**CREATE_APPDB, IDS: sql})
    error = cli("up", "--dir", str(root), "--json").error()
    assert (error["error"], error["line"], error["statements_done"]) == ("PartialMigrationError", 3, 1)
    assert "the file says transaction=false (line 1)" in error["message"]
    assert tables(pg, "appdb") == ["a"]
    assert history(pg, "appdb") == [(1, "partial")]


@pytest.mark.parametrize("sql", list(NEEDS_COMMITS.values()), ids=list(NEEDS_COMMITS))
def test_undeclared_files_the_server_will_not_run_in_one_transaction_fall_back_to_statements(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write, sql: str
) -> None:
    root = write_migrations({**CREATE_APPDB, **MOOD, "appdb/1_x.up.sql": sql})
    result = cli("up", "--dir", str(root), "--json")
    assert result.code == 0, result.out
    assert history(pg, "appdb") == [(0, "applied"), (1, "applied")]


@pytest.mark.parametrize("sql", list(NEEDS_COMMITS.values()), ids=list(NEEDS_COMMITS))
def test_transaction_true_refuses_the_fallback_and_leaves_nothing(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write, sql: str
) -> None:
    root = write_migrations({**CREATE_APPDB, **MOOD, "appdb/1_x.up.sql": f"-- dbmigrate: transaction=true\n{sql}"})
    error = cli("up", "--dir", str(root), "--json").error()
    assert (error["error"], error["file"]) == ("SqlError", "appdb/1_x.up.sql")
    assert "says transaction=true (line 1), so it ran as that one transaction" in error["hint"]
    assert "nothing of it was applied" in error["hint"]
    assert tables(pg, "appdb") == []
    assert history(pg, "appdb") == [(0, "applied")]


def test_a_promise_the_file_cannot_keep_stops_the_run_at_that_file_before_it_runs(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    files = {
        **CREATE_APPDB,
        "appdb/1_a.up.sql": "CREATE TABLE a (x int);\n",
        "appdb/2_i.up.sql": "-- dbmigrate: transaction=true\nCREATE TABLE b ();\nCREATE INDEX CONCURRENTLY i ON a (x);",
    }
    root = write_migrations(files)
    plan = cli("plan", "--dir", str(root), "--json")
    assert plan.code == 1
    [problem] = plan.json()["problems"]
    assert (problem["error"], problem["file"], problem["line"]) == ("UnsupportedSqlError", "appdb/2_i.up.sql", 3)

    error = cli("up", "--dir", str(root), "--json").error()
    assert (error["error"], error["line"]) == ("UnsupportedSqlError", 3)
    assert tables(pg, "appdb") == ["a"]
    assert history(pg, "appdb") == [(1, "applied")]


def test_plan_shows_how_each_pending_file_would_run_and_names_what_would_fail(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    files = {
        **CREATE_APPDB,
        "appdb/1_plain.up.sql": "CREATE TABLE a (x int);\n",
        "appdb/2_index.up.sql": "CREATE INDEX CONCURRENTLY i ON a (x);\n",
        "appdb/3_split.up.sql": "-- dbmigrate: transaction=false\nCREATE TABLE b ();\n",
        "appdb/4_whole.up.sql": "-- dbmigrate: transaction=true\nCREATE TABLE c ();\n",
        "appdb/5_broken.up.sql": "CREATE TABLE d ();\nCREATE TABLE (;\n",
    }
    root = write_migrations(files)
    plan = cli("plan", "--dir", str(root), "--json")
    assert plan.code == 1
    appdb = plan.json()["databases"][1]
    shown = [(e["version"], e["mode"], e["declared"]) for e in appdb["pending_files"]]
    assert shown == [
        (1, "transaction", False),
        (2, "autocommit", False),
        (3, "autocommit", True),
        (4, "transaction", True),
        (5, None, False),
    ]
    assert "CREATE INDEX" in appdb["pending_files"][1]["reason"]
    assert appdb["pending_files"][4]["error"]["line"] == 2
    assert [p["error"] for p in plan.json()["problems"]] == ["SqlError"]

    text = cli("plan", "--dir", str(root)).out.splitlines()
    assert "  + appdb/3_split.up.sql  (statement by statement: the file says transaction=false (line 1))" in text
    assert "  + appdb/4_whole.up.sql  (one transaction, as the file says)" in text
    assert any(line.startswith("  + appdb/5_broken.up.sql  (would fail: ") for line in text)
    assert query(pg, "postgres", "SELECT count(*) FROM pg_database WHERE datname = 'appdb'") == [(0,)]

    status = cli("status", "--dir", str(root), "--json").json()
    assert [e["mode"] for e in status["databases"][1]["pending_files"]] == [e[1] for e in shown]


def test_a_down_file_may_say_it_too(pg: EmbeddedPostgres, cli: Cli, write_migrations: Write) -> None:
    files = {
        **CREATE_APPDB,
        IDS: TWO_TRANSACTIONS,
        "appdb/1_ids.down.sql": "-- dbmigrate: transaction=false\nDROP TABLE ids;\nDROP TABLE nope;\n",
    }
    root = write_migrations(files)
    assert cli("up", "--dir", str(root)).code == 0
    error = cli("down", "--dir", str(root), "--database", "appdb", "--to", "0", "--json").error()
    assert (error["error"], error["line"], error["statements_done"]) == ("PartialMigrationError", 3, 1)
    assert tables(pg, "appdb") == []
    assert history(pg, "appdb") == [(1, "partial")]
