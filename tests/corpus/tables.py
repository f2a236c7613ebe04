"""Kinds that shape tables and types: schemas, extensions, enums, tables, columns, pg_dump-style files."""

from __future__ import annotations

from .objects import (
    BIGINT,
    BOOL,
    CITEXT,
    DATE,
    ENUM,
    INT,
    NUMERIC,
    TEXT,
    TIMESTAMP,
    UUID,
    Column,
    EnumType,
    Table,
    ident,
    literal,
)
from .writer import QUOTED_TABLE_WORDS, TABLE_WORDS, Draft, WriterBase, slug

__all__ = ["TableKinds"]


class TableKinds(WriterBase):
    """Each method writes one migration of its kind and updates the model."""

    def create_schema(self) -> Draft:
        name = self.rng.choice(["app", "billing", "audit", "reporting", "ops", "integrations", "ärger"])
        name = f"{name}_{self.m.next_id()}"
        self.m.schemas.append(name)
        statements = [f"CREATE SCHEMA IF NOT EXISTS {ident(name)}"]
        if self.rng.random() < 0.5:
            statements.append(
                f"COMMENT ON SCHEMA {ident(name)} IS {self.sql_text('owned by the platform team; see runbook')}"
            )
        if self.rng.random() < 0.6:
            statements.append(f"GRANT USAGE ON SCHEMA {ident(name)} TO app_reader, app_writer")
        return Draft(f"create_schema_{name}", statements, down=f"DROP SCHEMA IF EXISTS {ident(name)} CASCADE;\n")

    def create_extension(self) -> Draft:
        missing = [
            e
            for e in ("pg_trgm", "citext", "pgcrypto", "uuid-ossp", "btree_gist", "hstore")
            if e not in self.m.extensions
        ]
        if not missing:
            return self.create_table()
        name = missing[0]
        self.m.extensions.add(name)
        text = f"CREATE EXTENSION IF NOT EXISTS {ident(name)}"
        if self.rng.random() < 0.5 or self.path[:1] != ("public",):
            text += " WITH SCHEMA public"
        return Draft(f"enable_{name.replace('-', '_')}", [text], down=f"DROP EXTENSION IF EXISTS {ident(name)};\n")

    def create_enum(self) -> Draft:
        schema = self.pick_schema()
        name = self.fresh(["status", "state", "kind", "visibility", "currency", "priority_level"])
        labels = self.rng.sample(
            ["draft", "active", "archived", "pending", "done", "it's", "semi;colon", "über", "n/a", "ready"], 3
        )
        enum = EnumType(schema, name, labels)
        self.m.enums.append(enum)
        label_sql = ", ".join(literal(label) for label in labels)
        if self.rng.random() < 0.5:
            # The guard real projects wrap around CREATE TYPE, which has no IF NOT EXISTS.
            tag = self.rng.choice(["$$", "$do$", "$body$"])
            body = (
                f"DO {tag}\nBEGIN\n"
                f"    IF NOT EXISTS (SELECT 1 FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace\n"
                f"                   WHERE t.typname = {literal(name)} AND n.nspname = {literal(schema)}) THEN\n"
                f"        CREATE TYPE {self.q(schema, name, qualify=True)} AS ENUM ({label_sql});\n"
                f"    END IF;\nEND\n{tag}"
            )
            statements = [body]
        else:
            statements = [f"CREATE TYPE {self.q(schema, name)} AS ENUM ({label_sql})"]
        if self.rng.random() < 0.4:
            statements.append(f"COMMENT ON TYPE {self.q(schema, name)} IS {self.sql_text('lifecycle; see docs')}")
        return Draft(
            f"create_{name}_enum", statements, down=f"DROP TYPE IF EXISTS {self.q(schema, name, qualify=True)};\n"
        )

    def add_enum_value(self) -> Draft:
        if not self.m.enums:
            return self.create_enum()
        enum = self.rng.choice(self.m.enums)
        label = (
            f"{self.rng.choice(['paused', 'failed', 'queued', 'on;hold', 'cancelled', 'réservé'])}_{self.m.next_id()}"
        )
        where = ""
        if self.rng.random() < 0.3:
            where = f" BEFORE {literal(enum.labels[0])}"
            enum.labels.insert(0, label)
        elif self.rng.random() < 0.3:
            where = f" AFTER {literal(enum.labels[-1])}"
            enum.labels.append(label)
        else:
            enum.labels.append(label)
        statements = [f"ALTER TYPE {self.q(enum.schema, enum.name)} ADD VALUE IF NOT EXISTS {literal(label)}{where}"]
        wrap_ok = True
        users = [
            (t, c)
            for t in self.m.fillable()
            for c in t.columns
            if c.enum is enum and t.rows > 0 and t.partition_key is None
        ]
        if users and self.rng.random() < 0.6:
            # Using the new label in the same file works under psql (autocommit) only.
            table, column = self.rng.choice(users)
            statements.append(
                f"UPDATE {self.qt(table)} SET {ident(column.name)} = {literal(label)} "
                f"WHERE {ident(table.pk or 'id')} IN (SELECT {ident(table.pk or 'id')} FROM {self.qt(table)} "
                f"ORDER BY 1 LIMIT 3)"
                if table.pk_family == BIGINT
                else f"UPDATE {self.qt(table)} SET {ident(column.name)} = {literal(label)} WHERE false"
            )
            wrap_ok = False
        if self.rng.random() < 0.3:
            second = f"retired_{self.m.next_id()}"
            enum.labels.append(second)
            statements.append(f"ALTER TYPE {self.q(enum.schema, enum.name)} ADD VALUE {literal(second)}")
            wrap_ok = False if len(statements) > 2 else wrap_ok
        return Draft(f"add_{label}_to_{enum.name}", statements, wrap_ok=wrap_ok)

    def create_table(self) -> Draft:
        schema = self.pick_schema()
        quoted = self.rng.random() < 0.08
        name = f"{self.rng.choice(QUOTED_TABLE_WORDS)} {self.m.next_id()}" if quoted else self.fresh(TABLE_WORDS)
        columns = self.new_columns(self.rng.randint(2, 6))
        table, lines = self.primary_key(schema, name)
        self.foreign_key(table, columns, lines)
        for column in columns:
            lines.append(self.column_sql(column))
            table.columns.append(column)
        if self.rng.random() < 0.5:
            for stamp in ("created_at", "updated_at"):
                lines.append(f"{stamp} timestamptz NOT NULL DEFAULT now()")
                table.columns.append(
                    Column(stamp, "timestamptz", TIMESTAMP, nullable=False, pinned=True, has_default=True)
                )
        self.derived_columns(table, name, lines)
        comment = ""
        if self.rng.random() < 0.3:
            comment = "    -- keep the widest columns last; don't reorder (see ADR-12; it's about padding)\n"
        body = ",\n".join("    " + line for line in lines)
        exists = "IF NOT EXISTS " if self.rng.random() < 0.3 else ""
        statements = [f"CREATE TABLE {exists}{self.qt(table)} (\n{comment}{body}\n)"]
        if self.rng.random() < 0.5:
            statements.append(f"COMMENT ON TABLE {self.qt(table)} IS {self.sql_text(self.text_value())}")
        if self.rng.random() < 0.3 and len(table.columns) > 1:
            column = self.rng.choice(table.columns)
            statements.append(
                f"COMMENT ON COLUMN {self.qt(table)}.{ident(column.name)} IS {self.sql_text(self.text_value())}"
            )
        self.m.tables.append(table)
        return Draft(f"create_{slug(name)}", statements, down=f"DROP TABLE IF EXISTS {self.qt(table, qualify=True)};\n")

    def primary_key(self, schema: str, name: str) -> tuple[Table, list[str]]:
        """A new table with its ``id`` column (bigint or uuid), and the column's line."""
        pk_family = UUID if self.rng.random() < 0.2 else BIGINT
        if pk_family == UUID:
            pk_sql = "id uuid PRIMARY KEY DEFAULT gen_random_uuid()"
        else:
            pk_sql = self.rng.choice(
                [
                    "id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
                    "id bigserial PRIMARY KEY",
                    "id bigint GENERATED ALWAYS AS IDENTITY (START WITH 1000 INCREMENT BY 1) PRIMARY KEY",
                ]
            )
        table = Table(
            schema,
            name,
            [Column("id", "bigint" if pk_family == BIGINT else "uuid", pk_family, pinned=True)],
            pk_family=pk_family,
        )
        return table, [pk_sql]

    def foreign_key(self, table: Table, columns: list[Column], lines: list[str]) -> None:
        """Half the time, a column referencing an existing table's key."""
        parents = [t for t in self.m.plain_tables() if t.pk_family in (BIGINT, UUID) and t.pk and t.owner is None]
        if parents and self.rng.random() < 0.5:
            parent = self.rng.choice(parents)
            fk = f"{parent.name.split(' ')[0].rstrip('s')[:20]}_id"
            if any(c.name == fk for c in columns):
                fk += "_ref"
            ptype = "bigint" if parent.pk_family == BIGINT else "uuid"
            action = self.rng.choice(["ON DELETE CASCADE", "ON DELETE SET NULL", "ON DELETE RESTRICT", ""])
            lines.append(f"{ident(fk)} {ptype} REFERENCES {self.qt(parent)} (id) {action}".rstrip())
            column = Column(fk, ptype, BIGINT if ptype == "bigint" else UUID, pinned=True, foreign=parent)
            table.columns.append(column)

    def derived_columns(self, table: Table, name: str, lines: list[str]) -> None:
        """Sometimes a generated column, a length check and a column named by a keyword."""
        ints = [c for c in table.columns if c.family == INT]
        texts = [c for c in table.columns if c.family == TEXT]
        if ints and self.rng.random() < 0.4:
            base = ints[0]
            base.pinned = True
            gen = f"{base.name}_doubled"
            lines.append(f"{ident(gen)} bigint GENERATED ALWAYS AS ({ident(base.name)}::bigint * 2) STORED")
            table.columns.append(Column(gen, "bigint", BIGINT, pinned=True, has_default=True, generated=True))
        elif texts and self.rng.random() < 0.4:
            base = texts[0]
            base.pinned = True
            gen = f"{base.name}_lower"
            lines.append(f"{ident(gen)} text GENERATED ALWAYS AS (lower({ident(base.name)})) STORED")
            table.columns.append(Column(gen, "text", TEXT, pinned=True, has_default=True, generated=True))
        if texts and self.rng.random() < 0.3:
            texts[-1].pinned = True
            lines.append(f"CONSTRAINT {ident(name + '_len_chk')} CHECK (char_length({ident(texts[-1].name)}) <= 500)")
        if self.rng.random() < 0.2:
            lines.append('"order" integer NOT NULL DEFAULT 0')
            table.columns.append(Column("order", "integer", INT, nullable=False, has_default=True))

    def add_columns(self) -> Draft:
        tables = self.m.plain_tables()
        if not tables:
            return self.create_table()
        table = self.rng.choice(tables)
        existing = {c.name for c in table.columns}
        columns = [c for c in self.new_columns(self.rng.randint(1, 3)) if c.name not in existing]
        if not columns:
            return self.create_table()
        if self.rng.random() < 0.5:
            parts = ", ".join(f"ADD COLUMN IF NOT EXISTS {self.column_sql(c)}" for c in columns)
            statements = [f"ALTER TABLE {self.qt(table)} {parts}"]
        else:
            statements = [f"ALTER TABLE {self.qt(table)} ADD COLUMN {self.column_sql(c)}" for c in columns]
        for column in columns:
            if not column.nullable and not column.has_default:
                column.nullable = True
        table.columns.extend(columns)
        return Draft(f"add_{slug(columns[0].name)}_to_{slug(table.name)}", statements)

    def alter_table(self) -> Draft:
        tables = [t for t in self.m.plain_tables() if t.free_columns()]
        if not tables:
            return self.add_columns()
        table = self.rng.choice(tables)
        column = self.rng.choice(table.free_columns())
        roll = self.rng.random()
        return self.reshape_column(table, column, roll) or self.tune_column(table, column, roll)

    def reshape_column(self, table: Table, column: Column, roll: float) -> Draft | None:
        """Rename, drop, widen or check the column (by ``roll``); None for the rarer changes."""
        qt = self.qt(table)
        if roll < 0.25:
            new = f"{column.name[:20]}_{self.m.next_id()}"
            statement = f"ALTER TABLE {qt} RENAME COLUMN {ident(column.name)} TO {ident(new)}"
            column.name = new
            return Draft(f"rename_{slug(column.name)}", [statement])
        if roll < 0.4:
            table.columns.remove(column)
            return Draft(f"drop_{slug(column.name)}", [f"ALTER TABLE {qt} DROP COLUMN IF EXISTS {ident(column.name)}"])
        if roll < 0.55 and column.family == INT:
            column.sql_type, column.family = "bigint", BIGINT
            return Draft(
                f"widen_{slug(column.name)}",
                [f"ALTER TABLE {qt} ALTER COLUMN {ident(column.name)} TYPE bigint USING {ident(column.name)}::bigint"],
            )
        if roll < 0.75 and column.family in (INT, NUMERIC, BIGINT):
            name = f"{slug(table.name)[:20]}_{slug(column.name)[:15]}_nonneg_{self.m.next_id()}"
            column.pinned = True
            return Draft(
                f"check_{name}",
                [
                    f"ALTER TABLE {qt} ADD CONSTRAINT {ident(name)} CHECK ({ident(column.name)} >= 0) NOT VALID",
                    f"ALTER TABLE {qt} VALIDATE CONSTRAINT {ident(name)}",
                ],
            )
        return None

    def tune_column(self, table: Table, column: Column, roll: float) -> Draft:
        """Tune the table's storage, give the column a default, or let it be null (by ``roll``)."""
        qt = self.qt(table)
        if roll < 0.85:
            return Draft(
                f"tune_{slug(table.name)}",
                [
                    f"ALTER TABLE {qt} SET (fillfactor = 90, autovacuum_vacuum_scale_factor = 0.05)",
                    f"ALTER TABLE {qt} ALTER COLUMN {ident(column.name)} SET STATISTICS 500",
                ],
            )
        if column.family == TEXT:
            column.has_default = True
            return Draft(
                f"default_{slug(column.name)}",
                [
                    f"ALTER TABLE {qt} ALTER COLUMN {ident(column.name)} SET DEFAULT {self.sql_text('n/a; unknown')}",
                ],
            )
        return Draft(
            f"nullable_{slug(column.name)}", [f"ALTER TABLE {qt} ALTER COLUMN {ident(column.name)} DROP NOT NULL"]
        )

    def domain(self) -> Draft:
        schema = self.pick_schema()
        name = self.fresh(["email_address", "positive_amount", "short_code"])
        roll = self.rng.random()
        if roll < 0.5:
            statement = f"CREATE DOMAIN {self.q(schema, name)} AS text CHECK (VALUE ~ '^[^@;]+@[^@;]+$')"
        else:
            statement = (
                f"CREATE TYPE {self.q(schema, name)} AS (\n"
                "    amount numeric(12,2),\n    currency char(3),\n    note text\n)"
            )
        return Draft(f"type_{name}", [statement])

    def dumped_table(self) -> Draft:
        """A table as pg_dump writes it: qualified names, empty search_path, constraints added after."""
        self.path = ()
        schema = self.pick_schema()
        name = self.fresh(TABLE_WORDS)
        qn = self.q(schema, name)
        seq = self.q(schema, f"{name}_id_seq")
        columns = [c for c in self.new_columns(3) if c.family not in (ENUM, CITEXT)]
        table = Table(schema, name, [Column("id", "integer", BIGINT, nullable=False, pinned=True), *columns])
        column_lines = ["    id integer NOT NULL"]
        for column in columns:
            default = {TEXT: " DEFAULT ''::text NOT NULL", INT: " DEFAULT 0 NOT NULL", BOOL: " DEFAULT false NOT NULL"}
            extra = default.get(column.family, "")
            column.has_default = bool(extra)
            column.nullable = not extra
            column_lines.append(f"    {ident(column.name)} {column.sql_type}{extra}")

        def header(kind: str, obj: str) -> str:
            return f"--\n-- Name: {obj}; Type: {kind}; Schema: {schema}; Owner: postgres\n--\n\n"

        statements = [
            header("TABLE", name) + f"CREATE TABLE {qn} (\n" + ",\n".join(column_lines) + "\n)",
            f"ALTER TABLE {qn} OWNER TO postgres",
            header("SEQUENCE", f"{name}_id_seq")
            + f"CREATE SEQUENCE {seq}\n    AS integer\n    START WITH 1\n    INCREMENT BY 1\n    NO MINVALUE\n"
            "    NO MAXVALUE\n    CACHE 1",
            f"ALTER SEQUENCE {seq} OWNED BY {qn}.id",
            f"ALTER TABLE ONLY {qn} ALTER COLUMN id SET DEFAULT nextval({literal(seq)}::regclass)",
            header("CONSTRAINT", f"{name} {name}_pkey")
            + f"ALTER TABLE ONLY {qn}\n    ADD CONSTRAINT {ident(name + '_pkey')} PRIMARY KEY (id)",
        ]
        if columns and columns[0].family in (TEXT, INT, BIGINT, DATE, BOOL, NUMERIC):
            columns[0].pinned = True
            index = f"{name}_{columns[0].name}_idx"
            statements.append(
                header("INDEX", index) + f"CREATE INDEX {ident(index)} ON {qn} USING btree ({ident(columns[0].name)})"
            )
        statements.append(f"COMMENT ON TABLE {qn} IS {literal(self.text_value())}")
        self.m.tables.append(table)
        return Draft(f"dump_{slug(name)}", statements, wrap_ok=False, pg_dump_header=True)
