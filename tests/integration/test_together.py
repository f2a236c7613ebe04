"""Files sent together: consecutive plain transactional files share a round trip, each still its own
transaction with its history row; what fails is attributed to its file and line; the run ends durable."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from local.postgres import EmbeddedPostgres
from tests.helpers import history, query, tables
from tests.integration.conftest import CliResult, Files

pytestmark = pytest.mark.every_pg_version

Cli = Callable[..., CliResult]
Write = Callable[[Files], Path]

CREATE_APPDB = {"postgres/1_create_appdb.up.sql": "CREATE DATABASE appdb;\n"}


def plain(count: int) -> Files:
    return {f"appdb/{v}_t{v}.up.sql": f"CREATE TABLE t{v} (id int PRIMARY KEY);\n" for v in range(1, count + 1)}


@contextmanager
def server_log(pg: EmbeddedPostgres) -> Iterator[list[str]]:
    """The query strings the server received meanwhile (log_statement = all)."""
    query(pg, "postgres", "ALTER SYSTEM SET log_statement = 'all'")
    query(pg, "postgres", "SELECT pg_reload_conf()")
    start = pg.log_file.stat().st_size
    received: list[str] = []
    try:
        yield received
    finally:
        query(pg, "postgres", "ALTER SYSTEM RESET log_statement")
        query(pg, "postgres", "SELECT pg_reload_conf()")
        with pg.log_file.open() as log:
            log.seek(start)
            entries: list[str] = []
            for line in log:  # an entry's further lines start with a tab
                if line.startswith("\t") and entries:
                    entries[-1] += line[1:]
                else:
                    entries.append(line)
            received += [entry.split("statement: ", 1)[1] for entry in entries if "statement: " in entry]


def test_plain_files_share_round_trips_each_with_its_own_transaction_and_row(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    root = write_migrations({**CREATE_APPDB, **plain(250)})
    with server_log(pg) as received:
        result = cli("up", "--dir", str(root), "--json")
    assert result.code == 0, result.out
    files = [text for text in received if text.startswith("BEGIN;\nSELECT set_config('dbmigrate.file_started'")]
    assert len(files) == 3, "250 files in round trips of at most 100 (the root's CREATE DATABASE runs alone)"
    assert [text.count("\nCOMMIT;") for text in files] == [100, 100, 50]
    assert [text.count("synchronous_commit = off") for text in files] == [99, 99, 49], "the last commit flushes"
    assert history(pg, "appdb") == [(v, "applied") for v in range(1, 251)]
    xids = query(pg, "appdb", "SELECT count(DISTINCT xmin::text) FROM dbmigrate.history")
    assert xids == [(250,)], "each file committed in its own transaction"
    durations = query(pg, "appdb", "SELECT min(duration_ms), max(duration_ms) FROM dbmigrate.history")
    assert durations[0][0] >= 0 and durations[0][1] < 5000, "measured from each file's own start"


FAILURES = {
    # file 3's text, the line the error names, its SQLSTATE
    "undefined-table-with-position": ("CREATE TABLE c ();\nSELECT * FROM nope;\n", 2, "42P01"),
    "unique-violation-without-position": (
        "CREATE TABLE c (id int PRIMARY KEY);\nINSERT INTO c VALUES (1);\nINSERT INTO c VALUES (1);\n",
        3,
        "23505",
    ),
    "raised-in-a-do-block": ("CREATE TABLE c ();\nDO $$ BEGIN RAISE EXCEPTION 'no'; END $$;\n", 2, "P0001"),
    "single-statement": ("CREATE TABLE t1 ();\n", 1, "42P07"),
}


@pytest.mark.parametrize("failure", list(FAILURES.values()), ids=list(FAILURES))
def test_a_failure_among_files_sent_together_is_that_file_s_alone(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write, failure: tuple[str, int, str]
) -> None:
    sql, line, sqlstate = failure
    files = {**CREATE_APPDB, **plain(5), "appdb/3_t3.up.sql": sql}
    root = write_migrations(files)
    error = cli("up", "--dir", str(root), "--json").error()
    assert (error["error"], error["file"], error["line"], error["sqlstate"]) == (
        "SqlError",
        "appdb/3_t3.up.sql",
        line,
        sqlstate,
    )
    assert "rolled back: nothing of it was applied" in error["hint"]
    assert history(pg, "appdb") == [(1, "applied"), (2, "applied")], "before it: committed; after it: not run"
    assert tables(pg, "appdb") == ["t1", "t2"]

    (root / "appdb/3_t3.up.sql").write_text("CREATE TABLE t3 ();\n")
    assert cli("up", "--dir", str(root)).code == 0
    assert history(pg, "appdb") == [(v, "applied") for v in range(1, 6)]


def test_a_file_the_server_will_not_run_in_one_transaction_falls_back_and_the_rest_follow(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    enum = "CREATE TYPE mood AS ENUM ('ok');\nALTER TYPE mood ADD VALUE 'meh';\nCREATE TABLE f (m mood);\n"
    pending_trigger = (
        "CREATE TABLE p (id int PRIMARY KEY);\nCREATE TABLE c (p int REFERENCES p DEFERRABLE INITIALLY DEFERRED);\n"
        "INSERT INTO p VALUES (1);\nINSERT INTO c VALUES (1);\nALTER TABLE c ADD COLUMN x int;\n"
    )
    files = {**CREATE_APPDB, **plain(6), "appdb/2_t2.up.sql": enum, "appdb/4_t4.up.sql": pending_trigger}
    root = write_migrations(files)
    result = cli("up", "--dir", str(root), "--json")
    assert result.code == 0, result.out
    assert history(pg, "appdb") == [(v, "applied") for v in range(1, 7)]
    modes = dict(query(pg, "appdb", "SELECT version::int, mode FROM dbmigrate.history"))
    # 2 is seen to need commits when read; 4 only when the server refuses it among the files sent together.
    assert modes == {
        1: "transaction",
        2: "autocommit",
        3: "transaction",
        4: "autocommit",
        5: "transaction",
        6: "transaction",
    }


def test_a_file_that_sets_session_state_ends_its_round_trip_and_leaks_nothing(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    files = {
        **CREATE_APPDB,
        "appdb/1_schema.up.sql": "CREATE SCHEMA other;\nSET search_path = other;\nCREATE TABLE inside ();\n",
        "appdb/2_after.up.sql": "CREATE TABLE outside ();\n",
        # 300 ms: ample for file 3's own statement on a loaded machine, too short for file 4's
        "appdb/3_role.up.sql": "SET statement_timeout = '300ms';\nCREATE TABLE quick ();\n",
        "appdb/4_slow.up.sql": "SELECT pg_sleep(0.6);\nCREATE TABLE slow ();\n",
    }
    root = write_migrations(files)
    assert cli("up", "--dir", str(root)).code == 0, "file 4 runs without file 3's statement_timeout"
    where = dict(
        query(
            pg,
            "appdb",
            "SELECT relname, relnamespace::regnamespace::text FROM pg_class "
            "WHERE relkind = 'r' AND relname IN ('inside', 'outside', 'quick', 'slow')",
        )
    )
    assert where == {"inside": "other", "outside": "public", "quick": "public", "slow": "public"}


@pytest.mark.parametrize(("broken", "applied"), [(None, 30), (20, 19)], ids=["all-applied", "file-20-fails"])
def test_a_crash_right_after_the_run_loses_nothing_it_reported(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write, broken: int | None, applied: int
) -> None:
    """Files sent together commit without waiting for the disk but the last; that commit, or after a failure
    one durable write, makes them all safe before the run reports. The WAL writer is told to wait 10 s, so
    only the run's own commits can have flushed them."""
    query(pg, "postgres", "ALTER SYSTEM SET wal_writer_delay = '10s'")
    query(pg, "postgres", "ALTER SYSTEM SET wal_writer_flush_after = 0")
    query(pg, "postgres", "SELECT pg_reload_conf()")
    try:
        files = {**CREATE_APPDB, **plain(30)}
        if broken:
            files[f"appdb/{broken}_t{broken}.up.sql"] = "SELECT * FROM nope;\n"
        root = write_migrations(files)
        assert cli("up", "--dir", str(root)).code == (1 if broken else 0)
        pg.stop("immediate")  # a crash: what is not on disk is gone
        pg.start()
        assert history(pg, "appdb") == [(v, "applied") for v in range(1, applied + 1)]
        assert len(tables(pg, "appdb")) == applied
    finally:
        query(pg, "postgres", "ALTER SYSTEM RESET wal_writer_delay")
        query(pg, "postgres", "ALTER SYSTEM RESET wal_writer_flush_after")
        query(pg, "postgres", "SELECT pg_reload_conf()")
