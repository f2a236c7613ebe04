"""Big migration files on the real server: read a chunk of statements at a time, applied whole.

A 2 MB file crosses several parse chunks; what runs, and the line a server error points
at, must be as if it were read at once. A statement over the limit is refused, naming it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from dbmigrate import sqlscript
from local.postgres import EmbeddedPostgres
from tests.helpers import history, query
from tests.integration.conftest import CliResult, Files

pytestmark = pytest.mark.every_pg_version

Cli = Callable[..., CliResult]
Write = Callable[[Files], Path]
CREATE_APPDB = {"postgres/1_create_appdb.up.sql": "CREATE DATABASE appdb;\n"}
ROWS = 26_000


def big_file(major: int, *, broken_row: int | None = None) -> tuple[str, int | None]:
    """About 2 MB: a table, a function mid-file, one INSERT per row; the broken row's line.

    The function's body is BEGIN ATOMIC (inner semicolons the scanner splits at) where the
    server has it (14+), a quoted body below.
    """
    lines = ["CREATE TABLE notes (id int PRIMARY KEY, body text NOT NULL);"]
    broken_line = None
    for i in range(ROWS):
        if i == ROWS // 2:
            lines += ["CREATE FUNCTION note_count() RETURNS bigint LANGUAGE sql"]
            if major >= 14:
                lines += ["BEGIN ATOMIC", "  SELECT 1;", "  SELECT count(*) FROM notes;", "END;"]
            else:
                lines += ["AS $$", "  SELECT 1;", "  SELECT count(*) FROM notes;", "$$;"]
        table = "no_such_table" if i == broken_row else "notes"
        if i == broken_row:
            broken_line = len(lines) + 1
        lines.append(f"INSERT INTO {table} VALUES ({i}, 'note n° {i}: ünïcødé; -- not a comment');")
    sql = "\n".join(lines) + "\n"
    assert len(sql.encode()) > 2_000_000 and len(sql) > 4 * sqlscript.CHUNK_CHARS
    return sql, broken_line


def test_a_2mb_file_applies_every_statement(pg: EmbeddedPostgres, cli: Cli, write_migrations: Write) -> None:
    sql, _ = big_file(pg.major)
    root = write_migrations({**CREATE_APPDB, "appdb/1_notes.up.sql": sql})
    up = cli("up", "--dir", str(root))
    assert up.code == 0, up.err
    assert query(pg, "appdb", "SELECT count(*), min(id), max(id) FROM notes") == [(ROWS, 0, ROWS - 1)]
    assert query(pg, "appdb", "SELECT body FROM notes WHERE id = 7") == [("note n° 7: ünïcødé; -- not a comment",)]
    assert query(pg, "appdb", "SELECT note_count()") == [(ROWS,)]
    assert history(pg, "appdb") == [(1, "applied")]


def test_an_error_deep_in_a_2mb_file_names_its_line_and_applies_nothing(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    sql, line = big_file(pg.major, broken_row=ROWS - 300)
    root = write_migrations({**CREATE_APPDB, "appdb/1_notes.up.sql": sql})
    up = cli("up", "--json", "--dir", str(root))
    assert up.code == 1
    error = up.json()
    assert (error["file"], error["line"]) == ("appdb/1_notes.up.sql", line)
    assert "no_such_table" in error["message"]
    assert query(pg, "appdb", "SELECT to_regclass('notes')") == [(None,)]


def test_a_statement_over_the_limit_is_refused_before_anything_runs(
    pg: EmbeddedPostgres, cli: Cli, write_migrations: Write
) -> None:
    rows = ",\n".join(f"({i}, 'row {i}')" for i in range(70_000))
    root = write_migrations(
        {**CREATE_APPDB, "appdb/1_load.up.sql": f"CREATE TABLE t (id int, v text);\nINSERT INTO t VALUES\n{rows};\n"}
    )
    up = cli("up", "--json", "--dir", str(root))
    assert up.code == 1
    error = up.json()
    assert (error["error"], error["file"], error["line"]) == ("SqlError", "appdb/1_load.up.sql", 2)
    assert "over the limit of 1,048,576 (1 MiB) for one statement" in error["message"]
    assert query(pg, "appdb", "SELECT to_regclass('t')") == [(None,)]
