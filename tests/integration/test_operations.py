"""Operating real databases: down, baseline, adopting another tool's history, lock_timeout."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg2
import pytest

from local.postgres import EmbeddedPostgres
from tests.helpers import history, query, tables
from tests.integration.conftest import CliResult, Files

pytestmark = pytest.mark.every_pg_version

Cli = Callable[..., CliResult]
Write = Callable[[Files], Path]

ROOT = {"postgres/1_create_appdb.up.sql": "CREATE DATABASE appdb;"}
WITH_DOWNS = {
    **ROOT,
    "appdb/1_users.up.sql": "CREATE TABLE users (id int PRIMARY KEY, email text);",
    "appdb/1_users.down.sql": "DROP TABLE users;",
    "appdb/2_orders.up.sql": "CREATE TABLE orders (id int, user_id int REFERENCES users);\n"
    "CREATE INDEX ON orders (user_id);",
    "appdb/2_orders.down.sql": "DROP TABLE orders;",
    "appdb/3_email_idx.up.sql": "CREATE UNIQUE INDEX CONCURRENTLY users_email ON users (email);",
    "appdb/3_email_idx.down.sql": "DROP INDEX CONCURRENTLY users_email;",
    "appdb/4_view.up.sql": "CREATE VIEW user_orders AS\n"
    "SELECT u.email, o.id FROM users u JOIN orders o ON o.user_id = u.id;",
    "appdb/4_view.down.sql": "DROP VIEW user_orders;",
}


def schema(pg: EmbeddedPostgres, database: str) -> str:
    """The database's schema as pg_dump prints it, without the engine's own history."""
    dump = subprocess.run(
        [str(pg.client_bindir / "pg_dump"), "--schema-only", "--exclude-schema=dbmigrate", pg.dsn(database)],
        capture_output=True,
        text=True,
        check=True,
    )
    return "\n".join(
        line for line in dump.stdout.splitlines() if not line.startswith(("--", "\\restrict", "\\unrestrict"))
    )


def test_down_to_a_version_and_up_again_ends_in_the_same_schema(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    root = write_migrations(WITH_DOWNS)
    assert cli("up", "--dir", str(root)).code == 0
    full = schema(pg, "appdb")

    down = cli("down", "--dir", str(root), "--database", "appdb", "--to", "1", "--json")
    assert down.code == 0, down.err
    assert down.json()["databases"][0]["reverted"] == [4, 3, 2]
    assert history(pg, "appdb") == [(1, "applied")]
    assert tables(pg, "appdb") == ["users"]

    assert cli("up", "--dir", str(root)).code == 0
    assert schema(pg, "appdb") == full


def test_down_with_a_missing_down_file_undoes_nothing_and_names_the_file(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    files = dict(WITH_DOWNS)
    del files["appdb/2_orders.down.sql"]
    root = write_migrations(files)
    assert cli("up", "--dir", str(root)).code == 0

    result = cli("down", "--dir", str(root), "--database", "appdb", "--to", "0", "--json")
    error = result.error(2)
    assert (error["error"], error["file"]) == ("ConfigError", "appdb/2_orders.down.sql")
    assert "nothing was undone" in error["hint"]
    assert history(pg, "appdb") == [(1, "applied"), (2, "applied"), (3, "applied"), (4, "applied")]


def test_failing_down_file_leaves_the_version_applied(pg: EmbeddedPostgres, cli: Cli, write_migrations: Write) -> None:
    root = write_migrations({**WITH_DOWNS, "appdb/4_view.down.sql": "DROP VIEW user_orders;\nDROP TABLE nope;\n"})
    assert cli("up", "--dir", str(root)).code == 0
    result = cli("down", "--dir", str(root), "--database", "appdb", "--to", "3", "--json")
    error = result.error()
    assert (error["error"], error["file"], error["line"], error["sqlstate"]) == (
        "SqlError",
        "appdb/4_view.down.sql",
        2,
        "42P01",
    )
    assert history(pg, "appdb")[-1] == (4, "applied")
    assert query(pg, "appdb", "SELECT count(*) FROM pg_views WHERE viewname = 'user_orders'") == [(1,)]


def test_baseline_then_up_applies_only_later_files(pg: EmbeddedPostgres, cli: Cli, write_migrations: Write) -> None:
    query(pg, "postgres", "CREATE DATABASE appdb")
    query(pg, "appdb", "CREATE TABLE users (id int PRIMARY KEY, email text)")  # made before we came
    root = write_migrations(WITH_DOWNS)

    baseline = cli("baseline", "--dir", str(root), "--database", "appdb", "--version", "1")
    assert baseline.code == 0, baseline.err
    assert "marked 1 file(s) of appdb up to version 1 as baselined" in baseline.out
    assert cli("up", "--dir", str(root), "--database", "appdb").code == 0
    assert history(pg, "appdb") == [(1, "baselined"), (2, "applied"), (3, "applied"), (4, "applied")]
    status = cli("status", "--dir", str(root), "--database", "appdb", "--json").json()["databases"][0]
    assert status["history"][0]["status"] == "baselined"
    assert status["applied"] == [1, 2, 3, 4]

    again = cli("baseline", "--dir", str(root), "--database", "appdb", "--version", "2")
    assert again.code == 2 and "already has a history" in again.err


def test_baseline_at_a_version_no_file_has_is_refused(pg: EmbeddedPostgres, cli: Cli, write_migrations: Write) -> None:
    root = write_migrations(WITH_DOWNS)
    result = cli("baseline", "--dir", str(root), "--database", "appdb", "--version", "7", "--json")
    error = result.error(2)
    assert (error["error"], error["database"]) == ("ConfigError", "appdb"), error
    assert "no file of appdb has version 7" in error["message"] and "1, 2, 3, 4" in error["message"]


def golang_migrate_database(pg: EmbeddedPostgres, version: int, *, dirty: bool) -> None:
    """A database as golang-migrate's postgres driver leaves it after applying files 1..version."""
    query(pg, "postgres", "CREATE DATABASE appdb")
    query(pg, "appdb", "CREATE TABLE IF NOT EXISTS schema_migrations (version bigint NOT NULL, dirty boolean NOT NULL)")
    query(pg, "appdb", "CREATE UNIQUE INDEX IF NOT EXISTS version_unique ON schema_migrations (version)")
    query(pg, "appdb", "CREATE TABLE users (id int PRIMARY KEY, email text)")
    query(pg, "appdb", "CREATE TABLE orders (id int, user_id int REFERENCES users)")
    query(pg, "appdb", "INSERT INTO schema_migrations (version, dirty) VALUES (%s, %s)", (version, dirty))


def test_golang_migrate_history_is_adopted_and_later_files_apply(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    golang_migrate_database(pg, 2, dirty=False)
    root = write_migrations({k: v for k, v in WITH_DOWNS.items() if not k.startswith("postgres/")})

    plan = cli("plan", "--dir", str(root), "--json")
    assert plan.code == 0
    assert plan.json()["databases"][0]["pending"] == [3, 4]

    assert cli("up", "--dir", str(root)).code == 0, "adoption failed"
    assert history(pg, "appdb") == [(1, "adopted"), (2, "adopted"), (3, "applied"), (4, "applied")]
    status = cli("status", "--dir", str(root), "--json").json()["databases"][0]
    assert status["history"][0]["applied_by"] == "adopted from golang-migrate (schema_migrations)"


def test_dirty_golang_migrate_database_is_refused_with_the_version_and_the_way_forward(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    golang_migrate_database(pg, 2, dirty=True)
    root = write_migrations({k: v for k, v in WITH_DOWNS.items() if not k.startswith("postgres/")})
    result = cli("up", "--dir", str(root), "--json")
    error = result.error()
    assert (error["error"], error["file"], error["legacy_version"]) == (
        "LegacyHistoryError",
        "appdb/2_orders.up.sql",
        2,
    )
    assert "UPDATE schema_migrations SET dirty = false" in error["hint"]
    assert query(pg, "appdb", "SELECT to_regclass('dbmigrate.history') IS NULL") == [(True,)]


def test_flyway_history_is_adopted_and_a_failed_flyway_row_is_refused(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    query(pg, "postgres", "CREATE DATABASE appdb")
    query(
        pg,
        "appdb",
        """CREATE TABLE flyway_schema_history (
            installed_rank integer PRIMARY KEY, version varchar(50), description varchar(200) NOT NULL,
            type varchar(20) NOT NULL, script varchar(1000) NOT NULL, checksum integer,
            installed_by varchar(100) NOT NULL, installed_on timestamp NOT NULL DEFAULT now(),
            execution_time integer NOT NULL, success boolean NOT NULL)""",
    )
    query(pg, "appdb", "CREATE TABLE users (id int PRIMARY KEY, email text)")
    query(
        pg,
        "appdb",
        "INSERT INTO flyway_schema_history VALUES (1, '1', 'users', 'SQL', 'V1__users.sql', 1, 'ci', now(), 5, true),"
        " (2, NULL, 'views', 'SQL', 'R__views.sql', 2, 'ci', now(), 5, true)",
    )
    root = write_migrations({k: v for k, v in WITH_DOWNS.items() if not k.startswith("postgres/")})
    assert cli("up", "--dir", str(root)).code == 0
    assert history(pg, "appdb") == [(1, "adopted"), (2, "applied"), (3, "applied"), (4, "applied")]

    query(pg, "postgres", "DROP DATABASE appdb WITH (FORCE)")
    query(pg, "postgres", "CREATE DATABASE appdb")
    query(
        pg,
        "appdb",
        "CREATE TABLE flyway_schema_history (installed_rank int, version varchar(50), "
        "script varchar(1000), success boolean)",
    )
    query(pg, "appdb", "INSERT INTO flyway_schema_history VALUES (1, '1', 'V1__users.sql', false)")
    failed = cli("up", "--dir", str(root), "--json")
    error = failed.error()
    assert (error["error"], error["database"], error["legacy_version"]) == ("LegacyHistoryError", "appdb", "1")
    assert "flyway repair" in error["hint"]


@pytest.fixture
def orders_table_busy(pg: EmbeddedPostgres) -> Iterator[int]:
    """An application session holding a lock on appdb.orders in an open transaction; yields its pid."""
    query(pg, "postgres", "CREATE DATABASE appdb")
    query(pg, "appdb", "CREATE TABLE orders (id int)")
    conn = psycopg2.connect(pg.dsn("appdb"), application_name="orders-api")
    with conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid(); LOCK TABLE orders IN ROW EXCLUSIVE MODE")
        cur.execute("SELECT pg_backend_pid()")
        row = cur.fetchone()
    assert row
    yield row[0]
    conn.rollback()
    conn.close()


def test_ddl_blocked_by_an_application_lock_fails_within_lock_timeout_naming_the_holder(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write, orders_table_busy: int
) -> None:
    root = write_migrations({"appdb/1_add.up.sql": "CREATE TABLE t ();\nALTER TABLE orders ADD COLUMN note text;\n"})
    started = time.monotonic()
    result = cli("up", "--dir", str(root), "--lock-timeout", "1", "--json")
    elapsed = time.monotonic() - started

    error = result.error()
    assert elapsed < 10
    assert (error["error"], error["file"], error["sqlstate"]) == ("SqlError", "appdb/1_add.up.sql", "55P03"), error
    assert f"pid {orders_table_busy} (orders-api, idle in transaction" in error["message"]
    assert "RowExclusiveLock on orders" in error["message"]
    assert history(pg, "appdb") == []
    assert tables(pg, "appdb") == ["orders"]


def test_statement_timeout_stops_a_long_statement_and_names_the_setting(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    root = write_migrations({**ROOT, "appdb/1_slow.up.sql": "CREATE TABLE t ();\nSELECT pg_sleep(30);\n"})
    started = time.monotonic()
    result = cli("up", "--dir", str(root), "--statement-timeout", "1", "--json")
    assert time.monotonic() - started < 10
    error = result.error()
    assert (error["error"], error["file"], error["sqlstate"]) == ("SqlError", "appdb/1_slow.up.sql", "57014"), error
    assert "statement_timeout" in error["hint"]
    assert history(pg, "appdb") == []


def history_rows(pg: EmbeddedPostgres, version: int) -> list[tuple[object, ...]]:
    return query(pg, "appdb", f"SELECT * FROM dbmigrate.history WHERE version = {version}")


def test_an_autocommit_down_file_that_stops_part_way_is_recorded_as_far_as_it_got(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    down = "DROP INDEX CONCURRENTLY users_email;\nDROP INDEX CONCURRENTLY nope;\n"
    root = write_migrations({**WITH_DOWNS, "appdb/3_email_idx.down.sql": down})
    assert cli("up", "--dir", str(root)).code == 0

    result = cli("down", "--dir", str(root), "--database", "appdb", "--to", "2", "--json")
    assert result.code == 1
    error = result.json()
    assert (error["error"], error["file"], error["line"]) == ("PartialMigrationError", "appdb/3_email_idx.down.sql", 2)
    assert (error["statements_done"], error["statements_total"]) == (1, 2)
    assert history(pg, "appdb") == [(1, "applied"), (2, "applied"), (3, "partial")]
    (done, note), *_ = query(pg, "appdb", "SELECT statements_done, error FROM dbmigrate.history WHERE version = 3")
    assert done == 1 and note.startswith("undo with appdb/3_email_idx.down.sql stopped: ")
    assert query(pg, "appdb", "SELECT count(*) FROM pg_indexes WHERE indexname = 'users_email'") == [(0,)]

    status = cli("status", "--dir", str(root), "--database", "appdb", "--json").json()
    assert [row["version"] for row in status["databases"][0]["unfinished"]] == [3]
    assert status["problems"][0]["error"] == "PartialMigrationError"


def test_an_autocommit_down_file_whose_first_statement_fails_leaves_the_record_as_it_was(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    down = "DROP INDEX CONCURRENTLY nope;\nDROP INDEX CONCURRENTLY users_email;\n"
    root = write_migrations({**WITH_DOWNS, "appdb/3_email_idx.down.sql": down})
    assert cli("up", "--dir", str(root)).code == 0
    before = history_rows(pg, 3)

    result = cli("down", "--dir", str(root), "--database", "appdb", "--to", "2", "--json")
    assert result.code == 1
    assert (result.json()["error"], result.json()["line"]) == ("SqlError", 1)
    assert "nothing of the file was undone" in result.json()["hint"]
    assert history_rows(pg, 3) == before
    assert history(pg, "appdb") == [(1, "applied"), (2, "applied"), (3, "applied")]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("SET ROLE file_owner;\nCREATE TABLE owned.t (a int);\n", id="in-a-transaction"),
        pytest.param(
            "SET ROLE file_owner;\nCREATE TABLE owned.t (a int);\nCREATE INDEX CONCURRENTLY t_a ON owned.t (a);\n",
            id="statement-by-statement",
        ),
    ],
)
def test_a_file_that_sets_a_role_keeps_it_for_its_statements_but_its_history_is_written_as_the_session_user(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write, body: str
) -> None:
    query(pg, "postgres", "DO $$ BEGIN CREATE ROLE file_owner NOLOGIN; EXCEPTION WHEN duplicate_object THEN END $$")
    root = write_migrations(
        {
            **ROOT,
            "appdb/1_schema.up.sql": "CREATE SCHEMA owned;\nGRANT USAGE, CREATE ON SCHEMA owned TO file_owner;\n",
            "appdb/2_as_owner.up.sql": body,
            "appdb/2_as_owner.down.sql": "SET ROLE file_owner;\nDROP TABLE owned.t;\n",
            "appdb/3_after.up.sql": "CREATE TABLE owned.after (a int);\n",
            "appdb/3_after.down.sql": "DROP TABLE owned.after;\n",
        }
    )
    assert cli("up", "--dir", str(root)).code == 0
    (session_user,) = query(pg, "appdb", "SELECT session_user")[0]
    owners = query(pg, "appdb", "SELECT tablename, tableowner FROM pg_tables WHERE schemaname = 'owned' ORDER BY 1")
    assert owners == [("after", session_user), ("t", "file_owner")]
    db_users = query(pg, "appdb", "SELECT version, db_user, status FROM dbmigrate.history ORDER BY 1")
    assert [(int(v), user, status) for v, user, status in db_users] == [(v, session_user, "applied") for v in (1, 2, 3)]

    down = cli("down", "--dir", str(root), "--database", "appdb", "--to", "1")
    assert down.code == 0, down.err
    assert history(pg, "appdb") == [(1, "applied")]
