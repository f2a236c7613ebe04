"""A fingerprint of what a server holds, for "ends in exactly the same state" checks.

Per database: the server's own ``pg_dump --schema-only --create`` (owners, privileges,
comments, database settings included), normalised (header SETs, version lines and
the random ``\\restrict`` keys removed); row counts and a checksum of every table and
populated materialized view; the state of every sequence. Cluster-wide: the list of
databases and ``pg_dumpall --roles-only --no-role-passwords``. The engine's own
history (schema ``dbmigrate``, and a golang-migrate ``public.schema_migrations``) is
left out. Checksums skip time, uuid and oid/xid/lsn columns: ``now()``,
``gen_random_uuid()`` and server counters differ between any two runs, whoever
applies the files. Tables of up to SHOWN_ROWS rows are listed verbatim.
"""

from __future__ import annotations

import difflib
import os
import re
import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import psycopg2
from psycopg2 import sql

from local.postgres import EmbeddedPostgres

__all__ = ["Fingerprint", "assert_same_fingerprint", "fingerprint"]

HISTORY_SCHEMAS = ("dbmigrate",)
HISTORY_TABLES = ("public.schema_migrations",)
SHOWN_ROWS = 10
VOLATILE_TYPES = (
    "timestamp with time zone",
    "timestamp without time zone",
    "time with time zone",
    "time without time zone",
    "uuid",
    "oid",
    "xid",
    "xid8",
    "pg_lsn",
)
NOISE = re.compile(
    r"^(\\(un)?restrict .*"
    r"|-- Dumped (from|by) .*"
    r"|-- PostgreSQL database (cluster )?dump( complete)?"
    r"|--"
    r"|SET (statement_timeout|lock_timeout|idle_in_transaction_session_timeout|client_encoding"
    r"|standard_conforming_strings|check_function_bodies|xmloption|client_min_messages|row_security"
    r"|default_tablespace|default_table_access_method|default_transaction_read_only) = .*;"
    r"|SELECT pg_catalog\.set_config\('search_path', '', false\);)$"
)


@dataclass(frozen=True)
class Fingerprint:
    """Named sections of normalised text; equal fingerprints mean the same server state."""

    sections: tuple[tuple[str, str], ...]

    def text(self) -> str:
        return "".join(f"==== {title} ====\n{body}\n" for title, body in self.sections)

    def section(self, title: str) -> str:
        return dict(self.sections)[title]


def fingerprint(
    server: EmbeddedPostgres,
    *,
    history_schemas: Sequence[str] = HISTORY_SCHEMAS,
    history_tables: Sequence[str] = HISTORY_TABLES,
) -> Fingerprint:
    """Capture the databases, roles, schemas and data of ``server`` (template databases aside)."""
    databases = _query(server, "postgres", "SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY 1")
    names = [str(row[0]) for row in databases]
    excludes = [f"--exclude-schema={schema}" for schema in history_schemas]
    excludes += [f"--exclude-table={table}" for table in history_tables]
    # The dumps are separate processes: run them side by side.
    with ThreadPoolExecutor(max_workers=4) as pool:
        roles = pool.submit(_dump, server, "pg_dumpall", "--roles-only", "--no-role-passwords", "-d", server.dsn())
        schemas = [
            pool.submit(_dump, server, "pg_dump", "--schema-only", "--create", *excludes, "-d", server.dsn(name))
            for name in names
        ]
        data = [pool.submit(_data, server, name, history_schemas, history_tables) for name in names]
        sections: list[tuple[str, str]] = [("databases", "\n".join(names)), ("roles", roles.result())]
        for name, schema, rows in zip(names, schemas, data, strict=True):
            sections += [(f"schema {name}", schema.result()), (f"data {name}", rows.result())]
    return Fingerprint(tuple(sections))


DIFF_CONTEXT = 3
DIFF_LINES = 400
"""A differing fingerprint is shown as a unified diff of this much context, cut at this many lines."""


def assert_same_fingerprint(
    expected: Fingerprint,
    actual: Fingerprint,
    *,
    expected_label: str = "psql",
    actual_label: str = "engine",
) -> None:
    """Raise AssertionError with a unified diff when the two fingerprints differ."""
    if expected == actual:
        return
    diff = list(
        difflib.unified_diff(
            expected.text().splitlines(),
            actual.text().splitlines(),
            fromfile=expected_label,
            tofile=actual_label,
            lineterm="",
            n=DIFF_CONTEXT,
        )
    )
    shown = diff[:DIFF_LINES]
    if len(diff) > DIFF_LINES:
        shown.append(f"... {len(diff) - DIFF_LINES} more diff lines")
    raise AssertionError(f"server state after {actual_label} differs from {expected_label}:\n" + "\n".join(shown))


def _dump(server: EmbeddedPostgres, program: str, *args: str) -> str:
    env = {**os.environ, "PGPASSWORD": server.password}
    result = subprocess.run(
        [str(server.client_bindir / program), *args], env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"{program} failed ({result.returncode}): {result.stderr.strip()}")
    lines = [line for line in result.stdout.splitlines() if not NOISE.match(line)]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _query(
    server: EmbeddedPostgres, database: str, query: str | sql.Composable, params: Sequence[object] = ()
) -> list[tuple[object, ...]]:
    conn = psycopg2.connect(server.dsn(database))
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(query, params)
            return list(cur.fetchall())
    finally:
        conn.close()


def _data(
    server: EmbeddedPostgres, database: str, history_schemas: Sequence[str], history_tables: Sequence[str]
) -> str:
    """One line per table, materialized view and sequence: what a backfill left behind."""
    skip_schemas = ["pg_catalog", "information_schema", "pg_toast", *history_schemas]
    conn = psycopg2.connect(server.dsn(database))
    lines: list[str] = []
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(
                "SELECT c.oid, n.nspname, c.relname, c.relkind, c.relispopulated FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind IN ('r', 'm') AND NOT n.nspname = ANY(%s) AND n.nspname NOT LIKE 'pg\\_temp%%' "
                "ORDER BY n.nspname, c.relname",
                (skip_schemas,),
            )
            relations = cur.fetchall()
            for oid, schema, name, kind, populated in relations:
                if f"{schema}.{name}" in history_tables:
                    continue
                label = f"{schema}.{name}"
                if not populated:
                    lines.append(f"{label}: not populated")
                    continue
                cur.execute(
                    "SELECT attname FROM pg_attribute WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped "
                    "AND format_type(atttypid, NULL) <> ALL(%s) ORDER BY attnum",
                    (oid, list(VOLATILE_TYPES)),
                )
                columns = [sql.Identifier(row[0]) for row in cur.fetchall()]
                row = sql.SQL("ROW({})::text").format(sql.SQL(", ").join(columns)) if columns else sql.SQL("''")
                only = sql.SQL("ONLY ") if kind == "r" else sql.SQL("")
                cur.execute(
                    sql.SQL(
                        "SELECT count(*), md5(coalesce(string_agg(h, '' ORDER BY h), '')) "
                        "FROM (SELECT md5({row}) AS h FROM {only}{table}) AS s"
                    ).format(row=row, only=only, table=sql.Identifier(schema, name))
                )
                count, digest = cur.fetchone() or (0, "")
                lines.append(f"{label}: rows={count} md5={digest}")
                if 0 < count <= SHOWN_ROWS:
                    # Small tables verbatim, so that a diff says what differs, not only that.
                    cur.execute(
                        sql.SQL("SELECT {row} AS x FROM {only}{table} ORDER BY 1").format(
                            row=row, only=only, table=sql.Identifier(schema, name)
                        )
                    )
                    lines += [f"    {value}" for (value,) in cur.fetchall()]
            cur.execute(
                "SELECT schemaname, sequencename, last_value FROM pg_sequences "
                "WHERE NOT schemaname = ANY(%s) ORDER BY 1, 2",
                (skip_schemas,),
            )
            lines += [f"sequence {schema}.{name}: last_value={value}" for schema, name, value in cur.fetchall()]
    finally:
        conn.close()
    return "\n".join(lines)
