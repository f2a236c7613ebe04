"""Connections: one place that turns Settings into psycopg2 connections.

Every connection is in autocommit mode: the engine sends its own BEGIN/COMMIT, so a
connection never sits in a transaction it did not open (the advisory-lock connection
in particular). Connection failures become DatabaseConnectError naming host, port and
database, never the password.
"""

from __future__ import annotations

from typing import Any

import psycopg2
import psycopg2.errorcodes
import psycopg2.extensions

from .config import Settings
from .errors import DatabaseConnectError

__all__ = ["Connection", "connect", "describe_target"]

Connection = psycopg2.extensions.connection


def describe_target(settings: Settings, database: str) -> str:
    """``host:port/database`` of a URL, without user or password, for messages."""
    params = psycopg2.extensions.parse_dsn(settings.url(database))
    return f"{params.get('host', 'localhost')}:{params.get('port', 5432)}/{params.get('dbname', database)}"


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
    except psycopg2.OperationalError as exc:
        raise _connect_error(settings, database, exc) from None
    conn.autocommit = True
    return conn


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
