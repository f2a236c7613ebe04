"""The lock's own connection: server timeouts, a lost lock, cleanup errors, and one lock for CLI and function."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg2
import pytest

from dbmigrate.cli import _parser, _settings
from dbmigrate.config import Settings
from dbmigrate.errors import LockLostError
from dbmigrate.lock import lock_target
from dbmigrate.runner import Runner
from dbmigrate.sources import LocalSource
from environment import FunctionEnv, build_settings
from local.postgres import EmbeddedPostgres
from tests.helpers import history, query, require_major, tables
from tests.integration.conftest import CliResult, Files
from tests.integration.processes import run_cli

pytestmark = pytest.mark.every_pg_version

Write = Callable[[Files], Path]

SLOW_THEN_MORE = {
    "postgres/1_create_appdb.up.sql": "CREATE DATABASE appdb;",
    "appdb/1_slow.up.sql": "CREATE TABLE a ();\nSELECT pg_sleep(1.6);\n",
    "appdb/2_b.up.sql": "CREATE TABLE b ();",
}


def terminate_lock_session(pg: EmbeddedPostgres) -> None:
    rows = query(
        pg,
        "postgres",
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'dbmigrate-lock %'",
    )
    assert rows == [(True,)]


@pytest.fixture
def idle_session_timeout(pg: EmbeddedPostgres) -> Iterator[None]:
    """Sessions of the test's role on the root database end after 1 s idle (PG 14+)."""
    require_major(pg, 14, "idle_session_timeout")
    query(pg, "postgres", f"ALTER ROLE {pg.user} IN DATABASE postgres SET idle_session_timeout = '1s'")
    try:
        yield
    finally:
        query(pg, "postgres", f"ALTER ROLE {pg.user} IN DATABASE postgres RESET idle_session_timeout")


def test_a_role_idle_session_timeout_does_not_end_the_lock_or_the_run(
    pg: EmbeddedPostgres, write_migrations: Write, idle_session_timeout: None
) -> None:
    root = write_migrations(SLOW_THEN_MORE)

    result = run_cli(pg, root)

    assert result.code == 0, result.out + result.err
    report = result.json()
    assert [d["applied"] for d in report["databases"]] == [[1], [1, 2]]
    assert "warnings" not in report
    assert history(pg, "appdb") == [(1, "applied"), (2, "applied")]


def test_a_lost_lock_is_found_before_the_next_file_and_nothing_more_starts(
    pg: EmbeddedPostgres, write_migrations: Write
) -> None:
    """File 2 sets a session setting, so it travels alone: the lock is checked before it is sent."""
    root = write_migrations({**SLOW_THEN_MORE, "appdb/2_b.up.sql": "SET search_path = public;\nCREATE TABLE b ();"})

    def on_event(event: dict[str, object]) -> None:
        if event["event"] == "file_start" and event["file"] == "appdb/1_slow.up.sql":
            terminate_lock_session(pg)

    with pytest.raises(LockLostError) as caught:
        Runner(LocalSource(root), Settings(pg.url()), on_event=on_event).migrate()

    error = caught.value
    assert "stopped before appdb/2_b.up.sql: nothing more was started" in str(error)
    assert "its connection was lost" in str(error)
    assert error.details["cleanup_errors"]  # the failed unlock is attached, not raised instead
    assert history(pg, "appdb") == [(1, "applied")]
    assert tables(pg, "appdb") == ["a"]


def test_files_already_sent_with_the_file_that_lost_the_lock_finish_and_the_loss_is_a_warning(
    pg: EmbeddedPostgres, write_migrations: Write
) -> None:
    """Sent together, file 2 runs after the lock is lost: a run that took the lock meanwhile cannot apply it
    again, as each file's history row (the primary key is the version) commits with it; the loss is named."""
    root = write_migrations(SLOW_THEN_MORE)

    def on_event(event: dict[str, object]) -> None:
        if event["event"] == "file_start" and event["file"] == "appdb/1_slow.up.sql":
            terminate_lock_session(pg)

    report = Runner(LocalSource(root), Settings(pg.url()), on_event=on_event).migrate()
    assert [d.applied for d in report.databases] == [[1], [1, 2]]
    assert "releasing the migration lock failed" in report.to_dict()["warnings"][0]
    assert history(pg, "appdb") == [(1, "applied"), (2, "applied")]


def test_a_failed_unlock_after_the_work_is_a_warning_and_the_run_succeeds(
    pg: EmbeddedPostgres, write_migrations: Write
) -> None:
    root = write_migrations(
        {"postgres/1_create_appdb.up.sql": "CREATE DATABASE appdb;", "appdb/1_a.up.sql": "CREATE TABLE a ();"}
    )

    def on_event(event: dict[str, object]) -> None:
        if event["event"] == "file_done" and event["file"] == "appdb/1_a.up.sql":
            terminate_lock_session(pg)

    report = Runner(LocalSource(root), Settings(pg.url()), on_event=on_event).migrate()

    assert [d.applied for d in report.databases] == [[1], [1]]
    data = report.to_dict()
    assert len(data["warnings"]) == 1
    assert "releasing the migration lock failed" in data["warnings"][0]
    assert history(pg, "appdb") == [(1, "applied")]


@pytest.fixture
def main_database(pg: EmbeddedPostgres) -> str:
    query(pg, "postgres", "CREATE DATABASE main")
    return "main"


def function_settings(pg: EmbeddedPostgres, root_database: str) -> Settings:
    env = FunctionEnv.from_environ({"MIGRATIONS_BUCKET": "b", "DATABASE_URL": pg.url(), "ROOT_DATABASE": root_database})
    return build_settings(env, applied_by="lambda")


@pytest.fixture
def lock_held_by_function(pg: EmbeddedPostgres, main_database: str) -> Iterator[int]:
    """The function's lock (ROOT_DATABASE=main), held by another session; yields its pid."""
    database, key = lock_target(function_settings(pg, main_database))
    conn = psycopg2.connect(pg.dsn(database), application_name="the-function")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_lock(%s), pg_backend_pid()", (key,))
        row = cur.fetchone()
    assert row
    yield row[1]
    conn.close()


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_the_cli_takes_the_functions_lock_when_given_its_root_database(  # noqa: PLR0913  pytest passes each fixture and parameter by name
    pg: EmbeddedPostgres,
    cli: Callable[..., CliResult],
    write_migrations: Write,
    lock_held_by_function: int,
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    root = write_migrations({"main/1_a.up.sql": "CREATE TABLE a ();"})
    args = ["up", "--dir", str(root), "--lock-wait", "1", "--json"]
    if how == "flag":
        args += ["--root-database", "main"]
    else:
        monkeypatch.setenv("ROOT_DATABASE", "main")

    result = cli(*args)

    error = result.error()
    assert error["error"] == "LockTimeoutError"
    assert error["holder"].startswith(f"pid {lock_held_by_function} (the-function"), error
    assert tables(pg, "main") == []


def test_cli_and_function_with_the_same_settings_compute_the_same_lock(
    pg: EmbeddedPostgres, cli: Callable[..., CliResult], main_database: str
) -> None:
    args = _parser().parse_args(["up", "--database-url", pg.url(), "--root-database", "main"])
    assert (
        lock_target(_settings(args))
        == lock_target(function_settings(pg, "main"))
        != lock_target(function_settings(pg, "postgres"))
    )
