"""Kinds that hold code: PL/pgSQL and SQL functions, triggers, views, DO blocks, procedures."""

from __future__ import annotations

from .data import DataKinds
from .objects import (
    BIGINT,
    BOOL,
    INT,
    TEXT,
    Column,
    Function,
    Table,
    ident,
    literal,
)
from .writer import SAFE_TEXT, Draft, slug

__all__ = ["CodeKinds"]


class CodeKinds(DataKinds):
    """Each method writes one migration of its kind and updates the model."""

    def plpgsql_function(self) -> Draft:
        tables = self.m.plain_tables()
        if not tables:
            return self.create_table()
        table = self.rng.choice(tables)
        schema = self.pick_schema()
        name = self.fresh(["count_rows", "touch", "normalize", "summarize", "recalc_totals"])
        tag = self.rng.choice(["$$", "$fn$", "$function$", "$body$", "$_$"])
        inner = "$q$" if tag != "$q$" else "$x$"
        target = self.q(table.schema, table.name, qualify=True)
        note = self.rng.choice([t for t in SAFE_TEXT if tag not in t and inner not in t]).replace("'", "''")
        body = f"""
DECLARE
    v_count bigint := 0;  -- running total; never NULL
    v_note  text := '{note}';
    v_sql   text;
BEGIN
    /* a block comment; with 'quotes' /* and a nested one; */ inside */
    SELECT count(*) INTO v_count FROM {target};
    IF v_count < 0 THEN
        RAISE EXCEPTION 'impossible count % for %; note: %', v_count, {literal(table.name)}, v_note;
    END IF;
    v_sql := format({inner}SELECT count(*) FROM %s WHERE 'a;b' <> 'it''s'{inner}, {literal(target)});
    EXECUTE v_sql INTO v_count;
    RAISE NOTICE 'counted %; done', v_count;
    RETURN v_count + p_offset;
END;
"""
        security = self.rng.choice(["", "\nSECURITY DEFINER\nSET search_path = pg_catalog, public", "\nSTABLE"])
        create = self.rng.choice(["CREATE OR REPLACE FUNCTION", "CREATE FUNCTION"])
        statement = (
            f"{create} {self.q(schema, name)}(p_offset bigint DEFAULT 0)\nRETURNS bigint\nLANGUAGE plpgsql{security}\n"
            f"AS {tag}{body}{tag}"
        )
        function = Function(schema, name, "bigint")
        self.m.functions.append(function)
        statements = [statement]
        if self.rng.random() < 0.4:
            statements.append(
                f"COMMENT ON FUNCTION {self.q(schema, name)}(bigint) IS {self.sql_text('counts rows; cheap')}"
            )
        if self.rng.random() < 0.3:
            statements.append(f"REVOKE ALL ON FUNCTION {self.q(schema, name)}(bigint) FROM PUBLIC")
            statements.append(f"GRANT EXECUTE ON FUNCTION {self.q(schema, name)}(bigint) TO app_reader")
        if self.rng.random() < 0.3:
            statements.append(f"SELECT {self.q(schema, name)}()")
        return Draft(
            f"function_{name}",
            statements,
            down=f"DROP FUNCTION IF EXISTS {self.q(schema, name, qualify=True)}(bigint);\n",
        )

    def sql_function(self) -> Draft:
        schema = self.pick_schema()
        name = self.fresh(["slugify", "add_tax", "join_parts", "clamp", "label_of"])
        roll = self.rng.random()
        if roll < 0.35 or not self.server_has(14):  # SQL-standard bodies (BEGIN ATOMIC, RETURN): 14+
            statement = (
                f"CREATE OR REPLACE FUNCTION {self.q(schema, name)}(a text, b text)\nRETURNS text\n"
                "LANGUAGE sql IMMUTABLE PARALLEL SAFE\n"
                "AS 'SELECT $1 || '';'' || $2 || '' -- it''''s not a comment'''"
            )
        elif roll < 0.7:
            statement = (
                f"CREATE FUNCTION {self.q(schema, name)}(a text, b text) RETURNS text\n"
                "LANGUAGE sql IMMUTABLE STRICT\n"
                "BEGIN ATOMIC\n    SELECT a || '; ' || b;\nEND"
            )
        else:
            statement = (
                f"CREATE OR REPLACE FUNCTION {self.q(schema, name)}(a text, b text)\nRETURNS text\n"
                "LANGUAGE sql\nIMMUTABLE\nRETURN lower(a) || '$$' || lower(b)"
            )
        self.m.functions.append(Function(schema, name, "text, text"))
        statements = [statement]
        if self.rng.random() < 0.5:
            statements.append(f"SELECT {self.q(schema, name)}('x;y', E'it\\'s')")
        return Draft(
            f"function_{name}",
            statements,
            down=f"DROP FUNCTION IF EXISTS {self.q(schema, name, qualify=True)}(text, text);\n",
        )

    def updated_at_trigger(self) -> Draft:
        tables = [
            t for t in self.m.tables if any(c.name == "updated_at" for c in t.columns) and not t.has_updated_at_trigger
        ]
        if not tables:
            return self.plpgsql_function()
        table = self.rng.choice(tables)
        statements = []
        function = self.m.updated_at_functions.get(table.schema)
        if function is None:
            function = self.q(table.schema, f"set_updated_at_{self.m.next_id()}", qualify=True)
            self.m.updated_at_functions[table.schema] = function
            tag = self.rng.choice(["$$", "$trigger$"])
            statements.append(
                f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger\nLANGUAGE plpgsql\nAS {tag}\n"
                "BEGIN\n    -- keep updated_at honest; callers can't be trusted to set it\n"
                "    NEW.updated_at := now();\n    RETURN NEW;\nEND;\n"
                f"{tag}"
            )
        table.has_updated_at_trigger = True
        trigger = f"trg_{slug(table.name)[:40]}_updated_at"
        plain = not any(c.generated for c in table.columns)
        when = " WHEN (OLD.* IS DISTINCT FROM NEW.*)" if plain and self.rng.random() < 0.5 else ""
        statements.append(
            f"CREATE TRIGGER {ident(trigger)}\n    BEFORE UPDATE ON {self.qt(table)}\n    FOR EACH ROW{when}\n"
            f"    EXECUTE FUNCTION {function}()"
        )
        return Draft(
            f"updated_at_trigger_{slug(table.name)}",
            statements,
            down=f"DROP TRIGGER IF EXISTS {ident(trigger)} ON {self.qt(table, qualify=True)};\n",
        )

    def audit_trigger(self) -> Draft:
        candidates = [t for t in self.m.plain_tables() if not t.audited and t.pk_family == BIGINT and t.fills]
        if not candidates:
            return self.create_table()
        table = self.rng.choice(candidates)
        statements = []
        if self.m.audit_table is None:
            schema = self.pick_schema()
            # No serial key: an UPDATE visits rows in physical order, which differs between
            # any two runs, so numbering the audit rows would make the data nondeterministic.
            audit = Table(
                schema,
                f"audit_log_{self.m.next_id()}",
                [
                    Column("table_name", "text", TEXT, pinned=True),
                    Column("operation", "text", TEXT, pinned=True),
                    Column("row_id", "bigint", BIGINT, pinned=True),
                ],
                pk=None,
                pk_family=TEXT,
                fills=False,
            )
            self.m.audit_table = audit
            self.m.tables.append(audit)
            qa = self.q(schema, audit.name, qualify=True)
            statements.append(
                f"CREATE TABLE {qa} (\n    table_name text NOT NULL,\n"
                "    operation text NOT NULL CHECK (operation IN ('INSERT', 'UPDATE', 'DELETE')),\n"
                "    row_id bigint\n)"
            )
            statements.append(
                f"CREATE FUNCTION {self.q(schema, audit.name + '_write', qualify=True)}() RETURNS trigger\n"
                "LANGUAGE plpgsql\nAS $audit$\nDECLARE\n    v_id bigint;\nBEGIN\n"
                "    IF TG_OP = 'DELETE' THEN v_id := OLD.id; ELSE v_id := NEW.id; END IF;\n"
                f"    INSERT INTO {qa} (table_name, operation, row_id)\n"
                "    VALUES (TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME, TG_OP, v_id);\n"
                "    RETURN NULL; -- AFTER trigger; the result is ignored\nEND;\n$audit$"
            )
        audit = self.m.audit_table
        assert audit is not None
        table.audited = True
        audit.rows += 0
        function = self.q(audit.schema, audit.name + "_write", qualify=True)
        statements.append(
            f"CREATE TRIGGER {ident('audit_' + slug(table.name)[:40])}\n"
            f"    AFTER INSERT OR UPDATE OR DELETE ON {self.qt(table)}\n"
            f"    FOR EACH ROW EXECUTE FUNCTION {function}()"
        )
        return Draft(f"audit_{slug(table.name)}", statements)

    def create_view(self) -> Draft:
        tables = [t for t in self.m.plain_tables() if len(t.columns) > 1]
        if not tables:
            return self.create_table()
        table = self.rng.choice(tables)
        schema = self.pick_schema()
        name = f"{slug(table.name)[:30]}_view_{self.m.next_id()}"
        picked = self.rng.sample(table.columns, min(len(table.columns), self.rng.randint(1, 3)))
        for column in picked:
            column.pinned = True
        select = ", ".join(f"t.{ident(c.name)}" for c in picked)
        create = self.rng.choice(["CREATE VIEW", "CREATE OR REPLACE VIEW"])
        options = " WITH (security_barrier = true)" if self.rng.random() < 0.2 else ""
        statement = (
            f"{create} {self.q(schema, name)}{options} AS\n"
            f"    SELECT {select}, 'view;' || {literal(table.name)} AS source -- trailing comment; ok\n"
            f"      FROM {self.qt(table)} t"
        )
        self.m.views.append((schema, name))
        statements = [statement]
        if self.rng.random() < 0.5:
            statements.append(f"GRANT SELECT ON {self.q(schema, name)} TO app_reader")
        return Draft(f"view_{name}", statements, down=f"DROP VIEW IF EXISTS {self.q(schema, name, qualify=True)};\n")

    def create_matview(self) -> Draft:
        tables = [t for t in self.m.plain_tables() if any(c.family in (TEXT, BOOL, INT) for c in t.columns)]
        if not tables:
            return self.create_table()
        table = self.rng.choice(tables)
        column = self.rng.choice([c for c in table.columns if c.family in (TEXT, BOOL, INT)])
        column.pinned = True
        schema = self.pick_schema()
        name = f"{slug(table.name)[:30]}_stats_{self.m.next_id()}"
        with_data = self.rng.random() < 0.7
        statements = [
            f"CREATE MATERIALIZED VIEW {self.q(schema, name)} AS\n"
            f"    SELECT {ident(column.name)} AS bucket, count(*) AS n\n      FROM {self.qt(table)}\n"
            f"  GROUP BY 1\n{'WITH DATA' if with_data else 'WITH NO DATA'}",
            f"CREATE UNIQUE INDEX {ident(name + '_bucket')} ON {self.q(schema, name)} (bucket)",
        ]
        self.m.matviews.append((schema, name, with_data))
        return Draft(
            f"matview_{name}",
            statements,
            down=f"DROP MATERIALIZED VIEW IF EXISTS {self.q(schema, name, qualify=True)};\n",
        )

    def refresh_matview(self) -> Draft:
        if not self.m.matviews:
            return self.create_matview()
        index = self.rng.randrange(len(self.m.matviews))
        schema, name, populated = self.m.matviews[index]
        conc = " CONCURRENTLY" if populated and self.rng.random() < 0.5 else ""
        self.m.matviews[index] = (schema, name, True)
        return Draft(f"refresh_{name}", [f"REFRESH MATERIALIZED VIEW{conc} {self.q(schema, name)}"])

    def do_block(self) -> Draft:
        tables = self.m.plain_tables()
        roll = self.rng.random()
        tag = self.rng.choice(["$$", "$do$", "$block$", "$migration$"])
        if tables and roll < 0.4:
            table = self.rng.choice(tables)
            column = f"flag_{self.m.next_id()}"
            body = (
                "BEGIN\n"
                "    -- idempotent: re-running this file must be harmless; really.\n"
                "    IF NOT EXISTS (\n        SELECT 1 FROM information_schema.columns\n"
                f"         WHERE table_schema = {literal(table.schema)} AND table_name = {literal(table.name)}\n"
                f"           AND column_name = {literal(column)}) THEN\n"
                f"        EXECUTE 'ALTER TABLE {self.qt(table, qualify=True).replace(chr(39), chr(39) * 2)}"
                f" ADD COLUMN {column} boolean NOT NULL DEFAULT false';\n"
                "    END IF;\nEND"
            )
            table.columns.append(Column(column, "boolean", BOOL, nullable=False, has_default=True))
            return Draft(f"add_{column}", [f"DO {tag}\n{body}\n{tag}"])
        if roll < 0.6:
            role = f"app_service_{self.m.next_id()}"
            body = (
                "BEGIN\n"
                f"    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = {literal(role)}) THEN\n"
                f"        CREATE ROLE {role} NOLOGIN;\n"
                "    END IF;\nEND"
            )
            return Draft(f"role_{role}", [f"DO {tag}\n{body}\n{tag}", f"GRANT app_reader TO {role}"])
        if tables and roll < 0.8:
            table = self.rng.choice([*tables])
            inner = "$inner$" if tag != "$inner$" else "$x$"
            if tag == "$$":
                inner = "$c$"
            body = (
                "DECLARE\n    r record;\nBEGIN\n"
                f"    FOR r IN SELECT 1 AS n FROM pg_catalog.pg_class WHERE relname = {literal(table.name)} LOOP\n"
                f"        EXECUTE format({inner}COMMENT ON TABLE %s IS 'touched; by a DO block'{inner}, "
                f"{literal(self.qt(table, qualify=True))});\n"
                "    END LOOP;\n"
                "    RAISE NOTICE 'done; % rows', 1;\nEND"
            )
            return Draft(f"comment_{slug(table.name)}_from_do", [f"DO {tag}\n{body}\n{tag}"])
        schema = self.pick_schema()
        name = f"settings_{self.m.next_id()}"
        table = Table(
            schema,
            name,
            [Column("key", "text", TEXT, pinned=True), Column("value", "text", TEXT, pinned=True)],
            pk="key",
            pk_family=TEXT,
            fills=False,
        )
        qn = self.q(schema, name, qualify=True)
        body = (
            "BEGIN\n"
            f"    CREATE TABLE IF NOT EXISTS {qn} (key text PRIMARY KEY, value text NOT NULL);\n"
            "    FOR i IN 1..20 LOOP\n"
            f"        INSERT INTO {qn} VALUES ('k' || i, 'v;' || i || '''s') ON CONFLICT (key) DO NOTHING;\n"
            "    END LOOP;\nEND"
        )
        table.rows = 20
        self.m.tables.append(table)
        return Draft(f"seed_{name}", [f"DO LANGUAGE plpgsql {tag}\n{body}\n{tag}"])

    def procedure(self) -> Draft:
        schema = self.pick_schema()
        name = self.fresh(["seed_defaults", "rebuild_counters"])
        qn = self.q(schema, name + "_target", qualify=True)
        table = Table(
            schema,
            name + "_target",
            [Column("n", "integer", INT, pinned=True), Column("label", "text", TEXT, pinned=True)],
            pk=None,
            pk_family=INT,
            fills=False,
            rows=5,
        )
        self.m.tables.append(table)
        statements = [
            f"CREATE TABLE {qn} (n integer NOT NULL, label text)",
            f"CREATE PROCEDURE {self.q(schema, name)}(how_many integer)\nLANGUAGE plpgsql\nAS $proc$\n"
            "BEGIN\n    FOR i IN 1..how_many LOOP\n"
            f"        INSERT INTO {qn} (n, label) VALUES (i, format('item %s; it''s %s', i, '$$'));\n"
            "    END LOOP;\nEND\n$proc$",
            f"CALL {self.q(schema, name)}(5)",
        ]
        self.m.functions.append(Function(schema, name, "integer", procedure=True))
        return Draft(f"procedure_{name}", statements)
