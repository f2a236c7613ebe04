"""Faults with real processes: a run killed mid-file, SIGTERM, a server restarted mid-file.

Each test checks what the database holds and what the history says afterwards, and
that the next run continues from there.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from local.postgres import EmbeddedPostgres
from tests.helpers import history, query, require_major, tables
from tests.integration.conftest import Files
from tests.integration.processes import backend_alive, finish, run_cli, start_cli, wait_until_running
from tests.integration.proxy import BlackHoleProxy

pytestmark = pytest.mark.every_pg_version

Write = Callable[[Files], Path]

ROOT = {"postgres/1_create_appdb.up.sql": "CREATE DATABASE appdb;"}
NEXT = {"appdb/2_b.up.sql": "CREATE TABLE b ();"}


def transactional(sleep: float) -> Files:
    return {**ROOT, "appdb/1_slow.up.sql": f"CREATE TABLE a ();\nSELECT pg_sleep({sleep});\n", **NEXT}


def autocommit(sleep: float) -> Files:
    return {
        **ROOT,
        "appdb/1_slow.up.sql": "CREATE TABLE a (x int);\nCREATE INDEX CONCURRENTLY a_x ON a (x);\n"
        f"CREATE TABLE slow AS SELECT 1 AS x FROM pg_sleep({sleep});\nCREATE TABLE c ();\n",
        **NEXT,
    }


def without_the_sleep(root: Path) -> Path:
    """The slow file, still pending, made quick so the next run does not sleep again."""
    slow = root / "appdb/1_slow.up.sql"
    slow.write_text(transactional(0)["appdb/1_slow.up.sql"])
    return root


def unfinished(pg: EmbeddedPostgres) -> list[tuple[object, ...]]:
    return query(pg, "appdb", "SELECT version, status, statements_done, statements_total FROM dbmigrate.history")


# -- a run killed mid-file --------------------------------------------------------------
# File 2 after the slow file 1: sent in the same round trip (the server runs the text it
# was sent to its end, the dead client notwithstanding), or in its own (it sets a session
# setting, so it travels alone): the dead run then committed file 1 only.
AFTER_THE_KILL = {
    "sent-together": (NEXT, []),
    "sent-alone": ({"appdb/2_b.up.sql": "SET search_path = public;\nCREATE TABLE b ();"}, [2]),
}


@pytest.mark.parametrize(("after", "rerun_applies"), list(AFTER_THE_KILL.values()), ids=list(AFTER_THE_KILL))
def test_rerun_after_a_kill_waits_for_the_dead_runs_transaction_and_continues_after_it(
    pg: EmbeddedPostgres, write_migrations: Write, after: Files, rerun_applies: list[int]
) -> None:
    root = write_migrations({**transactional(4), **after})
    first = start_cli(pg, root, "--dead-client-check", "0")  # the server does not notice the dead client
    pid = wait_until_running(pg, "pg_sleep(4)")
    first.send_signal(signal.SIGKILL)
    first.wait(10)

    rerun = run_cli(pg, root)

    assert rerun.code == 0, rerun.out + rerun.err
    report = rerun.json()
    # The dead run's transactions committed what it had sent, with their records: the rerun did the rest.
    assert [d["applied"] for d in report["databases"]] == [[], rerun_applies]
    assert report["lock_waited_s"] > 1
    assert not backend_alive(pg, pid)
    assert history(pg, "appdb") == [(1, "applied"), (2, "applied")]
    assert tables(pg, "appdb") == ["a", "b"]


def test_the_waiting_rerun_says_for_whom_it_waits(pg: EmbeddedPostgres, write_migrations: Write) -> None:
    root = write_migrations(transactional(3))
    first = start_cli(pg, root, "--dead-client-check", "0")
    pid = wait_until_running(pg, "pg_sleep(3)")
    first.send_signal(signal.SIGKILL)
    first.wait(10)

    rerun = finish(start_cli(pg, root, as_json=False))

    assert rerun.code == 0, rerun.err
    assert f"waiting for the work of an earlier run that ended mid-file: pid {pid} on appdb (active" in rerun.err
    assert history(pg, "appdb") == [(1, "applied"), (2, "applied")]


def test_the_server_cancels_a_killed_runs_statement_and_the_rerun_applies_the_file_again(
    pg: EmbeddedPostgres, write_migrations: Write
) -> None:
    require_major(pg, 14, "the server's check for a vanished client (client_connection_check_interval)")
    root = write_migrations(transactional(30))
    first = start_cli(pg, root, "--dead-client-check", "0.5")
    pid = wait_until_running(pg, "pg_sleep(30)")
    first.send_signal(signal.SIGKILL)
    first.wait(10)

    rerun = run_cli(pg, without_the_sleep(root))

    assert rerun.code == 0, rerun.out + rerun.err
    # Cancelled, not committed: file 1 was pending again (a 30 s sleep that ran on would have committed it).
    assert [d["applied"] for d in rerun.json()["databases"]] == [[], [1, 2]]
    assert not backend_alive(pg, pid)
    assert history(pg, "appdb") == [(1, "applied"), (2, "applied")]


def test_rerun_after_a_kill_mid_autocommit_file_waits_then_refuses_with_what_ran(
    pg: EmbeddedPostgres, write_migrations: Write
) -> None:
    root = write_migrations(autocommit(3))
    first = start_cli(pg, root, "--dead-client-check", "0")
    wait_until_running(pg, "pg_sleep(3)")
    first.send_signal(signal.SIGKILL)
    first.wait(10)

    rerun = run_cli(pg, root)

    assert rerun.code == 1
    error = rerun.json()
    assert error["error"] == "PartialMigrationError"
    assert (error["file"], error["statements_done"], error["statements_total"], error["outcome_unknown"]) == (
        "appdb/1_slow.up.sql",
        2,
        4,
        3,
    )
    # It waited for the statement in flight to end before reading the history: its table is there.
    assert tables(pg, "appdb") == ["a", "slow"]
    assert unfinished(pg) == [(1, "running", 2, 4)]


# -- SIGTERM ----------------------------------------------------------------------------
def test_sigterm_cancels_the_transactional_file_in_flight_and_records_nothing_of_it(
    pg: EmbeddedPostgres, write_migrations: Write
) -> None:
    root = write_migrations(transactional(60))
    run = start_cli(pg, root)
    wait_until_running(pg, "pg_sleep(60)")
    run.send_signal(signal.SIGTERM)

    result = finish(run, timeout=20)

    assert result.code == 143, result.out + result.err
    error = result.json()
    assert error["error"] == "StoppedError"
    assert "stopped by SIGTERM at the statement in flight of appdb/1_slow.up.sql" in error["message"]
    assert query(pg, "appdb", "SELECT count(*) FROM dbmigrate.history") == [(0,)]
    assert tables(pg, "appdb") == []


def test_sigterm_in_an_autocommit_file_records_the_statements_done_and_starts_nothing_more(
    pg: EmbeddedPostgres, write_migrations: Write
) -> None:
    root = write_migrations(autocommit(60))
    run = start_cli(pg, root)
    wait_until_running(pg, "pg_sleep(60)")
    run.send_signal(signal.SIGTERM)

    result = finish(run, timeout=20)

    assert result.code == 143, result.out + result.err
    assert result.json()["statements_done"] == 2
    assert unfinished(pg) == [(1, "partial", 2, 4)]
    assert tables(pg, "appdb") == ["a"]


# -- the server restarted mid-file ------------------------------------------------------
@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_a_restart_during_a_transactional_file_is_named_and_the_next_run_applies_it(
    pg: EmbeddedPostgres, write_migrations: Write, mode: str
) -> None:
    root = write_migrations(transactional(30))
    run = start_cli(pg, root)
    wait_until_running(pg, "pg_sleep(30)")
    pg.restart(mode)

    result = finish(run, timeout=30)

    assert result.code == 1, result.out + result.err
    error = result.json()
    assert error["error"] == "ConnectionLostError"
    assert "the connection to appdb was lost while appdb/1_slow.up.sql ran" in error["message"]
    assert "the server restarted at" in error["message"] or "the server cannot be reached now" in error["message"]
    assert "Traceback" not in result.err
    again = run_cli(pg, without_the_sleep(root))
    assert again.code == 0, again.out + again.err
    assert [d["applied"] for d in again.json()["databases"]] == [[], [1, 2]]
    assert history(pg, "appdb") == [(1, "applied"), (2, "applied")]


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_a_restart_during_an_autocommit_file_leaves_an_honest_record(
    pg: EmbeddedPostgres, write_migrations: Write, mode: str
) -> None:
    root = write_migrations(autocommit(30))
    run = start_cli(pg, root)
    wait_until_running(pg, "pg_sleep(30)")
    pg.restart(mode)

    result = finish(run, timeout=30)

    assert result.code == 1, result.out + result.err
    assert "Traceback" not in result.err
    error = result.json()
    assert error["statements_done"] == 2
    assert "the connection was lost: the server" in error["message"]
    assert unfinished(pg) == [(1, "running", 2, 4)]
    again = run_cli(pg, root)
    assert again.code == 1
    assert again.json()["error"] == "PartialMigrationError"
    assert tables(pg, "appdb") == ["a"]


# -- a connection that stops answering --------------------------------------------------
def test_a_connection_that_stops_answering_mid_file_ends_the_run_within_its_timeout(
    pg: EmbeddedPostgres, write_migrations: Write
) -> None:
    # Behind the proxy the server still sees its client; only its own check cancels the statement.
    require_major(pg, 14, "the server's check for a vanished client (client_connection_check_interval)")
    root = write_migrations(transactional(30))
    with BlackHoleProxy(pg.port) as proxy:
        run = start_cli(pg, root, "--network-timeout", "1", url=pg.url().replace(f":{pg.port}/", f":{proxy.port}/"))
        wait_until_running(pg, "pg_sleep(30)")
        proxy.black_hole()

        result = finish(run, timeout=20)  # the statement alone would take 30 s

    assert result.code == 1, result.out + result.err
    error = result.json()
    assert error["error"] == "ConnectionLostError"
    assert "the server did not answer for 1 s" in error["message"]
    again = run_cli(pg, without_the_sleep(root))  # the proxy is gone: the server cancels the dead statement
    assert again.code == 0, again.out + again.err
    assert [d["applied"] for d in again.json()["databases"]] == [[], [1, 2]]
    assert history(pg, "appdb") == [(1, "applied"), (2, "applied")]
