"""Files sent together: consecutive plain transactional files share a round trip, each still its own
transaction with its history row; what fails is attributed to its file and line; the run ends durable."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from dbmigrate.errors import SourceError
from dbmigrate.session import PREPARING_THREAD
from dbmigrate.sources import LocalSource
from dbmigrate.together import MAX_TOGETHER_BYTES
from local.postgres import EmbeddedPostgres
from tests.helpers import history, query, tables, write_files
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


def test_the_next_round_trip_is_read_and_parsed_while_one_runs_on_the_server(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write, monkeypatch: pytest.MonkeyPatch
) -> None:
    """File 100 holds the first round trip on the server for half a second; file 150 is read meanwhile."""
    files = {**CREATE_APPDB, **plain(250), "appdb/100_t100.up.sql": "SELECT pg_sleep(0.5);\nCREATE TABLE t100 ();\n"}
    root = write_migrations(files)
    seen: dict[str, tuple[str, int]] = {}
    read = LocalSource.read

    def watched(source: LocalSource, key: str) -> bytes:
        if key == "appdb/150_t150.up.sql":  # waits up to 2 s for round trip 1 to be running (it may not have started)
            sleeping = "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'"  # the text is cut at 1 kB
            deadline = time.monotonic() + 2
            while not query(pg, "appdb", sleeping)[0][0] and time.monotonic() < deadline:
                time.sleep(0.01)
            seen[key] = (threading.current_thread().name, query(pg, "appdb", sleeping)[0][0])
        return read(source, key)

    monkeypatch.setattr(LocalSource, "read", watched)
    result = cli("up", "--dir", str(root), "--json")
    assert result.code == 0, result.out
    thread, running = seen["appdb/150_t150.up.sql"]
    assert thread.startswith(PREPARING_THREAD) and running == 1, "read while round trip 1 ran on the server"
    assert history(pg, "appdb") == [(v, "applied") for v in range(1, 251)]
    assert not [t for t in threading.enumerate() if t.name.startswith(PREPARING_THREAD)], "no thread left"


Tree = dict[str, str | bytes]


def _unreadable(monkeypatch: pytest.MonkeyPatch, files: Tree) -> None:
    read = LocalSource.read

    def failing(source: LocalSource, key: str) -> bytes:
        if key == "appdb/150_t150.up.sql":
            raise SourceError(f"cannot read {key}: gone", file=key)
        return read(source, key)

    monkeypatch.setattr(LocalSource, "read", failing)


AHEAD_FAILURES = {
    # how file 150 (read ahead, in the second round trip) fails: the error it raises, and its line
    "syntax": (lambda _, files: files.update({"appdb/150_t150.up.sql": "CREATE TABLE t150 ();\nSELEC 1;\n"}), 2),
    "not-utf-8": (lambda _, files: files.update({"appdb/150_t150.up.sql": b"SELECT '\xff';\n"}), 1),
    "unreadable": (_unreadable, None),
}


@pytest.mark.parametrize("failure", list(AHEAD_FAILURES.values()), ids=list(AHEAD_FAILURES))
def test_a_file_that_fails_when_read_ahead_fails_in_its_turn_after_the_files_before_it(
    pg: EmbeddedPostgres,
    cli: Cli,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    failure: tuple[Callable[[pytest.MonkeyPatch, Tree], None], int | None],
) -> None:
    break_it, line = failure
    files: Tree = {**CREATE_APPDB, **plain(250)}
    break_it(monkeypatch, files)
    error = cli("up", "--dir", str(write_files(tmp_path / "migrations", files)), "--json").error()
    assert (error["file"], error.get("line")) == ("appdb/150_t150.up.sql", line)
    assert history(pg, "appdb") == [(v, "applied") for v in range(1, 150)], "the 149 before it, nothing after"
    assert not [t for t in threading.enumerate() if t.name.startswith(PREPARING_THREAD)], "no thread left"


def test_files_after_one_that_needs_a_new_session_are_recorded_through_the_new_one(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    """File 4 sets a custom setting (a new session follows it); 5-104 were read ahead meanwhile, for the old one."""
    files = {**CREATE_APPDB, **plain(150), "appdb/4_t4.up.sql": "SET app.tenant = 'x';\nCREATE TABLE t4 ();\n"}
    result = cli("up", "--dir", str(write_migrations(files)), "--json")
    assert result.code == 0, result.out
    assert history(pg, "appdb") == [(v, "applied") for v in range(1, 151)]


def test_what_is_read_ahead_stays_within_a_round_trip_s_bytes(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files over a round trip's bytes each travel alone. While file 1 runs, file 2 is held (it ended file 1's
    round trip), which is all the bytes there is room for: file 3 is read once file 1 is applied, when file 2's
    round trip is made (as file 2 was for file 1's)."""
    filler = "-- " + "x" * MAX_TOGETHER_BYTES + "\n"
    files = {
        **CREATE_APPDB,
        "appdb/1_big.up.sql": "SELECT pg_sleep(0.5);\n" + filler,
        "appdb/2_big.up.sql": "CREATE TABLE two ();\n" + filler,
        "appdb/3_big.up.sql": "CREATE TABLE three ();\n" + filler,
        "appdb/4_small.up.sql": "CREATE TABLE four ();\n",
    }
    root = write_migrations(files)
    applied_before: list[list[tuple[int, str]]] = []
    read = LocalSource.read

    def watched(source: LocalSource, key: str) -> bytes:
        if key == "appdb/3_big.up.sql":  # read ahead, it would be while file 1 sleeps (waited for, up to 2 s)
            sleeping = "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'"
            deadline = time.monotonic() + 2
            while not query(pg, "appdb", sleeping)[0][0] and not history(pg, "appdb"):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.01)
            applied_before.append(history(pg, "appdb"))
        return read(source, key)

    monkeypatch.setattr(LocalSource, "read", watched)
    result = cli("up", "--dir", str(root), "--json")
    assert result.code == 0, result.out
    assert applied_before == [[(1, "applied")]], "file 3 was not read while file 1 ran"
    assert history(pg, "appdb") == [(v, "applied") for v in range(1, 5)]
