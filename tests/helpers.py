"""Small helpers shared by tests that use the real PostgreSQL server."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from local.postgres import EmbeddedPostgres


class LambdaLoggerHandler(logging.Handler):
    """Stands for the handler the Lambda runtime puts on the root logger (matched by class name)."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def write_files(root: Path, files: Mapping[str, str | bytes]) -> Path:
    """Write each ``{"db/1_x.up.sql": text or bytes}`` under ``root`` (made if missing); ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    for key, body in files.items():
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(body, bytes):
            path.write_bytes(body)
        else:
            path.write_text(body, encoding="utf-8")
    return root


def require_major(pg: EmbeddedPostgres, major: int, needs: str) -> None:
    """Skip the test on a server older than ``major``, naming what it needs."""
    if pg.major < major:
        pytest.skip(f"needs {needs} (PostgreSQL {major}+; the server is {pg.major})")


def query(pg: EmbeddedPostgres, database: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows of one query on one database of the test server."""
    conn = psycopg2.connect(pg.dsn(database))
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params or None)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def history(pg: EmbeddedPostgres, database: str) -> list[tuple[int, str]]:
    """(version, status) of every history row of a database."""
    return [(int(v), s) for v, s in query(pg, database, "SELECT version, status FROM dbmigrate.history ORDER BY 1")]


def tables(pg: EmbeddedPostgres, database: str) -> list[str]:
    """Names of the tables in the public schema."""
    rows = query(pg, database, "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
    return [name for (name,) in rows]
