"""Kinds about rows and access paths: indexes (CONCURRENTLY too), partitions, sequences, backfills."""

from __future__ import annotations

from .objects import (
    BIGINT,
    BOOL,
    CITEXT,
    DATE,
    INT,
    JSON,
    NUMERIC,
    TEXT,
    TIMESTAMP,
    UUID,
    Column,
    Table,
    ident,
    literal,
)
from .tables import TableKinds
from .writer import Draft, slug

__all__ = ["DataKinds"]


class DataKinds(TableKinds):
    """Each method writes one migration of its kind and updates the model."""

    def index_target(self, table: Table) -> tuple[str, str]:
        """An index definition on ``table``: (name stem, column list or expression)."""
        candidates = [
            c for c in table.columns if c.family in (TEXT, INT, BIGINT, DATE, TIMESTAMP, BOOL, NUMERIC, UUID, CITEXT)
        ]
        column = self.rng.choice(candidates)
        column.pinned = True
        roll = self.rng.random()
        if column.family == TEXT and roll < 0.3:
            return f"{column.name}_lower", f"(lower({ident(column.name)}))"
        if roll < 0.5 and len(candidates) > 1:
            other = self.rng.choice([c for c in candidates if c is not column])
            other.pinned = True
            return f"{column.name}_{other.name}", f"{ident(column.name)}, {ident(other.name)} DESC"
        return column.name, ident(column.name)

    def create_index(self, *, concurrently: bool = False) -> Draft:
        tables = self.m.plain_tables()
        if not tables:
            return self.create_table()
        table = self.rng.choice(tables)
        stem, target = self.index_target(table)
        name = f"idx_{slug(table.name)[:20]}_{slug(stem)[:20]}_{self.m.next_id()}"
        self.m.indexes.append((table.schema, name))
        conc = " CONCURRENTLY" if concurrently else ""
        exists = " IF NOT EXISTS" if self.rng.random() < 0.4 else ""
        where = ""
        bools = [c for c in table.columns if c.family == BOOL]
        if bools and self.rng.random() < 0.3:
            bools[0].pinned = True
            where = f" WHERE {ident(bools[0].name)}"
        method = ""
        jsons = [c for c in table.columns if c.family == JSON]
        if jsons and self.rng.random() < 0.3:
            jsons[0].pinned = True
            method, target, where = " USING gin", f"{ident(jsons[0].name)} jsonb_path_ops", ""
        elif "pg_trgm" in self.m.extensions and self.rng.random() < 0.2:
            texts = [c for c in table.columns if c.family == TEXT]
            if texts:
                texts[0].pinned = True
                method, target, where = " USING gin", f"{ident(texts[0].name)} {self.pub('gin_trgm_ops')}", ""
        statement = f"CREATE INDEX{conc}{exists} {ident(name)} ON {self.qt(table)}{method} ({target}){where}"
        statements = [statement]
        if concurrently and self.rng.random() < 0.5:
            statements[0] = (
                "-- CREATE INDEX CONCURRENTLY cannot run in a transaction block; this file has no BEGIN.\n" + statement
            )
        down = f"DROP INDEX{conc} IF EXISTS {self.q(table.schema, name, qualify=True)};\n"
        return Draft(f"index_{slug(stem)}_on_{slug(table.name)}", statements, wrap_ok=not concurrently, down=down)

    def cic_alone(self) -> Draft:
        return self.create_index(concurrently=True)

    def unique_index_then_constraint(self) -> Draft:
        tables = [t for t in self.m.plain_tables() if t.pk_family == BIGINT]
        if not tables:
            return self.create_table()
        table = self.rng.choice(tables)
        column = f"external_ref_{self.m.next_id()}"
        name = f"uq_{slug(table.name)[:30]}_{column}"
        statements = [
            f"ALTER TABLE {self.qt(table)} ADD COLUMN {ident(column)} text",
            f"CREATE UNIQUE INDEX CONCURRENTLY {ident(name)} ON {self.qt(table)} ({ident(column)})",
            f"ALTER TABLE {self.qt(table)} ADD CONSTRAINT {ident(name)} UNIQUE USING INDEX {ident(name)}",
        ]
        table.columns.append(Column(column, "text", TEXT, pinned=True, unique=True))
        return Draft(f"unique_{column}", statements, wrap_ok=False)

    def drop_index(self) -> Draft:
        if not self.m.indexes:
            return self.create_index()
        schema, name = self.m.indexes.pop(self.rng.randrange(len(self.m.indexes)))
        if self.rng.random() < 0.5:
            return Draft(f"drop_{name}", [f"DROP INDEX CONCURRENTLY IF EXISTS {self.q(schema, name)}"], wrap_ok=False)
        return Draft(f"drop_{name}", [f"DROP INDEX IF EXISTS {self.q(schema, name)}"])

    def partitioned_table(self) -> Draft:
        schema = self.pick_schema()
        name = self.fresh(["measurements", "page_views", "ledger_entries", "event_log"])
        seq = f"{name}_id_seq"
        qs = self.q(schema, seq)
        table = Table(
            schema,
            name,
            [
                Column("id", "bigint", BIGINT, pinned=True),
                Column("recorded_on", "date", DATE, nullable=False, pinned=True),
                Column("payload", "jsonb", JSON, pinned=True),
                Column("amount", "numeric(12,2)", NUMERIC, pinned=True),
            ],
            pk=None,
            partition_key="recorded_on",
            partition_months=3,
        )
        statements = [
            f"CREATE SEQUENCE {qs} AS bigint START WITH 1 INCREMENT BY 1 NO MINVALUE NO MAXVALUE CACHE 1",
            f"CREATE TABLE {self.qt(table)} (\n"
            f"    id bigint NOT NULL DEFAULT nextval({literal(self.q(schema, seq, qualify=True))}::regclass),\n"
            "    recorded_on date NOT NULL,\n    payload jsonb NOT NULL DEFAULT '{}',\n    amount numeric(12,2),\n"
            "    PRIMARY KEY (id, recorded_on)\n) PARTITION BY RANGE (recorded_on)",
        ]
        for month in range(1, 4):
            statements.append(
                f"CREATE TABLE {self.q(schema, f'{name}_2024_{month:02d}')} PARTITION OF {self.qt(table)}\n"
                f"    FOR VALUES FROM ('2024-{month:02d}-01') TO ('2024-{month + 1:02d}-01')"
            )
        statements.append(f"CREATE TABLE {self.q(schema, name + '_default')} PARTITION OF {self.qt(table)} DEFAULT")
        statements.append(f"CREATE INDEX ON {self.qt(table)} (recorded_on)")
        statements.append(f"ALTER SEQUENCE {qs} OWNED BY {self.qt(table)}.id")
        self.m.tables.append(table)
        return Draft(
            f"create_{name}_partitioned", statements, down=f"DROP TABLE IF EXISTS {self.qt(table, qualify=True)};\n"
        )

    def add_partition(self) -> Draft:
        tables = [t for t in self.m.tables if t.partition_key]
        if not tables:
            return self.partitioned_table()
        table = self.rng.choice(tables)
        table.partition_months += 1
        month = table.partition_months
        year, mon = 2024 + (month - 1) // 12, (month - 1) % 12 + 1
        nyear, nmon = 2024 + month // 12, month % 12 + 1
        part = f"{table.name}_{year}_{mon:02d}"
        start, end = f"{year}-{mon:02d}-01", f"{nyear}-{nmon:02d}-01"
        if self.rng.random() < 0.5:
            statements = [
                f"CREATE TABLE IF NOT EXISTS {self.q(table.schema, part)} PARTITION OF {self.qt(table)}\n"
                f"    FOR VALUES FROM ('{start}') TO ('{end}')"
            ]
        else:
            statements = [
                f"CREATE TABLE {self.q(table.schema, part)}"
                f" (LIKE {self.qt(table)} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)",
                f"ALTER TABLE {self.qt(table)} ATTACH PARTITION {self.q(table.schema, part)}\n"
                f"    FOR VALUES FROM ('{start}') TO ('{end}')",
            ]
        return Draft(f"partition_{part}", statements)

    def fill_partitioned(self) -> Draft:
        tables = [t for t in self.m.tables if t.partition_key]
        if not tables:
            return self.partitioned_table()
        table = self.rng.choice(tables)
        count = self.rng.choice([30, 90, 200])
        table.rows += count
        statement = (
            f"INSERT INTO {self.qt(table)} (recorded_on, payload, amount)\n"
            f"SELECT date '2024-01-01' + (g % 90), jsonb_build_object('g', g, 'note', 'a;b'), g * 0.5\n"
            f"  FROM generate_series(1, {count}) AS g"
        )
        return Draft(f"fill_{table.name}", [statement])

    def sequence(self) -> Draft:
        schema = self.pick_schema()
        name = self.fresh(["invoice_number_seq", "ticket_seq", "order_ref_seq"])
        self.m.sequences.append((schema, name))
        start = self.rng.choice([1, 1000, 100000])
        statements = [
            f"CREATE SEQUENCE IF NOT EXISTS {self.q(schema, name)} AS bigint START WITH {start} INCREMENT BY "
            f"{self.rng.choice([1, 5, 10])} NO CYCLE",
        ]
        if self.rng.random() < 0.5:
            statements.append(f"SELECT setval({literal(self.q(schema, name, qualify=True))}, {start + 41}, true)")
        if self.rng.random() < 0.3:
            statements.append(f"SELECT nextval({literal(self.q(schema, name, qualify=True))})")
        if self.rng.random() < 0.3:
            statements.append(f"GRANT USAGE ON SEQUENCE {self.q(schema, name)} TO app_writer")
        return Draft(f"sequence_{name}", statements)

    def alter_sequence(self) -> Draft:
        if not self.m.sequences:
            return self.sequence()
        schema, name = self.rng.choice(self.m.sequences)
        statements = [f"ALTER SEQUENCE {self.q(schema, name)} RESTART WITH {self.rng.randint(5000, 9000)}"]
        return Draft(f"restart_{name}", statements)

    def backfill(self) -> Draft:
        tables = [t for t in self.m.fillable() if t.rows < 3000]
        if not tables:
            return self.create_table()
        table = self.rng.choice(tables)
        count = self.rng.choice([10, 50, 100, 250, 500])
        targets = [c for c in table.columns if c.name != table.pk and not c.generated and not c.unique]
        columns = [ident(c.name) for c in targets]
        values = []
        source = f"generate_series(1, {count}) AS g"
        for column in targets:
            if column.foreign is None:
                values.append(self.value_expr(column, "g"))
            elif column.foreign.rows > 0:
                # One child per parent row, paired by rank: the same rows whatever the parents' keys are.
                values.append("p.id")
                source = (
                    f"(SELECT id, row_number() OVER (ORDER BY id) AS g FROM {self.qt(column.foreign)} "
                    f"ORDER BY g LIMIT {count}) AS p"
                )
                count = min(count, column.foreign.rows)
            else:
                values.append("NULL")
        if not columns:
            statements = [f"INSERT INTO {self.qt(table)} DEFAULT VALUES"] * 3
            table.rows += 3
        else:
            statements = [
                f"INSERT INTO {self.qt(table)} ({', '.join(columns)})\nSELECT {', '.join(values)}\n  FROM {source}"
            ]
            table.rows += count
        if self.rng.random() < 0.3:
            statements.append(f"ANALYZE {self.qt(table)}")
        return Draft(f"backfill_{slug(table.name)}", statements, down=f"DELETE FROM {self.qt(table, qualify=True)};\n")

    def update_backfill(self) -> Draft:
        tables = [t for t in self.m.fillable() if t.rows > 0 and t.partition_key is None]
        texts = [(t, c) for t in tables for c in t.columns if c.family == TEXT and not c.name.endswith("_lower")]
        if not texts:
            return self.backfill()
        table, column = self.rng.choice(texts)
        key = ident(table.pk or "id")
        cond = f"{key} % 3 = 0" if table.pk_family == BIGINT else f"{ident(column.name)} LIKE '%5'"
        statement = (
            f"UPDATE {self.qt(table)}\n"
            f"   SET {ident(column.name)} = {ident(column.name)} || {self.sql_text('; updated')}\n"
            f" WHERE {cond}"
        )
        return Draft(f"backfill_{slug(column.name)}_in_{slug(table.name)}", [statement])

    def vacuum(self) -> Draft:
        tables = self.m.plain_tables()
        if not tables:
            return self.create_table()
        table = self.rng.choice(tables)
        statements = [f"VACUUM (ANALYZE) {self.qt(table)}"]
        if self.rng.random() < 0.5:
            statements.insert(0, f"ANALYZE {self.qt(table)}")
        return Draft(f"vacuum_{slug(table.name)}", statements, wrap_ok=False)
