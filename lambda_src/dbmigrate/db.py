"""Connections: one place that turns Settings into psycopg2 connections.

Every connection is in autocommit mode: the engine sends its own BEGIN/COMMIT, so a
connection never sits in a transaction it did not open (the advisory-lock connection
in particular). Connection failures become DatabaseConnectError naming host, port and
database, never the password.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import psycopg2
import psycopg2.errorcodes
import psycopg2.extensions

from .config import Settings
from .errors import DatabaseConnectError

__all__ = ["Connection", "connect", "connection_lost_cause", "describe_target", "run_session_settings", "why_lost"]

Connection = psycopg2.extensions.connection


def describe_target(settings: Settings, database: str) -> str:
    """``host:port/database`` of a URL, without user or password, for messages."""
    params = psycopg2.extensions.parse_dsn(settings.url(database))
    return f"{params.get('host', 'localhost')}:{params.get('port', 5432)}/{params.get('dbname', database)}"


def connect(
    settings: Settings,
    database: str,
    *,
    application_name: str = "dbmigrate",
    session: Mapping[str, str] | None = None,
) -> Connection:
    """Open an autocommit connection to ``database`` with the settings' timeouts.

    ``session`` holds extra server settings for the session (``-c name=value`` at
    connect time, so that DISCARD ALL or RESET keeps them).
    """
    network_s = settings.network_timeout_s
    options: dict[str, Any] = {
        "connect_timeout": settings.connect_timeout_s,
        "application_name": application_name,
        # A dead peer or a network that drops everything is noticed within the network
        # timeout, not the kernel's two hours: keepalives while waiting for a result,
        # tcp_user_timeout while sent data stays unacknowledged.
        "keepalives": 1,
        "keepalives_idle": max(1, int(network_s / 3)),
        "keepalives_interval": max(1, int(network_s / 6)),
        "keepalives_count": 4,
        "tcp_user_timeout": int(network_s * 1000),
    }
    server_options = " ".join(
        [settings.server_options(), *(f"-c {name}={value}" for name, value in (session or {}).items())]
    ).strip()
    if server_options:
        options["options"] = server_options
    try:
        conn: Connection = psycopg2.connect(settings.url(database), **options)
    except psycopg2.OperationalError as exc:
        raise _connect_error(settings, database, exc) from None
    conn.autocommit = True
    return conn


def run_session_settings(settings: Settings, server_version: int) -> dict[str, str]:
    """Server settings of a migrate run's sessions, as far as the server knows them.

    ``synchronous_commit`` on: what the run reports as done (a file, a statement of an
    autocommit file) is on disk before it says so, even on a server set to commit
    asynchronously, so a crash right after cannot make the report untrue.
    ``idle_session_timeout`` off: the lock's session sits idle while files run, and a
    role's or database's timeout would end it (and the lock with it) mid-run.
    ``client_connection_check_interval``: a statement whose client vanished (killed,
    timed out) is cancelled by the server instead of running on unseen. Both PG 14+.
    """
    values = {"synchronous_commit": "on"}
    if server_version < 140000:
        return values
    values["idle_session_timeout"] = "0"
    if settings.dead_client_check_s:
        values["client_connection_check_interval"] = str(max(1, int(settings.dead_client_check_s * 1000)))
    return values


def connection_lost_cause(exc: BaseException) -> str:
    """One line saying why a connection failed: the server's message, or what the client saw."""
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag else None
    text = primary or (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    code = getattr(exc, "pgcode", None)
    if code in ("57P01", "57P02"):
        return f"the server shut down or restarted ({text})"
    if code == "57P03":
        return f"the server is starting up or shutting down ({text})"
    if code == "57P05":
        return f"the server ended the idle session ({text})"
    return text


def why_lost(settings: Settings, database: str, *, since: datetime, application_name: str) -> str | None:
    """After a connection failed mid-run: did the server restart since ``since``, or is it unreachable?

    A lost TLS session hides the server's own message ("terminating connection due to
    administrator command"), so a new session asks the server when it started.
    """
    try:
        conn = connect(settings, database, application_name=application_name)
    except DatabaseConnectError as exc:
        return f"the server cannot be reached now ({exc.message})"
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_postmaster_start_time()")
            row = cur.fetchone()
    except psycopg2.Error:
        return None
    finally:
        conn.close()
    if row and row[0] > since:
        return f"the server restarted at {row[0]:%Y-%m-%d %H:%M:%S%z}"
    return None


def _connect_error(settings: Settings, database: str, exc: psycopg2.OperationalError) -> DatabaseConnectError:
    target = describe_target(settings, database)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = text.replace(settings.url(database), target)
    if exc.pgcode == psycopg2.errorcodes.INVALID_CATALOG_NAME or "does not exist" in text:
        return DatabaseConnectError(
            f"database {database!r} does not exist on {target.rsplit('/', 1)[0]}",
            database=database,
            missing_database=True,
            hint=f"add a migration under {settings.root_database}/ that runs CREATE DATABASE {database}; "
            "or create it by hand; or fix the folder name",
        )
    if "timeout" in text.lower():
        return DatabaseConnectError(
            f"connecting to {target} timed out after {settings.connect_timeout_s} s",
            database=database,
            hint="check that the function runs in the database's VPC and subnets and that the database's "
            "security group allows the function's on the database port",
        )
    if "password authentication failed" in text or "authentication" in text:
        return DatabaseConnectError(
            f"the server at {target} refused the credentials: {text}",
            database=database,
            hint="check the user and password (the Secrets Manager secret or DATABASE_URL)",
        )
    return DatabaseConnectError(
        f"cannot connect to {target}: {text}",
        database=database,
        hint="check that the server runs and listens on that host and port, and that the network allows it",
    )
