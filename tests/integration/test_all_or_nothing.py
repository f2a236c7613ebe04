"""``--all-or-nothing``: every pending file of a database in one transaction, or none of them."""

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
APPLIED = {"appdb/1_a.up.sql": "CREATE TABLE a (id int PRIMARY KEY);\n"}


def plain(first: int, last: int) -> Files:
    return {f"appdb/{v}_t{v}.up.sql": f"CREATE TABLE t{v} (id int PRIMARY KEY);\n" for v in range(first, last + 1)}


def state(pg: EmbeddedPostgres) -> tuple[object, ...]:
    """What a failed all-or-nothing run must leave as it found: tables, types, history rows."""
    return (
        tables(pg, "appdb"),
        query(pg, "appdb", "SELECT typname FROM pg_type WHERE typnamespace = 'public'::regnamespace ORDER BY 1"),
        query(pg, "appdb", "SELECT version, status, checksum, applied_at FROM dbmigrate.history ORDER BY 1"),
    )


def test_every_pending_file_commits_in_one_transaction_with_its_own_row(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    root = write_migrations({**CREATE_APPDB, **APPLIED})
    assert cli("up", "--dir", str(root)).code == 0
    write_migrations(plain(2, 40))
    result = cli("up", "--dir", str(root), "--all-or-nothing", "--json")
    assert result.code == 0, result.out
    assert result.json()["databases"][1]["applied"] == list(range(2, 41))
    assert history(pg, "appdb") == [(v, "applied") for v in range(1, 41)]
    xids = query(pg, "appdb", "SELECT count(DISTINCT xmin::text) FROM dbmigrate.history WHERE version > 1")
    assert xids == [(1,)]


FAILURES = {
    # file 20's text, the line the error names (None: the commit), its SQLSTATE
    "undefined-table": ("CREATE TABLE c ();\nSELECT * FROM nope;\n", 2, "42P01"),
    "unique-violation-without-position": (
        "CREATE TABLE c (id int PRIMARY KEY);\nINSERT INTO c VALUES (1);\nINSERT INTO c VALUES (1);\n",
        3,
        "23505",
    ),
    "uses-an-earlier-file-s-table": ("INSERT INTO t3 VALUES (1);\nINSERT INTO t3 VALUES (1);\n", 2, "23505"),
    "pending-trigger-events-no-fallback": (
        "CREATE TABLE p (id int PRIMARY KEY);\nCREATE TABLE c (p int REFERENCES p DEFERRABLE INITIALLY DEFERRED);\n"
        "INSERT INTO p VALUES (1);\nINSERT INTO c VALUES (1);\nALTER TABLE c ADD COLUMN x int;\n",
        5,
        "55006",
    ),
    "deferred-constraint-at-commit": (
        "CREATE TABLE p (id int PRIMARY KEY);\n"
        "CREATE TABLE c (p int REFERENCES p DEFERRABLE INITIALLY DEFERRED);\nINSERT INTO c VALUES (7);\n",
        None,
        "23503",
    ),
}


@pytest.mark.parametrize("failure", list(FAILURES.values()), ids=list(FAILURES))
def test_any_failure_leaves_the_database_exactly_as_before_the_run(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write, failure: tuple[str, int | None, str]
) -> None:
    sql, line, sqlstate = failure
    root = write_migrations({**CREATE_APPDB, **APPLIED})
    assert cli("up", "--dir", str(root)).code == 0
    before = state(pg)
    write_migrations({**plain(2, 30), "appdb/20_t20.up.sql": sql})

    error = cli("up", "--dir", str(root), "--all-or-nothing", "--json").error()
    assert (error["error"], error["sqlstate"]) == ("SqlError", sqlstate)
    if line is not None:
        assert (error["file"], error["line"]) == ("appdb/20_t20.up.sql", line)
    assert "appdb is as before" in error["hint"] or "nothing was applied to appdb" in error["hint"], error["hint"]
    assert state(pg) == before


def test_files_that_cannot_run_in_a_transaction_refuse_the_run_up_front_naming_each(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    root = write_migrations(CREATE_APPDB)
    assert cli("up", "--dir", str(root)).code == 0
    files = {
        **plain(1, 7),
        "appdb/3_t3.up.sql": "CREATE INDEX CONCURRENTLY i ON t1 (id);\n",
        "appdb/5_t5.up.sql": "-- dbmigrate: transaction=false\nCREATE TABLE t5 ();\n",
        "appdb/6_t6.up.sql": "CREATE TYPE mood AS ENUM ('ok');\nALTER TYPE mood ADD VALUE 'meh';\nSELECT 'meh'::mood;",
    }
    write_migrations(files)
    error = cli("up", "--dir", str(root), "--all-or-nothing", "--json").error(2)
    assert error["error"] == "ConfigError"
    assert error["files"] == ["appdb/3_t3.up.sql", "appdb/5_t5.up.sql", "appdb/6_t6.up.sql"]
    assert "CREATE INDEX" in error["message"] and "transaction=false" in error["message"]
    assert "enum value" in error["message"]
    assert "without --all-or-nothing" in error["hint"]
    assert tables(pg, "appdb") == [] and history(pg, "appdb") == []


def test_the_root_database_s_create_database_is_refused_too_before_anything_runs(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    root = write_migrations({**CREATE_APPDB, **plain(1, 2)})
    error = cli("up", "--dir", str(root), "--all-or-nothing", "--json").error(2)
    assert error["files"] == ["postgres/1_create_appdb.up.sql"]
    assert query(pg, "postgres", "SELECT count(*) FROM pg_database WHERE datname = 'appdb'") == [(0,)]


def test_a_broken_file_refuses_the_run_before_anything_runs(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    root = write_migrations(CREATE_APPDB)
    assert cli("up", "--dir", str(root)).code == 0
    write_migrations({**plain(1, 5), "appdb/4_t4.up.sql": "CREATE TABLE (;\n"})
    error = cli("up", "--dir", str(root), "--all-or-nothing", "--json").error()
    assert (error["error"], error["file"], error["line"]) == ("SqlError", "appdb/4_t4.up.sql", 1)
    assert tables(pg, "appdb") == [] and history(pg, "appdb") == []


def test_what_a_file_sets_in_its_session_does_not_reach_the_next_file(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    query(pg, "postgres", "DROP ROLE IF EXISTS file_owner")
    query(pg, "postgres", "CREATE ROLE file_owner")
    query(pg, "postgres", f"GRANT file_owner TO {pg.user}")
    root = write_migrations(CREATE_APPDB)
    assert cli("up", "--dir", str(root)).code == 0
    files = {
        "appdb/1_schema.up.sql": "CREATE SCHEMA other;\nSET search_path = other;\nCREATE TABLE inside ();\n",
        "appdb/2_after.up.sql": "CREATE TABLE outside ();\n",
        # 300 ms: ample for file 3's own statement on a loaded machine, too short for file 4's
        "appdb/3_timeout.up.sql": "SET statement_timeout = '300ms';\nCREATE TABLE quick ();\n",
        "appdb/4_slow.up.sql": "SELECT pg_sleep(0.6);\nCREATE TABLE slow ();\n",
        "appdb/5_role.up.sql": "GRANT CREATE ON SCHEMA public TO file_owner;\nSET ROLE file_owner;\n"
        "CREATE TABLE owned ();\n",
        "appdb/6_mine.up.sql": "CREATE TABLE mine ();\nCREATE TEMP TABLE scratch ();\n",
        "appdb/7_no_scratch.up.sql": "CREATE TEMP TABLE scratch ();\n",
    }
    write_migrations(files)
    result = cli("up", "--dir", str(root), "--all-or-nothing", "--json")
    assert result.code == 0, result.out
    rows = query(
        pg,
        "appdb",
        "SELECT relname, relnamespace::regnamespace::text, pg_get_userbyid(relowner) FROM pg_class "
        "WHERE relkind = 'r' AND relname IN ('inside', 'outside', 'quick', 'slow', 'owned', 'mine') ORDER BY 1",
    )
    owner = pg.user
    assert rows == [
        ("inside", "other", owner),
        ("mine", "public", owner),
        ("outside", "public", owner),
        ("owned", "public", "file_owner"),
        ("quick", "public", owner),
        ("slow", "public", owner),
    ]
    assert history(pg, "appdb") == [(v, "applied") for v in range(1, 8)]


def test_files_travel_together_and_a_timeout_among_them_is_named_for_its_file(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    root = write_migrations(CREATE_APPDB)
    assert cli("up", "--dir", str(root)).code == 0
    write_migrations({**plain(1, 250), "appdb/120_t120.up.sql": "CREATE TABLE t120 ();\nSELECT pg_sleep(3);\n"})
    error = cli("up", "--dir", str(root), "--all-or-nothing", "--statement-timeout", "1", "--json").error()
    assert (error["error"], error["file"], error["sqlstate"]) == ("SqlError", "appdb/120_t120.up.sql", "57014")
    assert tables(pg, "appdb") == []

    (root / "appdb/120_t120.up.sql").write_text("CREATE TABLE t120 ();\n")
    query(pg, "postgres", "ALTER SYSTEM SET log_statement = 'all'")
    query(pg, "postgres", "SELECT pg_reload_conf()")
    start = pg.log_file.stat().st_size
    try:
        assert cli("up", "--dir", str(root), "--all-or-nothing").code == 0
    finally:
        query(pg, "postgres", "ALTER SYSTEM RESET log_statement")
        query(pg, "postgres", "SELECT pg_reload_conf()")
    with pg.log_file.open() as log:
        log.seek(start)
        sent = sum(1 for line in log if "statement: SELECT set_config('dbmigrate.file_started'" in line)
    assert sent == 3, "250 files in round trips of at most 100"
    assert history(pg, "appdb") == [(v, "applied") for v in range(1, 251)]
