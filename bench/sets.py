"""The migration sets of the benchmark, and their layout for each tool.

Every tool applies the same SQL bytes; only the file names and the markers around the
SQL differ (dbmate wants ``-- migrate:up``; yoyo reads a folder of ``.sql`` files in
name order; ours and psql read ``<database>/<version>_<description>.up.sql``). Every
file runs inside a transaction, so each tool may apply it its usual way.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DATABASE", "Layouts", "Migration", "MigrationSet", "medium_set", "small_set", "write_layouts"]

DATABASE = "bench"
FIRST_VERSION = 202401010000
BACKFILL_ROWS = 10_000


@dataclass(frozen=True)
class Migration:
    """One migration: its version, description and SQL."""

    version: int
    description: str
    sql: str


@dataclass(frozen=True)
class MigrationSet:
    """A named set of migrations; ``kind`` groups sets of the same file shape for the chart."""

    name: str
    kind: str
    migrations: tuple[Migration, ...]

    @property
    def files(self) -> int:
        return len(self.migrations)


@dataclass(frozen=True)
class Layouts:
    """Where one set was written for each tool."""

    ours: Path  # folder holding DATABASE/ (the --dir of dbmigrate)
    files: tuple[Path, ...]  # ours' files, in order (what psql runs)
    dbmate: Path
    yoyo: Path


def small_set(count: int, name: str | None = None) -> MigrationSet:
    """``count`` small files, one table or one index each."""
    migrations = []
    for i in range(count):
        if i % 4 == 3:
            sql = f"CREATE INDEX small_{i - 1}_name_idx ON small_{i - 1} (name, created_at);\n"
            description = f"index_small_{i - 1}"
        else:
            sql = (
                f"CREATE TABLE small_{i} (\n"
                "    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n"
                "    name text NOT NULL,\n"
                "    created_at timestamptz NOT NULL DEFAULT now()\n"
                ");\n"
            )
            description = f"create_small_{i}"
        migrations.append(Migration(FIRST_VERSION + i, description, sql))
    return MigrationSet(name or f"small-{count}", "small", tuple(migrations))


def medium_set(count: int, name: str | None = None) -> MigrationSet:
    """``count`` medium files: tables, 10k-row backfills, PL/pgSQL functions and triggers, ALTERs."""
    writers: list[Callable[[int, int], tuple[str, str]]] = [_table, _backfill, _function, _alter]
    migrations = []
    for i in range(count):
        group, step = divmod(i, len(writers))
        description, sql = writers[step](group, i)
        migrations.append(Migration(FIRST_VERSION + i, description, sql))
    return MigrationSet(name or f"medium-{count}", "medium", tuple(migrations))


def _table(group: int, _: int) -> tuple[str, str]:
    parent = f"\n    parent_id bigint REFERENCES account_{group - 1} (id)," if group else ""
    return (
        f"create_account_{group}",
        f"-- Accounts, generation {group}.\n"
        f"CREATE TABLE account_{group} (\n"
        "    id bigint PRIMARY KEY,"
        f"{parent}\n"
        "    email text NOT NULL,\n"
        "    balance numeric(12, 2) NOT NULL DEFAULT 0 CHECK (balance >= 0),\n"
        "    status text NOT NULL DEFAULT 'new',\n"
        "    touched_at timestamptz,\n"
        "    created_at timestamptz NOT NULL DEFAULT now()\n"
        ");\n"
        f"CREATE UNIQUE INDEX account_{group}_email_key ON account_{group} (lower(email));\n"
        f"COMMENT ON TABLE account_{group} IS 'generation {group}; see the backfill that follows';\n",
    )


def _backfill(group: int, _: int) -> tuple[str, str]:
    return (
        f"backfill_account_{group}",
        f"INSERT INTO account_{group} (id, email, balance, status)\n"
        "SELECT g, 'user' || g || '@example.com', (g % 1000) / 10.0, CASE WHEN g % 3 = 0 THEN 'active' ELSE 'new' END\n"
        f"FROM generate_series(1, {BACKFILL_ROWS}) AS g;\n"
        f"UPDATE account_{group} SET status = 'vip', touched_at = now() WHERE balance > 90;\n"
        f"ANALYZE account_{group};\n",
    )


def _function(group: int, _: int) -> tuple[str, str]:
    return (
        f"touch_trigger_{group}",
        f"CREATE OR REPLACE FUNCTION account_{group}_touch() RETURNS trigger\n"
        "LANGUAGE plpgsql AS $$\n"
        "DECLARE\n"
        "    note text := 'touched; by trigger';  -- a semicolon inside the body\n"
        "BEGIN\n"
        "    IF NEW.balance < 0 THEN\n"
        "        RAISE EXCEPTION 'negative balance for %', NEW.id;\n"
        "    END IF;\n"
        "    NEW.touched_at := now();\n"
        "    RETURN NEW;\n"
        "END;\n"
        "$$;\n"
        f"CREATE TRIGGER account_{group}_touch BEFORE UPDATE ON account_{group}\n"
        f"    FOR EACH ROW EXECUTE FUNCTION account_{group}_touch();\n"
        f"CREATE OR REPLACE FUNCTION account_{group}_total(min_balance numeric) RETURNS numeric\n"
        "LANGUAGE plpgsql STABLE AS $body$\n"
        "DECLARE\n"
        "    total numeric := 0;\n"
        "BEGIN\n"
        f"    SELECT coalesce(sum(balance), 0) INTO total FROM account_{group} WHERE balance >= min_balance;\n"
        "    RETURN total;\n"
        "END;\n"
        "$body$;\n",
    )


def _alter(group: int, _: int) -> tuple[str, str]:
    return (
        f"alter_account_{group}",
        f"ALTER TABLE account_{group} ADD COLUMN region text NOT NULL DEFAULT 'eu';\n"
        f"ALTER TABLE account_{group} ALTER COLUMN status SET DEFAULT 'active';\n"
        f"CREATE INDEX account_{group}_status_idx ON account_{group} (status) WHERE status <> 'new';\n"
        f"CREATE VIEW account_{group}_vip AS SELECT id, email, balance FROM account_{group} WHERE status = 'vip';\n",
    )


def write_layouts(migration_set: MigrationSet, root: Path) -> Layouts:
    """Write the set under ``root`` once per tool layout; returns where."""
    if root.exists():
        shutil.rmtree(root)
    ours = root / "ours"
    (ours / DATABASE).mkdir(parents=True)
    dbmate = root / "dbmate"
    dbmate.mkdir()
    yoyo = root / "yoyo"
    yoyo.mkdir()
    files = []
    for migration in migration_set.migrations:
        stem = f"{migration.version}_{migration.description}"
        path = ours / DATABASE / f"{stem}.up.sql"
        path.write_text(migration.sql)
        files.append(path)
        (dbmate / f"{stem}.sql").write_text(f"-- migrate:up\n{migration.sql}\n-- migrate:down\n")
        (yoyo / f"{stem}.sql").write_text(migration.sql)
    return Layouts(ours, tuple(files), dbmate, yoyo)
