"""Connections: one place that turns Settings into psycopg2 connections.

Every connection is in autocommit mode: the engine sends its own BEGIN/COMMIT, so a
connection never sits in a transaction it did not open (the advisory-lock connection
in particular). Connection failures become DatabaseConnectError naming host, port and
database, never the password.
"""

from __future__ import annotations

import re
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


# The server's FATAL messages at connection start, for when psycopg2 gives no SQLSTATE
# (it never does on connect): their exact forms, keyed by the SQLSTATE they carry.
SERVER_MESSAGES = {
    psycopg2.errorcodes.INVALID_CATALOG_NAME: re.compile(r'FATAL:\s+database "(?P<name>[^"]*)" does not exist'),
    psycopg2.errorcodes.INVALID_AUTHORIZATION_SPECIFICATION: re.compile(
        r'FATAL:\s+role "(?P<name>[^"]*)" (?P<problem>does not exist|is not permitted to log in)'
    ),
    psycopg2.errorcodes.INSUFFICIENT_PRIVILEGE: re.compile(
        r'FATAL:\s+permission denied for database "(?P<name>[^"]*)"'
    ),
    psycopg2.errorcodes.INVALID_PASSWORD: re.compile(r"FATAL:\s+password authentication failed"),
}


def describe_target(settings: Settings, database: str) -> str:
    """``host:port/database`` of a URL, without user or password, for messages."""
    return settings.parsed_url.target(database)


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
    except psycopg2.Error as exc:  # the URL is checked: libpq's own text is masked all the same
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


def _sqlstate(exc: psycopg2.Error, text: str) -> tuple[str | None, re.Match[str] | None]:
    """The SQLSTATE of a connection failure: psycopg2's, else read from the server's exact message."""
    for code, form in SERVER_MESSAGES.items():
        match = form.search(text)
        if match and (exc.pgcode is None or exc.pgcode == code):
            return code, match
    return exc.pgcode, None


def _connect_error(settings: Settings, database: str, exc: psycopg2.Error) -> DatabaseConnectError:
    """Why a connection failed, named as the server said it: a missing database or role, a privilege, ..."""
    masked = settings.masker()(str(exc).strip()) or type(exc).__name__
    code, match = _sqlstate(exc, masked)
    return _refused(settings, database, code, match) or _unreachable(settings, database, code, masked)


def _refused(
    settings: Settings, database: str, code: str | None, match: re.Match[str] | None
) -> DatabaseConnectError | None:
    """The server answered and refused: no such database or role, no LOGIN, no CONNECT."""
    server = describe_target(settings, database).rsplit("/", 1)[0]
    if code == psycopg2.errorcodes.INVALID_CATALOG_NAME and (match is None or match["name"] == database):
        return DatabaseConnectError(
            f"database {database!r} does not exist on {server}",
            database=database,
            missing_database=True,
            hint=f"add a migration under {settings.root_database}/ that runs CREATE DATABASE {database}; "
            "or create it by hand; or fix the folder name",
        )
    if code == psycopg2.errorcodes.INVALID_AUTHORIZATION_SPECIFICATION and match is not None:
        role = match["name"]
        missing = match["problem"] == "does not exist"
        return DatabaseConnectError(
            f"role {role!r} {'does not exist on' if missing else 'may not log in to'} {server} "
            f"(connecting to {database})",
            database=database,
            role=role,
            hint=f'fix the user in the URL or the secret, or create the role: CREATE ROLE "{role}" LOGIN '
            "PASSWORD '...'"
            if missing
            else f'ALTER ROLE "{role}" LOGIN, or use a role that may log in',
        )
    if code == psycopg2.errorcodes.INSUFFICIENT_PRIVILEGE:
        user = settings.parsed_url.user or "(the default user)"
        return DatabaseConnectError(
            f"role {user!r} has no CONNECT privilege on database {database!r} on {server}",
            database=database,
            role=user,
            hint=f'GRANT CONNECT ON DATABASE "{database}" TO "{user}"',
        )
    return None


def _unreachable(settings: Settings, database: str, code: str | None, masked: str) -> DatabaseConnectError:
    """The server did not answer in time, refused the credentials, or could not be reached."""
    target = describe_target(settings, database)
    text = next((line for line in masked.splitlines() if "FATAL" in line), masked.splitlines()[0])
    if "timeout" in text.lower():
        message = f"connecting to {target} timed out after {settings.connect_timeout_s} s"
        hint = (
            "check that the function runs in the database's VPC and subnets and that the database's "
            "security group allows the function's on the database port"
        )
    elif code == psycopg2.errorcodes.INVALID_PASSWORD or "authentication" in text:
        message = f"the server at {target} refused the credentials: {text}"
        hint = "check the user and password (the Secrets Manager secret or DATABASE_URL)"
    else:
        message = f"cannot connect to {target}: {text}"
        hint = "check that the server runs and listens on that host and port, and that the network allows it"
    return DatabaseConnectError(message, database=database, hint=hint)
