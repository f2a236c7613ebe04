"""Real-world-shaped migration sets end in exactly the state psql leaves, file by file.

The oracle is psql: one ``psql -X -v ON_ERROR_STOP=1 -f FILE`` per file, postgres/
first. Each case applies a set with psql, takes the server's fingerprint (pg_dump of
every database, roles, row checksums, sequences), resets the server, applies the same
set with the engine, and compares; a difference fails with a unified diff.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import psycopg2
import pytest

from dbmigrate.config import Settings
from dbmigrate.runner import Runner
from dbmigrate.sources import LocalSource
from local.postgres import EmbeddedPostgres
from tests.conftest import reset_cluster
from tests.corpus.generator import generate
from tests.corpus.oracle import apply_with_psql, ordered_files
from tests.corpus.schema import Fingerprint, assert_same_fingerprint, fingerprint
from tests.helpers import write_files

pytestmark = pytest.mark.every_pg_version

TRICKY = Path(__file__).resolve().parents[1] / "corpus" / "tricky"
TRICKY_CASES = sorted(TRICKY.glob("*.sql"))
# A tricky case that needs a newer server says so on its first line: "... (PostgreSQL 14+)".
NEEDS_MAJOR = re.compile(r"\(PostgreSQL (?P<major>\d+)\+\)")
LAYOUT_NAME = re.compile(r"^(?P<version>[0-9]+)_[\w.-]+\.(up|down)\.sql$")

TRICKY_SETUP = """\
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'app_owner') THEN
        CREATE ROLE app_owner NOLOGIN;
    END IF;
END
$$;
CREATE DATABASE trickydb;
"""
# The file after each tricky case: it must see what a fresh psql session sees, so any
# session state the case leaves behind (search_path, role, time zone, temp tables,
# prepared statements, cached sequence values) shows up in where these objects land
# and what they record.
NEXT_FILE = """\
CREATE TABLE probe_next_file (id integer PRIMARY KEY, at timestamptz DEFAULT '2024-01-01 12:00:00');
CREATE TEMP TABLE probe_scratch (x integer);
PREPARE probe_plan AS SELECT 2;
CREATE TABLE probe_session AS
SELECT current_setting('search_path') AS search_path,
       current_user::text AS current_user_name,
       current_setting('TimeZone') AS timezone,
       current_setting('DateStyle') AS datestyle,
       current_setting('standard_conforming_strings') AS standard_conforming_strings,
       current_setting('check_function_bodies') AS check_function_bodies,
       current_setting('default_transaction_isolation') AS default_isolation,
       current_setting('row_security') AS row_security,
       current_setting('session_replication_role') AS replication_role,
       current_setting('app.tenant', true) AS custom_setting;
CREATE TABLE probe_next_values AS
SELECT c.relname::text AS sequence_name, nextval(c.oid::regclass) AS next_value
  FROM pg_class c
 WHERE c.relkind = 'S' AND c.relnamespace = 'public'::regnamespace;
"""


def engine_migrate(server: EmbeddedPostgres, root: Path) -> None:
    Runner(LocalSource(root), Settings(url_template=server.url())).migrate()


def psql_then_engine(server: EmbeddedPostgres, root: Path) -> tuple[Fingerprint, Fingerprint]:
    """Apply ``root`` with psql, fingerprint, reset the server, apply with the engine, fingerprint."""
    apply_with_psql(server, root)
    expected = fingerprint(server)
    reset_cluster(server)
    engine_migrate(server, root)
    return expected, fingerprint(server)


def tables_of(server: EmbeddedPostgres, database: str) -> int:
    conn = psycopg2.connect(server.dsn(database))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')")
            row = cur.fetchone()
            return int(row[0]) if row else 0
    finally:
        conn.close()


def snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_generator_is_deterministic_and_follows_the_layout(tmp_path: Path) -> None:
    first = generate(tmp_path / "a", files=300, seed=7, databases=("appdb", "reporting"))
    generate(tmp_path / "b", files=300, seed=7, databases=("appdb", "reporting"))
    other = generate(tmp_path / "c", files=300, seed=8, databases=("appdb", "reporting"))
    files = snapshot(tmp_path / "a")
    assert files == snapshot(tmp_path / "b")
    assert files != snapshot(tmp_path / "c")
    assert len(first) == len(other) == 300 + len(list((tmp_path / "a" / "postgres").glob("*.up.sql")))

    assert sorted({key.split("/")[0] for key in files}) == ["appdb", "postgres", "reporting"]
    for database in ("postgres", "appdb", "reporting"):
        names = [key.split("/")[1] for key in files if key.startswith(database + "/") and key.endswith(".up.sql")]
        assert all(LAYOUT_NAME.match(name) for name in names), names
        versions = [int(name.split("_", 1)[0]) for name in names]
        assert len(set(versions)) == len(versions)
    assert [database for database, _ in ordered_files(tmp_path / "a")][:4] == ["postgres"] * 4
    spelled = [p.name.split("_", 1)[0] for database, p in ordered_files(tmp_path / "a") if database == "appdb"]
    appdb = [int(v) for v in spelled]
    assert appdb == sorted(appdb) and appdb[-1] >= 2**64 and appdb[0] <= 1
    assert sorted(spelled) != spelled, "lexical order must differ from integer order"
    assert {len(v) for v in spelled} >= {1, 6, 10, 12, 14, 20}

    texts = [data.decode("utf-8") for key, data in files.items() if key.endswith(".up.sql")]
    assert "CREATE DATABASE appdb" in files["postgres/1_create_databases.up.sql"].decode()
    for shape in (
        "CREATE INDEX CONCURRENTLY",
        "$fn$",
        "DO $",
        "BEGIN ATOMIC",
        "E'",
        "PARTITION OF",
        "ADD VALUE",
        "generate_series",
        "set_config('search_path', '', false)",
        "CREATE POLICY",
        "GRANT ",
        "MATERIALIZED VIEW",
        "GENERATED ALWAYS AS (",
        "CREATE TRIGGER",
        "/* nested",
    ):
        assert any(shape in text for text in texts), shape
    assert any(text.startswith(("BEGIN", "START", "begin")) or "\nBEGIN;" in text for text in texts)
    assert any(text.strip() == "" for text in texts)
    assert any("\r\n" in text for text in texts)
    assert any(
        text.lstrip().startswith("CREATE INDEX CONCURRENTLY") or text.startswith("-- CREATE INDEX CONCURRENTLY")
        for text in texts
    )
    assert any(key.endswith(".down.sql") for key in files)


def test_every_generated_file_is_valid_for_psql_one_file_at_a_time(pg: EmbeddedPostgres, tmp_path: Path) -> None:
    root = tmp_path / "migrations"
    generate(root, files=160, seed=2, databases=("appdb", "reporting"), server_major=pg.major)
    assert apply_with_psql(pg, root) == len(ordered_files(root))
    assert tables_of(pg, "appdb") > 10 and tables_of(pg, "reporting") > 10


def test_engine_ends_in_the_same_state_as_psql_on_a_300_file_set(pg: EmbeddedPostgres, tmp_path: Path) -> None:
    root = tmp_path / "migrations"
    generate(root, files=300, seed=1, databases=("appdb", "reporting"), server_major=pg.major)
    expected, actual = psql_then_engine(pg, root)
    assert_same_fingerprint(expected, actual)


def test_cli_up_ends_in_the_same_state_as_psql(pg: EmbeddedPostgres, tmp_path: Path) -> None:
    root = tmp_path / "migrations"
    generate(root, files=80, seed=11, server_major=pg.major)
    apply_with_psql(pg, root)
    expected = fingerprint(pg)
    reset_cluster(pg)
    command = [str(Path(sys.executable).parent / "dbmigrate"), "up", "--dir", str(root), "--database-url", pg.url()]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        check=False,
        env={k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert_same_fingerprint(expected, fingerprint(pg), actual_label="dbmigrate up")


def test_generator_leaves_out_the_syntax_an_older_server_lacks(tmp_path: Path) -> None:
    def standard_bodies(paths: list[Path]) -> int:
        texts = [p.read_text() for p in paths]
        return sum(t.count("BEGIN ATOMIC") + t.count("\nRETURN lower(") for t in texts)

    assert standard_bodies(generate(tmp_path / "newest", files=300, seed=1)) > 0
    assert standard_bodies(generate(tmp_path / "14", files=300, seed=1, server_major=14)) > 0
    assert standard_bodies(generate(tmp_path / "13", files=300, seed=1, server_major=13)) == 0


def test_a_500_file_set_is_written(tmp_path: Path) -> None:
    paths = generate(tmp_path / "big", files=500, seed=5)
    ups = [p for p in paths if p.parent.name == "appdb"]
    assert len(ups) == 500
    assert len({int(p.name.split("_", 1)[0]) for p in ups}) == 500


@pytest.mark.parametrize("case", TRICKY_CASES, ids=[p.stem for p in TRICKY_CASES])
def test_tricky_file_ends_in_the_same_state_as_psql(pg: EmbeddedPostgres, tmp_path: Path, case: Path) -> None:
    needs = NEEDS_MAJOR.search(case.read_text().splitlines()[0])
    if needs and pg.major < int(needs["major"]):
        pytest.skip(f"{case.name} needs PostgreSQL {needs['major']}+ (the server is {pg.major})")
    root = write_files(
        tmp_path / "migrations",
        {
            "postgres/1_setup.up.sql": TRICKY_SETUP,
            f"trickydb/1_{case.stem}.up.sql": case.read_bytes(),
            "trickydb/2_next_file.up.sql": NEXT_FILE,
        },
    )
    expected, actual = psql_then_engine(pg, root)
    assert_same_fingerprint(expected, actual)


def test_fingerprint_names_what_differs_and_ignores_the_history(pg: EmbeddedPostgres) -> None:
    pg.psql("postgres", "-c", "CREATE DATABASE appdb")
    pg.psql(
        "appdb",
        "-c",
        "CREATE TABLE t (id integer PRIMARY KEY, at timestamptz DEFAULT now()); "
        "INSERT INTO t (id) SELECT generate_series(1, 20); COMMENT ON TABLE t IS 'one'",
    )
    before = fingerprint(pg)
    pg.psql(
        "appdb",
        "-c",
        "CREATE SCHEMA dbmigrate; CREATE TABLE dbmigrate.history (v numeric); "
        "CREATE TABLE public.schema_migrations (version bigint, dirty boolean); "
        "UPDATE t SET at = now() - interval '1 day'",
    )
    assert fingerprint(pg) == before

    pg.psql("appdb", "-c", "COMMENT ON TABLE t IS 'two'; DELETE FROM t WHERE id = 7")
    with pytest.raises(AssertionError) as failure:
        assert_same_fingerprint(before, fingerprint(pg))
    message = str(failure.value)
    assert "-COMMENT ON TABLE public.t IS 'one';" in message
    assert "+COMMENT ON TABLE public.t IS 'two';" in message
    assert "+public.t: rows=19" in message
