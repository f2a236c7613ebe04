"""The server settings of a run's sessions, and how a lost connection is named."""

from __future__ import annotations

from dbmigrate.config import Settings
from dbmigrate.db import run_session_settings
from dbmigrate.lock import lock_target

URL = "postgresql://u:p@127.0.0.1:5432/{database}"


def test_every_server_commits_the_runs_work_synchronously() -> None:
    assert run_session_settings(Settings(URL), 130000) == {"synchronous_commit": "on"}


def test_postgresql_14_and_later_also_turn_idle_timeout_off_and_check_for_a_vanished_client() -> None:
    assert run_session_settings(Settings(URL, dead_client_check_s=0.5), 150004) == {
        "synchronous_commit": "on",
        "idle_session_timeout": "0",
        "client_connection_check_interval": "500",
    }


def test_a_dead_client_check_of_zero_leaves_the_servers_setting() -> None:
    assert "client_connection_check_interval" not in run_session_settings(Settings(URL, dead_client_check_s=0), 160000)


def test_the_lock_is_taken_on_the_root_database_with_a_key_of_the_history_schema() -> None:
    assert lock_target(Settings(URL, root_database="main"))[0] == "main"
    assert lock_target(Settings(URL)) != lock_target(Settings(URL, history_schema="other"))
    assert lock_target(Settings(URL, root_database="main")) == lock_target(Settings(URL, root_database="main"))
