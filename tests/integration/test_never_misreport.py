"""The run never says "applied" or "nothing applied" when the database says otherwise.

One test (or a few) per class of defect, on the real server, asserting on the database
itself and on the fields of the result or error document.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg2
import pytest

from local.postgres import EmbeddedPostgres
from tests.helpers import history, query, require_major, tables, write_files
from tests.integration.conftest import CliResult, Files

pytestmark = pytest.mark.every_pg_version

Cli = Callable[..., CliResult]
Write = Callable[[Files], Path]

ROOT = {"postgres/1_create_appdb.up.sql": "CREATE DATABASE appdb;"}


def up(cli: Cli, root: Path) -> CliResult:
    return cli("up", "--dir", str(root), "--json")


def rows(pg: EmbeddedPostgres, sql: str) -> list[tuple[object, ...]]:
    return query(pg, "appdb", sql)


# -- bytes the driver cannot send whole ------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "line", "column"),
    [
        # In a comment between statements: the cut query is valid, so it used to "apply".
        ("CREATE TABLE half (a text);\n-- note \x00 here\nCREATE TABLE rest ();", 2, 9),
        ("CREATE TABLE half (a text);\nINSERT INTO half VALUES ('a\x00b');\nCREATE TABLE rest ();", 2, 28),
        ("CREATE INDEX CONCURRENTLY first_a ON first (a);\nCREATE TABLE half ();\x00\nCREATE TABLE rest ();", 2, 22),
    ],
)
def test_a_nul_byte_is_refused_before_anything_of_the_file_or_the_next_is_sent(  # noqa: PLR0913  pytest passes each fixture and parameter by name
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write, body: str, line: int, column: int
) -> None:
    root = write_migrations(
        {
            **ROOT,
            "appdb/1_first.up.sql": "CREATE TABLE first (a int);",
            "appdb/2_nul.up.sql": body,
            "appdb/3_next.up.sql": "CREATE TABLE next_file ();",
        }
    )
    result = up(cli, root)
    assert result.code == 1
    error = result.json()
    assert (error["error"], error["file"], error["line"], error["column"]) == (
        "UnsupportedSqlError",
        "appdb/2_nul.up.sql",
        line,
        column,
    )
    assert history(pg, "appdb") == [(1, "applied")]
    assert tables(pg, "appdb") == ["first"]
    assert rows(pg, "SELECT count(*) FROM pg_indexes WHERE tablename = 'first'") == [(0,)]


def test_text_reaches_the_server_as_utf8_whatever_the_database_default_encoding(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    root = write_migrations({**ROOT, "appdb/1_t.up.sql": "CREATE TABLE t (a text);"})
    assert up(cli, root).code == 0
    query(pg, "postgres", "ALTER DATABASE appdb SET client_encoding = 'LATIN1'")
    write_migrations({"appdb/2_text.up.sql": "INSERT INTO t VALUES ('héllo \u2013 \u2713');"})
    assert up(cli, root).code == 0
    # Read back as bytes: this test's own connection gets the database's LATIN1 default.
    assert rows(pg, "SELECT encode(convert_to(a, 'UTF8'), 'hex') FROM t") == [("héllo \u2013 \u2713".encode().hex(),)]


# -- what the parser sees is what the server runs -----------------------------------------
def test_commit_or_rollback_hidden_by_standard_conforming_strings_off_is_refused_and_nothing_runs(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    for control in ("COMMIT", "ROLLBACK"):
        root = write_migrations(
            {
                **ROOT,
                "appdb/1_legacy.up.sql": "SET standard_conforming_strings = off;\n"
                "CREATE TABLE legacy (a text);\n"
                f"INSERT INTO legacy VALUES ('x\\''); {control}; INSERT INTO legacy VALUES (' ');\n",
            }
        )
        result = up(cli, root)
        assert result.code == 1
        error = result.json()
        assert (error["error"], error["line"]) == ("UnsupportedSqlError", 3)
        assert control in error["message"]
        assert history(pg, "appdb") == []
        assert tables(pg, "appdb") == []


def test_a_standard_conforming_strings_off_file_stores_what_its_strings_say(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    root = write_migrations(
        {
            **ROOT,
            "appdb/1_legacy.up.sql": "SET standard_conforming_strings = off;\n"
            "CREATE TABLE legacy (a text);\n"
            "INSERT INTO legacy VALUES ('it\\'s; commit;'), ('back\\\\slash');\n"
            "CREATE INDEX CONCURRENTLY legacy_a ON legacy (a);\n"
            "INSERT INTO legacy VALUES ('tab\\there');\n",
            "appdb/2_next.up.sql": "CREATE TABLE next_file (a text DEFAULT '\\n');",
        }
    )
    assert up(cli, root).code == 0
    assert sorted(rows(pg, "SELECT a FROM legacy")) == [("back\\slash",), ("it's; commit;",), ("tab\there",)]
    # The next file is read with the setting on again, as the parser reads it.
    assert rows(pg, "SELECT column_default FROM information_schema.columns WHERE table_name = 'next_file'") == [
        ("'\\n'::text",)
    ]


def test_a_do_block_that_only_mentions_commit_keeps_the_file_atomic(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    root = write_migrations(
        {
            **ROOT,
            "appdb/1_do.up.sql": "CREATE TABLE t (a text);\n"
            "DO $$ BEGIN RAISE NOTICE 'commit;'; INSERT INTO t VALUES ('rollback and chain'); END $$;\n"
            "SELECT 1 / 0;\n",
        }
    )
    result = up(cli, root)
    assert result.code == 1
    assert (result.json()["error"], result.json()["line"]) == ("SqlError", 3)
    assert tables(pg, "appdb") == []
    assert history(pg, "appdb") == []


def test_a_do_block_that_commits_or_a_procedure_call_runs_in_autocommit(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    root = write_migrations(
        {
            **ROOT,
            "appdb/1_t.up.sql": "CREATE TABLE t (a int);\n"
            "CREATE PROCEDURE add_two() LANGUAGE plpgsql AS $$ BEGIN INSERT INTO t VALUES (3); COMMIT; "
            "INSERT INTO t VALUES (4); END $$;",
            "appdb/2_batches.up.sql": "DO $$ BEGIN FOR i IN 1..2 LOOP BEGIN INSERT INTO t VALUES (i); END; "
            "IF true THEN COMMIT; END IF; END LOOP; END $$;\n"
            "SELECT 1;\n",
            "appdb/3_call.up.sql": "CALL add_two();\n",
        }
    )
    assert up(cli, root).code == 0
    assert rows(pg, "SELECT a FROM t ORDER BY 1") == [(1,), (2,), (3,), (4,)]
    assert rows(pg, "SELECT version, mode, status FROM dbmigrate.history ORDER BY 1") == [
        (1, "transaction", "applied"),
        (2, "autocommit", "applied"),
        (3, "autocommit", "applied"),
    ]


# -- an explicit wrapper is a promise ---------------------------------------------------------
def test_a_wrapped_file_with_a_statement_that_cannot_run_in_a_transaction_is_refused_up_front(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    root = write_migrations(
        {
            **ROOT,
            "appdb/1_t.up.sql": "CREATE TABLE t (a int);",
            "appdb/2_wrapped.up.sql": "BEGIN;\nCREATE TABLE before_index ();\n"
            "CREATE INDEX CONCURRENTLY t_a ON t (a);\nCREATE TABLE after_index ();\nCOMMIT;\n",
        }
    )
    result = up(cli, root)
    assert result.code == 1
    error = result.json()
    assert (error["error"], error["file"], error["line"]) == ("UnsupportedSqlError", "appdb/2_wrapped.up.sql", 3)
    assert error["statement"].startswith("CREATE INDEX CONCURRENTLY")
    assert history(pg, "appdb") == [(1, "applied")]
    assert tables(pg, "appdb") == ["t"]
    assert rows(pg, "SELECT count(*) FROM pg_indexes WHERE tablename = 't'") == [(0,)]


def test_a_wrapped_file_that_adds_an_enum_value_runs_as_its_one_transaction_or_not_at_all(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    root = write_migrations(
        {
            **ROOT,
            "appdb/1_type.up.sql": "CREATE TYPE mood AS ENUM ('sad');",
            "appdb/2_uses_it.up.sql": "BEGIN;\nALTER TYPE mood ADD VALUE 'happy';\n"
            "CREATE TABLE people (m mood DEFAULT 'happy');\nINSERT INTO people VALUES ('happy');\nCOMMIT;\n",
        }
    )
    result = up(cli, root)
    assert result.code == 1
    assert (result.json()["error"], result.json()["sqlstate"]) == ("SqlError", "55P04")
    assert rows(pg, "SELECT enum_range(NULL::mood)::text") == [("{sad}",)]
    assert tables(pg, "appdb") == []
    assert history(pg, "appdb") == [(1, "applied")]

    write_migrations(
        {
            "appdb/2_uses_it.up.sql": "BEGIN;\nALTER TYPE mood ADD VALUE 'happy';\n"
            "CREATE TABLE people (m mood);\nCOMMIT;\n"
        }
    )
    assert up(cli, root).code == 0
    assert rows(pg, "SELECT enum_range(NULL::mood)::text") == [("{sad,happy}",)]
    assert rows(pg, "SELECT mode FROM dbmigrate.history WHERE version = 2") == [("transaction",)]


def test_a_wrapped_procedure_call_runs_in_the_files_one_transaction_or_rolls_it_all_back(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    root = write_migrations(
        {
            **ROOT,
            "appdb/1_procs.up.sql": "CREATE TABLE t (a int);\n"
            "CREATE PROCEDURE plain() LANGUAGE sql AS $$ INSERT INTO t VALUES (1) $$;\n"
            "CREATE PROCEDURE commits() LANGUAGE plpgsql AS $$ BEGIN INSERT INTO t VALUES (2); COMMIT; END $$;",
            "appdb/2_wrapped.up.sql": "BEGIN;\nCREATE TABLE w ();\nCALL commits();\nCOMMIT;\n",
        }
    )
    result = up(cli, root)
    assert (result.code, result.json()["sqlstate"]) == (1, "2D000")
    assert rows(pg, "SELECT count(*) FROM t") == [(0,)]
    assert tables(pg, "appdb") == ["t"]
    assert history(pg, "appdb") == [(1, "applied")]

    write_migrations({"appdb/2_wrapped.up.sql": "BEGIN;\nCREATE TABLE w ();\nCALL plain();\nCOMMIT;\n"})
    assert up(cli, root).code == 0
    assert rows(pg, "SELECT a FROM t") == [(1,)]
    assert rows(pg, "SELECT mode FROM dbmigrate.history WHERE version = 2") == [("transaction",)]


# -- failed non-transactional statements leave objects behind ------------------------------
def test_an_invalid_index_left_by_a_failed_concurrent_build_is_named_and_never_recorded_applied(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    root = write_migrations(
        {
            **ROOT,
            "appdb/1_t.up.sql": "CREATE TABLE t (x int);\nINSERT INTO t VALUES (1), (1);",
            "appdb/2_unique.up.sql": "CREATE UNIQUE INDEX CONCURRENTLY t_x ON t (x);\n",
        }
    )
    failed = up(cli, root)
    assert failed.code == 1
    error = failed.json()
    assert (error["error"], error["left_behind"], error["sqlstate"]) == ("PartialMigrationError", ["t_x"], "23505")
    assert "DROP INDEX CONCURRENTLY t_x" in error["hint"]
    assert history(pg, "appdb") == [(1, "applied"), (2, "partial")]
    status = cli("status", "--dir", str(root), "--database", "appdb", "--json").json()
    assert "invalid index t_x" in status["databases"][0]["unfinished"][0]["error"]

    # The classic rerun: IF NOT EXISTS skips over the invalid index; it must not be recorded applied.
    write_migrations({"appdb/2_unique.up.sql": "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS t_x ON t (x);\n"})
    assert cli("repair", "--dir", str(root), "--database", "appdb").code == 0
    rerun = up(cli, root)
    assert rerun.code == 1
    assert rerun.json()["left_behind"] == ["t_x"]
    assert history(pg, "appdb") == [(1, "applied"), (2, "partial")]

    query(pg, "appdb", "DROP INDEX CONCURRENTLY t_x")
    query(pg, "appdb", "DELETE FROM t WHERE ctid = (SELECT max(ctid) FROM t)")
    assert cli("repair", "--dir", str(root), "--database", "appdb").code == 0
    assert up(cli, root).code == 0
    assert rows(pg, "SELECT indisvalid FROM pg_index WHERE indexrelid = 't_x'::regclass") == [(True,)]


def test_an_unnamed_invalid_index_after_earlier_statements_is_found_on_its_table(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    root = write_migrations(
        {
            **ROOT,
            "appdb/1_t.up.sql": "CREATE TABLE t (x int);\nINSERT INTO t VALUES (1), (1);",
            "appdb/2_two.up.sql": "CREATE INDEX CONCURRENTLY t_plain ON t (x);\n"
            "CREATE UNIQUE INDEX CONCURRENTLY ON t (x);\n",
        }
    )
    error = up(cli, root).json()
    assert (error["statements_done"], error["left_behind"], error["line"]) == (1, ["t_x_idx"], 2)
    assert rows(pg, "SELECT indexrelid::regclass::text, indisvalid FROM pg_index WHERE indrelid = 't'::regclass") in (
        [("t_plain", True), ("t_x_idx", False)],
        [("t_x_idx", False), ("t_plain", True)],
    )


def test_a_concurrent_index_drop_that_times_out_names_the_invalid_index_it_left(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    root = write_migrations({**ROOT, "appdb/1_t.up.sql": "CREATE TABLE t (x int);\nCREATE INDEX t_x ON t (x);"})
    assert up(cli, root).code == 0
    reader = psycopg2.connect(pg.dsn("appdb"))
    try:
        with reader.cursor() as cur:
            cur.execute("SELECT * FROM t")  # an open transaction the drop must wait for
        write_migrations({"appdb/2_drop.up.sql": "DROP INDEX CONCURRENTLY t_x;\n"})
        result = cli("up", "--dir", str(root), "--json", "--statement-timeout", "1")
    finally:
        reader.close()
    error = result.json()
    assert (result.code, error["error"], error["left_behind"]) == (1, "PartialMigrationError", ["t_x"])
    assert rows(pg, "SELECT indisvalid FROM pg_index WHERE indexrelid = 't_x'::regclass") == [(False,)]
    assert history(pg, "appdb") == [(1, "applied"), (2, "partial")]


def test_a_concurrent_detach_that_times_out_names_the_partition_pending_detach(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    require_major(pg, 14, "DETACH PARTITION ... CONCURRENTLY")
    root = write_migrations(
        {
            **ROOT,
            "appdb/1_parts.up.sql": "CREATE TABLE readings (at int) PARTITION BY RANGE (at);\n"
            "CREATE TABLE readings_1 PARTITION OF readings FOR VALUES FROM (0) TO (10);",
        }
    )
    assert up(cli, root).code == 0
    reader = psycopg2.connect(pg.dsn("appdb"))
    try:
        with reader.cursor() as cur:
            cur.execute("SELECT * FROM readings")  # a snapshot the detach must wait out
        write_migrations({"appdb/2_detach.up.sql": "ALTER TABLE readings DETACH PARTITION readings_1 CONCURRENTLY;\n"})
        result = cli("up", "--dir", str(root), "--json", "--statement-timeout", "1")
    finally:
        reader.close()
    error = result.json()
    assert (result.code, error["left_behind"]) == (1, ["readings_1"])
    assert "ALTER TABLE readings DETACH PARTITION readings_1 FINALIZE" in error["hint"]
    assert rows(pg, "SELECT inhdetachpending FROM pg_inherits WHERE inhrelid = 'readings_1'::regclass") == [(True,)]
    assert history(pg, "appdb") == [(1, "applied"), (2, "partial")]


# -- unknown is not "did not run" ---------------------------------------------------------
SLOW_FILE = "CREATE INDEX CONCURRENTLY t_x ON t (x);\nINSERT INTO t SELECT 42 FROM pg_sleep(3);\nSELECT 1;\n"


RUNNING_SLOW = (
    "SELECT {what} FROM pg_stat_activity WHERE query LIKE '%INSERT INTO t SELECT 42 FROM pg_sleep%' "
    "AND pid <> pg_backend_pid()"
)


def wait_for(predicate: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def sleeping(pg: EmbeddedPostgres) -> bool:
    return bool(query(pg, "postgres", RUNNING_SLOW.format(what="count(*)"))[0][0])


def test_a_statement_still_running_when_the_run_is_killed_is_recorded_as_outcome_unknown(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    root = write_migrations({**ROOT, "appdb/1_t.up.sql": "CREATE TABLE t (x int);", "appdb/2_slow.up.sql": SLOW_FILE})
    run = subprocess.Popen(
        # The server's own check for a vanished client off (as on PostgreSQL 13, or when no FIN
        # reaches the server): the statement runs on after the client died.
        [sys.executable, "-m", "dbmigrate", "up", "--dir", str(root), "--dead-client-check", "0"],
        env={**os.environ, "DATABASE_URL": pg.url()},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(lambda: sleeping(pg))
    run.send_signal(signal.SIGKILL)
    run.wait()
    wait_for(lambda: not sleeping(pg))  # the server finished the statement after the client died
    assert rows(pg, "SELECT x FROM t") == [(42,)]

    status = cli("status", "--dir", str(root), "--database", "appdb", "--json").json()
    record = status["databases"][0]["unfinished"][0]
    assert (record["status"], record["statements_done"], record["statements_total"]) == ("running", 1, 3)
    assert record["error"].startswith("statement 2 (line 2) was running")
    blocked = up(cli, root)
    refusal = blocked.json()
    assert (blocked.code, refusal["outcome_unknown"], refusal["version"]) == (1, 2, 2)
    assert "statement 2: outcome unknown" in refusal["message"]
    assert "do not simply run it again" in refusal["hint"]
    assert rows(pg, "SELECT x FROM t") == [(42,)]


def test_a_connection_lost_mid_statement_reports_outcome_unknown_not_nothing_applied(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    root = write_migrations({**ROOT, "appdb/1_t.up.sql": "CREATE TABLE t (x int);", "appdb/2_slow.up.sql": SLOW_FILE})

    def cut_connection() -> None:
        wait_for(lambda: sleeping(pg))
        query(pg, "postgres", RUNNING_SLOW.format(what="pg_terminate_backend(pid)"))

    cutter = threading.Thread(target=cut_connection)
    cutter.start()
    result = up(cli, root)
    cutter.join()
    error = result.json()
    assert (result.code, error["error"], error["outcome_unknown"], error["line"]) == (
        1,
        "PartialMigrationError",
        2,
        2,
    )
    assert history(pg, "appdb") == [(1, "applied"), (2, "running")]


def test_a_transactional_file_whose_connection_is_lost_says_the_history_decides(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    root = write_migrations(
        {**ROOT, "appdb/1_t.up.sql": "CREATE TABLE t (x int);\nINSERT INTO t SELECT 42 FROM pg_sleep(3);\n"}
    )

    def cut_connection() -> None:
        wait_for(lambda: sleeping(pg))
        query(pg, "postgres", RUNNING_SLOW.format(what="pg_terminate_backend(pid)"))

    cutter = threading.Thread(target=cut_connection)
    cutter.start()
    result = up(cli, root)
    cutter.join()
    error = result.json()
    assert (result.code, error["error"], error["connection_lost"]) == (1, "ConnectionLostError", True)
    assert "nothing of it was applied" not in error["hint"] and "history row" in error["hint"]
    assert history(pg, "appdb") == [] and tables(pg, "appdb") == []


# -- destructive commands check their target ---------------------------------------------------
DOWNS = {
    **ROOT,
    "appdb/10_a.up.sql": "CREATE TABLE a ();",
    "appdb/10_a.down.sql": "DROP TABLE a;",
    "appdb/20_b.up.sql": "CREATE TABLE b ();",
    "appdb/20_b.down.sql": "DROP TABLE b;",
    "appdb/30_c.up.sql": "CREATE TABLE c ();",
    "appdb/30_c.down.sql": "DROP TABLE c;",
}


def test_down_to_an_unknown_version_is_refused_and_undoes_nothing(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    root = write_migrations(DOWNS)
    assert up(cli, root).code == 0
    typo = cli("down", "--dir", str(root), "--database", "appdb", "--to", "2", "--json")
    assert typo.code == 2
    assert (typo.json()["error"], typo.json()["target"], typo.json()["applied"]) == ("ConfigError", 2, [10, 20, 30])
    assert tables(pg, "appdb") == ["a", "b", "c"]
    assert history(pg, "appdb") == [(10, "applied"), (20, "applied"), (30, "applied")]


def test_down_says_what_it_will_undo_and_dry_run_undoes_nothing(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    root = write_migrations(DOWNS)
    assert up(cli, root).code == 0
    dry = cli("down", "--dir", str(root), "--database", "appdb", "--to", "10", "--dry-run", "--json")
    assert dry.code == 0
    document = dry.json()
    assert document["dry_run"] is True
    assert [item["down_file"] for item in document["databases"][0]["to_undo"]] == [
        "appdb/30_c.down.sql",
        "appdb/20_b.down.sql",
    ]
    assert "reverted" not in document["databases"][0]
    assert tables(pg, "appdb") == ["a", "b", "c"]

    real = cli("down", "--dir", str(root), "--database", "appdb", "--to", "10")
    assert real.code == 0
    assert real.err.index("undoes 30 (appdb/30_c.down.sql), 20 (appdb/20_b.down.sql)") < real.err.index("[appdb 1/2]")
    assert tables(pg, "appdb") == ["a"]
    assert cli("down", "--dir", str(root), "--database", "appdb", "--to", "0").code == 0
    assert tables(pg, "appdb") == []


def test_repair_accept_checksum_changes_only_that_row_and_a_failed_repair_changes_nothing(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    root = write_migrations(
        {
            **ROOT,
            "appdb/1_a.up.sql": "CREATE TABLE a ();",
            "appdb/2_b.up.sql": "CREATE TABLE b ();",
            "appdb/3_half.up.sql": "CREATE TABLE c ();\nCREATE INDEX CONCURRENTLY c_missing ON missing (x);\n",
        }
    )
    assert up(cli, root).code == 1
    assert history(pg, "appdb") == [(1, "applied"), (2, "applied"), (3, "partial")]
    before = rows(pg, "SELECT version, checksum FROM dbmigrate.history ORDER BY 1")
    write_migrations({"appdb/1_a.up.sql": "CREATE TABLE a (); -- reviewed"})
    (root / "appdb" / "2_b.up.sql").rename(root / "appdb" / "2_other.up.sql")
    (root / "appdb" / "2_other.up.sql").write_text("CREATE TABLE other ();")

    failed = cli(
        "repair", "--dir", str(root), "--database", "appdb", "--accept-checksum", "1", "--accept-checksum", "2"
    )
    assert failed.code == 2
    assert rows(pg, "SELECT version, checksum FROM dbmigrate.history ORDER BY 1") == before
    assert history(pg, "appdb") == [(1, "applied"), (2, "applied"), (3, "partial")]

    accepted = cli("repair", "--dir", str(root), "--database", "appdb", "--accept-checksum", "1", "--json")
    assert accepted.code == 0 and len(accepted.json()["changes"]) == 1
    after = rows(pg, "SELECT version, checksum FROM dbmigrate.history ORDER BY 1")
    assert after[0] != before[0] and after[1:] == before[1:]
    assert history(pg, "appdb") == [(1, "applied"), (2, "applied"), (3, "partial")]


# -- another project's history is not drift -----------------------------------------------
def test_applying_another_projects_folder_names_the_different_file_and_applies_nothing(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write, tmp_path: Path
) -> None:
    root = write_migrations({**ROOT, "appdb/1_create_users.up.sql": "CREATE TABLE users ();"})
    assert up(cli, root).code == 0
    other = write_files(
        tmp_path / "other",
        {
            **ROOT,
            "appdb/1_create_invoices.up.sql": "CREATE TABLE invoices ();",
            "appdb/2_create_lines.up.sql": "CREATE TABLE lines ();",
        },
    )
    result = up(cli, other)
    assert result.code == 1
    error = result.json()
    assert (error["error"], error["version"], error["history_file"], error["source_file"]) == (
        "ForeignHistoryError",
        1,
        "appdb/1_create_users.up.sql",
        "appdb/1_create_invoices.up.sql",
    )
    assert tables(pg, "appdb") == ["users"]
    plan = cli("plan", "--dir", str(other), "--json").json()
    appdb = next(d for d in plan["databases"] if d["name"] == "appdb")
    assert appdb["different"][0]["version"] == 1 and appdb["changed"] == []
    assert cli("repair", "--dir", str(other), "--database", "appdb", "--accept-checksum", "1").code == 2
