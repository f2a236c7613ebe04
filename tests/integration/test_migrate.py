"""The engine and its CLI against a real PostgreSQL server: what up, plan and status do."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest

from local.postgres import EmbeddedPostgres
from tests.helpers import history, query, tables
from tests.integration.conftest import CliResult, Files

pytestmark = pytest.mark.every_pg_version

REPO_MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"

Cli = Callable[..., CliResult]
Write = Callable[[Files], Path]

CREATE_APPDB = {"postgres/1_create_appdb.up.sql": "CREATE DATABASE appdb;\n"}


def test_example_migrations_apply_and_status_reports_versions_as_integers(pg: EmbeddedPostgres, cli: Cli) -> None:
    up = cli("up", "--dir", str(REPO_MIGRATIONS))
    assert up.code == 0, up.err

    status = cli("status", "--dir", str(REPO_MIGRATIONS), "--json")
    assert status.code == 0
    databases = {d["name"]: d for d in status.json()["databases"]}
    assert list(databases) == ["postgres", "projectdb"]
    files = sorted(p.name for p in (REPO_MIGRATIONS / "projectdb").glob("*.up.sql"))
    versions = [int(name.split("_", 1)[0]) for name in files]
    assert databases["projectdb"]["applied"] == versions
    assert databases["projectdb"]["current_version"] == versions[-1]
    assert databases["projectdb"]["pending"] == []
    assert all(isinstance(v, int) for d in databases.values() for v in d["applied"])
    assert {"users", "widgets"} <= set(tables(pg, "projectdb"))
    indexes = query(pg, "projectdb", "SELECT indexname FROM pg_indexes WHERE tablename = 'widgets'")
    assert ("widgets_owner_id_idx",) in indexes


def test_second_up_applies_nothing_with_one_history_read_per_database(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    root = write_migrations(
        {**CREATE_APPDB, **{f"appdb/{v}_t{v}.up.sql": f"CREATE TABLE t{v} ();" for v in range(1, 30)}}
    )
    assert cli("up", "--dir", str(root)).code == 0
    before = query(pg, "appdb", "SELECT version, applied_at FROM dbmigrate.history ORDER BY 1")

    query(pg, "postgres", "ALTER SYSTEM SET log_statement = 'all'")
    query(pg, "postgres", "SELECT pg_reload_conf()")
    log_start = pg.log_file.stat().st_size
    try:
        again = cli("up", "--dir", str(root), "--json")
    finally:
        query(pg, "postgres", "ALTER SYSTEM RESET log_statement")
        query(pg, "postgres", "SELECT pg_reload_conf()")

    assert again.code == 0
    assert [d["applied"] for d in again.json()["databases"]] == [[], []]
    with pg.log_file.open() as log:
        log.seek(log_start)
        statements = [line.split("statement: ", 1)[1] for line in log if "statement: " in line]
    statements = [s for s in statements if "log_statement" not in s and "pg_reload_conf" not in s]
    history_reads = [s for s in statements if "dbmigrate" in s and "history" in s]
    assert len(history_reads) == 2, statements
    assert all(s.startswith("SELECT") for s in history_reads)
    assert len(statements) <= 4, statements  # + lock and unlock
    assert query(pg, "appdb", "SELECT version, applied_at FROM dbmigrate.history ORDER BY 1") == before


def test_edited_applied_file_is_refused_and_named_with_both_checksums(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    root = write_migrations({**CREATE_APPDB, "appdb/1_users.up.sql": "CREATE TABLE users (id int);\n"})
    assert cli("up", "--dir", str(root)).code == 0
    (root / "appdb/1_users.up.sql").write_text("CREATE TABLE users (id bigint);\n")
    write_migrations({"appdb/2_more.up.sql": "CREATE TABLE more ();"})

    result = cli("up", "--dir", str(root), "--json")

    assert result.code == 1
    error = result.json()
    assert (error["error"], error["file"]) == ("ChecksumMismatchError", "appdb/1_users.up.sql")
    (applied_checksum,) = query(pg, "appdb", "SELECT checksum FROM dbmigrate.history WHERE version = 1")[0]
    assert error["applied_checksum"] == applied_checksum
    assert error["current_checksum"] == hashlib.sha256(b"CREATE TABLE users (id bigint);\n").hexdigest()
    assert "new migration" in error["hint"] and "repair" in error["hint"]
    assert "more" not in tables(pg, "appdb")


def test_broken_sql_in_file_k_keeps_earlier_files_leaves_no_trace_and_runs_nothing_after(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    root = write_migrations(
        {
            **CREATE_APPDB,
            "appdb/1_a.up.sql": "CREATE TABLE a (id int);",
            "appdb/2_b.up.sql": "CREATE TABLE b (id int);",
            "appdb/3_c.up.sql": "CREATE TABLE c (id int);\n\nINSERT INTO c VALUES (1);\n\n"
            "INSERT INTO c VALUES ('not a number');\n",
            "appdb/4_d.up.sql": "CREATE TABLE d (id int);",
        }
    )

    result = cli("up", "--dir", str(root), "--json")

    assert result.code == 1
    error = result.json()
    assert (error["error"], error["file"], error["line"], error["sqlstate"]) == (
        "SqlError",
        "appdb/3_c.up.sql",
        5,
        "22P02",
    )
    assert history(pg, "appdb") == [(1, "applied"), (2, "applied")]
    assert tables(pg, "appdb") == ["a", "b"]


def test_runtime_error_without_a_server_position_is_still_mapped_to_its_line(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    root = write_migrations(
        {
            **CREATE_APPDB,
            "appdb/1_a.up.sql": "CREATE TABLE a (id int);\n-- comment\nSELECT 1;\nCREATE TABLE a (id int);\n",
        }
    )
    result = cli("up", "--dir", str(root))
    assert result.code == 1
    assert 'appdb/1_a.up.sql:4: PostgreSQL refused the file: relation "a" already exists' in result.err
    assert tables(pg, "appdb") == []


def test_failure_inside_a_file_that_runs_in_autocommit_is_recorded_and_blocks_further_runs(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    root = write_migrations(
        {
            **CREATE_APPDB,
            "appdb/1_t.up.sql": "CREATE TABLE t (x int);",
            "appdb/2_idx.up.sql": "CREATE INDEX CONCURRENTLY t_x ON t (x);\nCREATE INDEX CONCURRENTLY t_y ON t (y);\n",
            "appdb/3_later.up.sql": "CREATE TABLE later ();",
        }
    )

    first = cli("up", "--dir", str(root), "--json")
    error = first.error()
    assert (error["error"], error["file"], error["line"]) == ("PartialMigrationError", "appdb/2_idx.up.sql", 2)
    assert (error["statements_done"], error["statements_total"]) == (1, 2)
    assert "repair" in error["hint"]
    assert history(pg, "appdb") == [(1, "applied"), (2, "partial")]
    assert "later" not in tables(pg, "appdb")

    second = cli("up", "--dir", str(root), "--json")
    error = second.error()
    assert (error["error"], error["file"], error["statements_done"], error["statements_total"]) == (
        "PartialMigrationError",
        "appdb/2_idx.up.sql",
        1,
        2,
    )
    assert "later" not in tables(pg, "appdb")


def test_autocommit_file_whose_first_statement_fails_leaves_no_trace(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    root = write_migrations({**CREATE_APPDB, "appdb/1_idx.up.sql": "CREATE INDEX CONCURRENTLY i ON missing (x);"})
    result = cli("up", "--dir", str(root), "--json")
    error = result.error()
    assert (error["error"], error["file"], error["sqlstate"]) == ("SqlError", "appdb/1_idx.up.sql", "42P01")
    assert history(pg, "appdb") == []


def test_file_wrapped_in_begin_commit_runs_as_its_one_transaction(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    root = write_migrations(
        {
            **CREATE_APPDB,
            "appdb/1_ok.up.sql": "BEGIN;\nCREATE TABLE ok (id int);\nCOMMIT;\n",
            "appdb/2_bad.up.sql": "BEGIN;\nCREATE TABLE half (id int);\nSELECT 1/0;\nCOMMIT;\n",
        }
    )
    result = cli("up", "--dir", str(root), "--json")
    error = result.error()
    assert (error["error"], error["file"], error["line"], error["sqlstate"]) == (
        "SqlError",
        "appdb/2_bad.up.sql",
        3,
        "22012",
    )
    assert tables(pg, "appdb") == ["ok"]
    assert history(pg, "appdb") == [(1, "applied")]


def test_bad_names_are_refused_before_anything_is_applied(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    root = write_migrations(
        {
            **CREATE_APPDB,
            "appdb/1_x.sql": "CREATE TABLE x ();",
            "appdb/abc_x.up.sql": "CREATE TABLE y ();",
            "appdb/2_a.up.sql": "CREATE TABLE a ();",
            "appdb/02_b.up.sql": "CREATE TABLE b ();",
            "Robert'); DROP TABLE x;--/1_x.up.sql": "SELECT 1;",
        }
    )
    result = cli("up", "--dir", str(root), "--json")
    error = result.error()
    assert error["error"] == "LayoutError"
    assert [problem.split(":")[0] for problem in error["problems"]] == [
        "Robert'); DROP TABLE x;--/1_x.up.sql",
        "appdb/1_x.sql",
        "appdb/abc_x.up.sql",
        "appdb",
    ]
    assert "version 2 is used by several files" in error["problems"][3]
    assert query(pg, "postgres", "SELECT count(*) FROM pg_database WHERE datname = 'appdb'") == [(0,)]


def test_database_not_created_by_the_root_folder_is_a_clear_error(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    root = write_migrations({"ghostdb/1_a.up.sql": "CREATE TABLE a ();"})
    result = cli("up", "--dir", str(root), "--json")
    error = result.error()
    assert (error["error"], error["database"], error["missing_database"]) == ("DatabaseConnectError", "ghostdb", True)
    assert "postgres/" in error["hint"] and "CREATE DATABASE ghostdb" in error["hint"]


def test_wide_versions_empty_files_and_comment_only_files_are_applied_and_recorded(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    wide = 12345678901234567890123
    root = write_migrations(
        {
            **CREATE_APPDB,
            "appdb/0_empty.up.sql": "",
            "appdb/7_comment.up.sql": "-- nothing; really\n",
            f"appdb/{wide}_wide.up.sql": "CREATE TABLE wide ();",
        }
    )
    assert cli("up", "--dir", str(root)).code == 0
    assert history(pg, "appdb") == [(0, "applied"), (7, "applied"), (wide, "applied")]
    status = cli("status", "--dir", str(root), "--json").json()
    assert status["databases"][1]["current_version"] == wide


def test_session_settings_of_one_file_do_not_leak_into_the_next(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    root = write_migrations(
        {
            **CREATE_APPDB,
            "appdb/1_schema.up.sql": "CREATE SCHEMA app;\nSET search_path = app;\nCREATE TABLE inside ();\n",
            "appdb/2_dump_header.up.sql": "SELECT pg_catalog.set_config('search_path', '', false);\n"
            "CREATE TABLE public.qualified ();\n",
            "appdb/3_plain.up.sql": "CREATE TABLE outside ();\n",
        }
    )
    assert cli("up", "--dir", str(root)).code == 0
    rows = query(pg, "appdb", "SELECT schemaname, tablename FROM pg_tables WHERE schemaname IN ('app', 'public')")
    assert sorted(rows) == [("app", "inside"), ("public", "outside"), ("public", "qualified")]


def test_psql_meta_command_is_refused_and_nothing_of_the_file_runs(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    root = write_migrations({**CREATE_APPDB, "appdb/1_a.up.sql": "CREATE TABLE a ();\n\\connect other\n"})
    result = cli("up", "--dir", str(root), "--json")
    error = result.error()
    assert (error["error"], error["file"], error["line"]) == ("UnsupportedSqlError", "appdb/1_a.up.sql", 2)
    assert tables(pg, "appdb") == []


def test_version_below_the_newest_applied_is_refused_unless_allowed(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    root = write_migrations({**CREATE_APPDB, "appdb/10_a.up.sql": "CREATE TABLE a ();"})
    assert cli("up", "--dir", str(root)).code == 0
    write_migrations({"appdb/5_late.up.sql": "CREATE TABLE late ();"})

    refused = cli("up", "--dir", str(root), "--json")
    error = refused.error()
    assert (error["error"], error["file"]) == ("OutOfOrderError", "appdb/5_late.up.sql")
    assert "lower than the newest applied version 10" in error["message"]
    assert "late" not in tables(pg, "appdb")
    assert "allow it explicitly with --allow-out-of-order" in error["hint"], "the CLI names its own flag"

    assert cli("up", "--dir", str(root), "--allow-out-of-order").code == 0
    assert "late" in tables(pg, "appdb")


def test_plan_lists_pending_files_applies_nothing_and_fails_on_drift(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    root = write_migrations({**CREATE_APPDB, "appdb/1_a.up.sql": "CREATE TABLE a ();"})
    plan = cli("plan", "--dir", str(root), "--json")
    assert plan.code == 0
    assert [d["pending"] for d in plan.json()["databases"]] == [[1], [1]]
    assert query(pg, "postgres", "SELECT count(*) FROM pg_database WHERE datname = 'appdb'") == [(0,)]

    assert cli("up", "--dir", str(root)).code == 0
    (root / "appdb/1_a.up.sql").write_text("CREATE TABLE a (changed int);")
    drift = cli("plan", "--dir", str(root), "--json")
    assert drift.code == 1
    assert drift.json()["problems"][0]["error"] == "ChecksumMismatchError"


def test_only_the_databases_asked_for_are_run(pg: EmbeddedPostgres, cli: Cli, write_migrations: Write) -> None:
    root = write_migrations(
        {
            "postgres/1_dbs.up.sql": "CREATE DATABASE one;\nCREATE DATABASE two;\n",
            "one/1_a.up.sql": "CREATE TABLE a ();",
            "two/1_b.up.sql": "CREATE TABLE b ();",
        }
    )
    assert cli("up", "--dir", str(root), "--database", "postgres", "--database", "one").code == 0
    assert tables(pg, "one") == ["a"]
    assert tables(pg, "two") == []


def test_new_creates_a_correctly_named_file_after_the_newest_version(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    root = write_migrations({"appdb/99999999999999_far_future.up.sql": ""})
    result = cli("new", "appdb", "Add Orders table!", "--dir", str(root))
    assert result.code == 0
    created = root / "appdb/100000000000000_add_orders_table.up.sql"
    assert created.exists(), result.out


def test_missing_database_url_is_a_usage_error(cli: Cli, write_migrations: Write) -> None:
    result = cli("up", "--dir", str(write_migrations({})), "--json", url="")
    error = result.error(2)
    assert error["error"] == "ConfigError" and "--database-url" in error["hint"]


def test_unreachable_server_names_host_and_port(cli: Cli, write_migrations: Write, refusing_port: int) -> None:
    port = refusing_port
    root = write_migrations(CREATE_APPDB)
    result = cli("up", "--dir", str(root), "--json", url=f"postgresql://u:secret@127.0.0.1:{port}/{{database}}")
    error = result.error()
    assert (error["error"], error["database"]) == ("DatabaseConnectError", "postgres")
    assert f"127.0.0.1:{port}/postgres" in error["message"]
    assert "secret" not in result.out + result.err


def test_set_local_in_a_file_lasts_for_the_file_as_with_golang_migrate_and_flyway(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    """A deliberate difference from psql running statements one by one.

    There SET LOCAL outside BEGIN only warns; here, as with golang-migrate, Flyway and
    ``psql -1``, a file is one transaction, so it holds until the file ends.
    """
    root = write_migrations(
        {
            **CREATE_APPDB,
            "appdb/1_local.up.sql": "CREATE SCHEMA elsewhere;\nSET LOCAL search_path TO elsewhere;\n"
            "CREATE TABLE where_am_i (id integer);\n",
            "appdb/2_next.up.sql": "CREATE TABLE next_file (id integer);\n",
        }
    )
    assert cli("up", "--dir", str(root)).code == 0
    rows = query(pg, "appdb", "SELECT schemaname, tablename FROM pg_tables WHERE schemaname IN ('elsewhere', 'public')")
    assert sorted(rows) == [("elsewhere", "where_am_i"), ("public", "next_file")]
