"""Connections: one place that turns Settings into psycopg2 connections.

Every connection is in autocommit mode: the engine sends its own BEGIN/COMMIT, so a
connection never sits in a transaction it did not open (the advisory-lock connection
in particular). Connection failures become DatabaseConnectError naming host, port and
database, never the password.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg2
import psycopg2.errorcodes
import psycopg2.extensions

from .config import Settings
from .errors import DatabaseConnectError

__all__ = ["Connection", "connect", "describe_target"]

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


def connect(settings: Settings, database: str, *, application_name: str = "dbmigrate") -> Connection:
    """Open an autocommit connection to ``database`` with the settings' timeouts."""
    options: dict[str, Any] = {
        "connect_timeout": settings.connect_timeout_s,
        "application_name": application_name,
        # Dead peers are noticed within seconds rather than the kernel's two hours.
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 5,
        "keepalives_count": 3,
    }
    server_options = settings.server_options()
    if server_options:
        options["options"] = server_options
    try:
        conn: Connection = psycopg2.connect(settings.url(database), **options)
    except psycopg2.Error as exc:  # the URL is checked: libpq's own text is masked all the same
        raise _connect_error(settings, database, exc) from None
    conn.autocommit = True
    return conn


def _sqlstate(exc: psycopg2.Error, text: str) -> tuple[str | None, re.Match[str] | None]:
    """The SQLSTATE of a connection failure: psycopg2's, else read from the server's exact message."""
    for code, form in SERVER_MESSAGES.items():
        match = form.search(text)
        if match and (exc.pgcode is None or exc.pgcode == code):
            return code, match
    return exc.pgcode, None


def _connect_error(settings: Settings, database: str, exc: psycopg2.Error) -> DatabaseConnectError:
    target = describe_target(settings, database)
    server = target.rsplit("/", 1)[0]
    masked = settings.masker()(str(exc).strip())
    text = next((line for line in masked.splitlines() if "FATAL" in line), masked.splitlines()[0] if masked else "")
    text = text or type(exc).__name__
    code, match = _sqlstate(exc, masked)
    user = settings.parsed_url.user or "(the default user)"
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
        if match["problem"] == "does not exist":
            return DatabaseConnectError(
                f"role {role!r} does not exist on {server} (connecting to {database})",
                database=database,
                role=role,
                hint=f'fix the user in the URL or the secret, or create the role: CREATE ROLE "{role}" LOGIN '
                "PASSWORD '...'",
            )
        return DatabaseConnectError(
            f"role {role!r} may not log in to {server} (connecting to {database})",
            database=database,
            role=role,
            hint=f'ALTER ROLE "{role}" LOGIN, or use a role that may log in',
        )
    if code == psycopg2.errorcodes.INSUFFICIENT_PRIVILEGE:
        return DatabaseConnectError(
            f"role {user!r} has no CONNECT privilege on database {database!r} on {server}",
            database=database,
            role=user,
            hint=f'GRANT CONNECT ON DATABASE "{database}" TO "{user}"',
        )
    if "timeout" in text.lower():
        return DatabaseConnectError(
            f"connecting to {target} timed out after {settings.connect_timeout_s} s",
            database=database,
            hint="check that the function runs in the database's VPC and subnets and that the database's "
            "security group allows the function's on the database port",
        )
    if code == psycopg2.errorcodes.INVALID_PASSWORD or "authentication" in text:
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
