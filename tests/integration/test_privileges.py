"""Roles that may not do what a run needs, on the real server: a clear error naming the fix, never
"every file is pending".

Each role here lacks one thing (it does not exist, no CREATE on the database, a read-only
session, no USAGE on the history schema, no write on the history table); up fails naming
the database, the role, the privilege and the GRANT, plan and status never exit 0, and the
GRANT the error names, once run, is what lets up through.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg2
import pytest

from local.postgres import SERVICE_USER, EmbeddedPostgres
from tests.integration.conftest import CliResult, Files

pytestmark = pytest.mark.every_pg_version

PASSWORD = "role-password-1"
FILES = {"projectdb/1_users.up.sql": "CREATE TABLE users (id int);\n"}
Cli = Callable[..., CliResult]


def sql(pg: EmbeddedPostgres, database: str, *statements: str) -> None:
    conn = psycopg2.connect(pg.dsn(database))
    conn.autocommit = True
    with conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)
    conn.close()


def role_url(pg: EmbeddedPostgres, role: str) -> str:
    return f"postgresql://{role}:{PASSWORD}@{pg.host}:{pg.port}/{{database}}"


@pytest.fixture
def folder(pg: EmbeddedPostgres, write_migrations: Callable[[Files], Path]) -> Path:
    """projectdb exists (created by the superuser) and has one pending file."""
    sql(pg, "postgres", "CREATE DATABASE projectdb")
    return write_migrations(FILES)


def login_role(pg: EmbeddedPostgres, name: str, *grants: str) -> str:
    sql(pg, "postgres", f"CREATE ROLE {name} LOGIN PASSWORD '{PASSWORD}'")
    sql(pg, "projectdb", f"GRANT CREATE ON SCHEMA public TO {name}", *grants)
    return name


def up_fails_with_the_grant(cli: Cli, pg: EmbeddedPostgres, folder: Path, role: str, privilege: str) -> str:
    """``up`` as ``role`` exits 1 naming it all; returns the fix (its hint)."""
    failed = cli("up", "--json", "--dir", str(folder), url=role_url(pg, role))
    assert failed.code == 1, failed.out
    error = failed.json()
    assert error["error"] == "PrivilegeError"
    assert (error["database"], error["role"], error["privilege"]) == ("projectdb", role, privilege)
    assert role in error["message"] and "projectdb" in error["message"]
    return str(error["hint"])


def inspecting_never_exits_0(cli: Cli, pg: EmbeddedPostgres, folder: Path, role: str) -> None:
    for command in ("plan", "status"):
        result = cli(command, "--dir", str(folder), url=role_url(pg, role))
        assert result.code == 1, (command, result.out, result.err)


def run_fix_and_apply(cli: Cli, pg: EmbeddedPostgres, folder: Path, role: str, hint: str) -> None:
    """Run the statement the hint starts with (as the superuser), then up succeeds as the role."""
    statement = hint.split(";", 1)[0]
    assert statement.startswith(("GRANT", "ALTER ROLE")), hint
    sql(pg, "projectdb", statement)
    done = cli("up", "--dir", str(folder), url=role_url(pg, role))
    assert done.code == 0, done.err


def test_no_create_on_the_database_names_the_grant(cli: Cli, pg: EmbeddedPostgres, folder: Path) -> None:
    role = login_role(pg, "app_nocreate")
    hint = up_fails_with_the_grant(cli, pg, folder, role, "CREATE")
    assert hint.startswith("GRANT CREATE ON DATABASE projectdb TO app_nocreate;")
    plan = cli("plan", "--json", "--dir", str(folder), url=role_url(pg, role))
    assert plan.code == 1
    assert [p["error"] for p in plan.json()["problems"]] == ["PrivilegeError"]
    inspecting_never_exits_0(cli, pg, folder, role)
    run_fix_and_apply(cli, pg, folder, role, hint)


def test_a_read_only_session_is_named_with_the_setting_that_makes_it(
    cli: Cli, pg: EmbeddedPostgres, folder: Path
) -> None:
    role = login_role(pg, "app_readonly", "GRANT CREATE ON DATABASE projectdb TO app_readonly")
    sql(pg, "postgres", "ALTER ROLE app_readonly SET default_transaction_read_only = on")
    hint = up_fails_with_the_grant(cli, pg, folder, role, "a writable session")
    assert "default_transaction_read_only = off" in hint
    inspecting_never_exits_0(cli, pg, folder, role)
    run_fix_and_apply(cli, pg, folder, role, hint)


def test_a_database_set_read_only_is_refused_too(cli: Cli, pg: EmbeddedPostgres, folder: Path) -> None:
    role = login_role(pg, "app_dbreadonly", "GRANT CREATE ON DATABASE projectdb TO app_dbreadonly")
    sql(pg, "postgres", "ALTER DATABASE projectdb SET default_transaction_read_only = on")
    up_fails_with_the_grant(cli, pg, folder, role, "a writable session")
    inspecting_never_exits_0(cli, pg, folder, role)


@pytest.fixture
def history_of_the_owner(cli: Cli, pg: EmbeddedPostgres, folder: Path) -> Path:
    """The superuser ran up once: the history schema and table exist, owned by it."""
    assert cli("up", "--dir", str(folder)).code == 0
    (folder / "projectdb" / "2_more.up.sql").write_text("CREATE TABLE more (id int);\n")
    return folder


def test_no_usage_on_the_history_schema_is_an_error_for_every_command(
    cli: Cli, pg: EmbeddedPostgres, history_of_the_owner: Path
) -> None:
    folder = history_of_the_owner
    role = login_role(pg, "app_nousage", "GRANT CREATE ON DATABASE projectdb TO app_nousage")
    hint = up_fails_with_the_grant(cli, pg, folder, role, "USAGE")
    assert hint.startswith("GRANT USAGE, CREATE ON SCHEMA dbmigrate TO app_nousage;")
    for command in ("plan", "status"):
        result = cli(command, "--json", "--dir", str(folder), url=role_url(pg, role))
        assert result.code == 1
        assert result.json()["error"] == "PrivilegeError"  # raised: no plan claims everything is pending
    sql(pg, "projectdb", hint.split(";", 1)[0])
    up_fails_with_the_grant(cli, pg, folder, role, "SELECT")  # the next missing privilege, named in turn


def test_a_history_table_the_role_may_only_read_is_named(
    cli: Cli, pg: EmbeddedPostgres, history_of_the_owner: Path
) -> None:
    folder = history_of_the_owner
    role = login_role(
        pg,
        "app_readhistory",
        "GRANT USAGE ON SCHEMA dbmigrate TO app_readhistory",
        "GRANT SELECT ON dbmigrate.history TO app_readhistory",
    )
    hint = up_fails_with_the_grant(cli, pg, folder, role, "INSERT, UPDATE, DELETE")
    status = cli("status", "--json", "--dir", str(folder), url=role_url(pg, role))
    assert status.code == 1
    assert status.json()["databases"][0]["pending"] == [2]  # it can read the history: the plan is true
    assert [p["error"] for p in status.json()["problems"]] == ["PrivilegeError"]
    run_fix_and_apply(cli, pg, folder, role, hint)


@pytest.fixture
def trusted_role(pg: EmbeddedPostgres) -> Iterator[str]:
    """A role name the server lets in without a password, as a trust or peer setup does; it does not exist.

    With password authentication the server hides whether a role exists; with trust it says so.
    """
    name = "app_ghost"
    hba = pg.data_dir / "pg_hba.conf"
    original = hba.read_text()
    hba.write_text(f"host all {name} 127.0.0.1/32 trust\n{original}")
    sql(pg, "postgres", "SELECT pg_reload_conf()")
    time.sleep(0.2)
    try:
        yield name
    finally:
        hba.write_text(original)
        sql(pg, "postgres", "SELECT pg_reload_conf()")


@pytest.mark.parametrize("command", ["status", "plan", "up"])
def test_a_role_that_does_not_exist_is_not_a_missing_database(
    cli: Cli, pg: EmbeddedPostgres, folder: Path, trusted_role: str, command: str
) -> None:
    (folder / "newdb").mkdir()
    (folder / "newdb" / "1_a.up.sql").write_text("SELECT 1;\n")  # a database that does not exist either
    result = cli(command, "--json", "--dir", str(folder), url=role_url(pg, trusted_role))
    assert result.code == 1, result.out
    error = result.json()
    assert error["error"] == "DatabaseConnectError"
    assert error["role"] == trusted_role
    assert "missing_database" not in error
    assert f"role '{trusted_role}' does not exist" in error["message"]
    assert f'CREATE ROLE "{trusted_role}" LOGIN' in error["hint"]


def test_a_missing_database_is_still_planned_as_created_by_the_root_folder(
    cli: Cli, pg: EmbeddedPostgres, folder: Path
) -> None:
    (folder / "newdb").mkdir()
    (folder / "newdb" / "1_a.up.sql").write_text("SELECT 1;\n")
    plan = cli("plan", "--json", "--dir", str(folder))
    assert plan.code == 0, plan.out
    newdb = next(d for d in plan.json()["databases"] if d["name"] == "newdb")
    assert newdb["exists"] is False


def test_a_role_that_may_not_log_in_is_named_with_the_fix(cli: Cli, pg: EmbeddedPostgres, folder: Path) -> None:
    sql(pg, "postgres", f"CREATE ROLE app_nologin NOLOGIN PASSWORD '{PASSWORD}'")
    result = cli("status", "--json", "--dir", str(folder), url=role_url(pg, "app_nologin"))
    assert result.code == 1
    error = result.json()
    assert (error["error"], error["role"]) == ("DatabaseConnectError", "app_nologin")
    assert "may not log in" in error["message"]
    assert error["hint"].startswith('ALTER ROLE "app_nologin" LOGIN')


def test_no_connect_privilege_names_the_grant(cli: Cli, pg: EmbeddedPostgres, folder: Path) -> None:
    role = login_role(pg, "app_noconnect")
    sql(pg, "postgres", "REVOKE CONNECT ON DATABASE projectdb FROM PUBLIC")
    for command in ("status", "up"):
        result = cli(command, "--json", "--dir", str(folder), url=role_url(pg, role))
        assert result.code == 1
        error = result.json()
        assert (error["database"], error["role"]) == ("projectdb", role)
        assert "no CONNECT privilege on database 'projectdb'" in error["message"]
        assert "missing_database" not in error
    assert result.json()["hint"] == 'GRANT CONNECT ON DATABASE "projectdb" TO "app_noconnect"'


@pytest.fixture
def standby(pg: EmbeddedPostgres, folder: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EmbeddedPostgres]:
    """A hot standby of the test server (pg_basebackup -R), with projectdb replicated."""
    replica = EmbeddedPostgres(tls=False, settings={"hot_standby": "on"})
    replica.user, replica.password = pg.user, pg.password
    root = replica.data_dir.parent
    root.chmod(0o755)
    if os.geteuid() == 0:
        entry = pwd.getpwnam(SERVICE_USER)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    monkeypatch.setenv("PGPASSWORD", pg.password)
    # pg_basebackup is a client tool (the packaged servers ship none): it runs as this user
    # and the copy is handed to the service user, who runs the standby.
    subprocess.run(
        [
            str(replica.client_bindir / "pg_basebackup"),
            *("-D", str(replica.data_dir), "-h", pg.host, "-p", str(pg.port), "-U", pg.user),
            *("-R", "-X", "stream", "--no-sync", "--checkpoint=fast"),
        ],
        check=True,
        capture_output=True,
    )
    if os.geteuid() == 0:
        for path in [replica.data_dir, *replica.data_dir.rglob("*")]:
            os.lchown(path, entry.pw_uid, entry.pw_gid)
    replica._initialized = True  # its cluster is the copy, not a new initdb
    replica.start()
    try:
        yield replica
    finally:
        replica.destroy()


def test_a_hot_standby_is_named_and_up_is_refused(cli: Cli, standby: EmbeddedPostgres, folder: Path) -> None:
    url = f"postgresql://{standby.user}:{standby.password}@{standby.host}:{standby.port}/{{database}}"
    deadline = time.monotonic() + 20
    while not sql_rows(standby, "SELECT datname FROM pg_database WHERE datname = 'projectdb'"):
        assert time.monotonic() < deadline, "projectdb never reached the standby"
        time.sleep(0.2)
    up = cli("up", "--json", "--dir", str(folder), url=url)
    assert up.code == 1, up.out
    error = up.json()
    assert (error["error"], error["database"]) == ("PrivilegeError", "projectdb")
    assert error["privilege"] == "a writable session"
    assert "hot standby" in error["message"]
    assert "primary" in error["hint"]
    plan = cli("plan", "--json", "--dir", str(folder), url=url)
    assert plan.code == 1
    assert plan.json()["databases"][0]["pending"] == [1]
    assert [p["privilege"] for p in plan.json()["problems"]] == ["a writable session"]


def sql_rows(server: EmbeddedPostgres, query: str) -> list[tuple[object, ...]]:
    conn = psycopg2.connect(server.dsn("postgres"))
    try:
        with conn.cursor() as cur:
            cur.execute(query)
            return list(cur.fetchall())
    finally:
        conn.close()
