"""The kinds of migration real projects ship, and how often: the generator's menu.

Every kind returns a ``Draft``: the statements of one migration, whether they may be
wrapped in BEGIN ... COMMIT (not when they hold a statement PostgreSQL refuses in a
transaction block, or use an enum label added earlier in the same file), and a
plausible down file. All SQL is ours; the shapes follow what golang-migrate, dbmate,
goose, Supabase and pg_dump users commit. This module adds the access-control kinds
(comments, grants, row-level security, owners) and the weighted list of all kinds.
"""

from __future__ import annotations

from collections.abc import Callable

from .code import CodeKinds
from .objects import BIGINT, TEXT, Column, Table, ident
from .writer import ROLES, Draft, slug

__all__ = ["ROLES", "Draft", "KindWriter"]


class KindWriter(CodeKinds):
    """Writes migrations of every kind for one database; keeps its model current."""

    def cic_mixed(self) -> Draft:
        """CREATE INDEX CONCURRENTLY between statements of other kinds: the file must run one statement at a time."""
        before = self.rng.choice([self.add_columns, self.sql_function, self.plpgsql_function, self.do_block])()
        index = self.create_index(concurrently=True)
        statements = [*before.statements, *index.statements]
        if self.rng.random() < 0.5:
            after = self.rng.choice([self.comments, self.create_view, self.add_enum_value, self.backfill])()
            statements += after.statements
        return Draft(index.description, statements, wrap_ok=False, down=index.down)

    def comments(self) -> Draft:
        tables = self.m.plain_tables()
        if not tables:
            return self.create_table()
        statements = []
        for table in self.rng.sample(tables, min(3, len(tables))):
            statements.append(f"COMMENT ON TABLE {self.qt(table)} IS {self.sql_text(self.text_value())}")
            column = self.rng.choice(table.columns)
            text = self.text_value()
            statements.append(f"COMMENT ON COLUMN {self.qt(table)}.{ident(column.name)} IS {self.sql_text(text)}")
        if self.m.views and self.rng.random() < 0.5:
            schema, name = self.rng.choice(self.m.views)
            statements.append(f"COMMENT ON VIEW {self.q(schema, name)} IS NULL")
        return Draft("document_tables", statements)

    def grants(self) -> Draft:
        tables = self.m.plain_tables()
        if not tables:
            return self.create_table()
        table = self.rng.choice(tables)
        statements = [
            f"GRANT USAGE ON SCHEMA {ident(table.schema)} TO app_reader, app_writer",
            f"GRANT SELECT ON {self.qt(table)} TO app_reader",
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON {self.qt(table)} TO app_writer",
        ]
        roll = self.rng.random()
        if roll < 0.3:
            statements.append(f"GRANT SELECT ON ALL TABLES IN SCHEMA {ident(table.schema)} TO app_reader")
            statements.append(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {ident(table.schema)} TO app_writer")
        elif roll < 0.6:
            statements.append(
                f"ALTER DEFAULT PRIVILEGES IN SCHEMA {ident(table.schema)} GRANT SELECT ON TABLES TO app_reader"
            )
        else:
            column = self.rng.choice(table.columns)
            statements.append(f"GRANT SELECT ({ident(column.name)}) ON {self.qt(table)} TO app_owner")
            statements.append(f"REVOKE DELETE ON {self.qt(table)} FROM app_writer")
        if self.m.functions and self.rng.random() < 0.3:
            function = self.rng.choice(self.m.functions)
            kind = "PROCEDURE" if function.procedure else "FUNCTION"
            signature = f"{self.q(function.schema, function.name)}({function.args})"
            statements.append(f"REVOKE EXECUTE ON {kind} {signature} FROM PUBLIC")
            statements.append(f"GRANT EXECUTE ON {kind} {signature} TO app_writer")
        return Draft(f"grants_on_{slug(table.name)}", statements)

    def rls(self) -> Draft:
        tables = [t for t in self.m.plain_tables() if not t.rls]
        if not tables:
            return self.grants()
        table = self.rng.choice(tables)
        table.rls = True
        policy = (
            f"{self.rng.choice(['readers can see rows', 'writers; own rows', 'tenant isolation'])} {self.m.next_id()}"
        )
        statements = [
            f"ALTER TABLE {self.qt(table)} ENABLE ROW LEVEL SECURITY",
            f"CREATE POLICY {ident(policy)} ON {self.qt(table)}\n"
            "    AS PERMISSIVE FOR SELECT\n    TO app_reader\n    USING (true)",
        ]
        if self.rng.random() < 0.5:
            statements.append(
                f"CREATE POLICY {ident(policy + ' write')} ON {self.qt(table)}"
                " FOR INSERT TO app_writer WITH CHECK (true)"
            )
        if self.rng.random() < 0.3:
            statements.append(f"ALTER TABLE {self.qt(table)} FORCE ROW LEVEL SECURITY")
        return Draft(f"rls_on_{slug(table.name)}", statements)

    def owned_by_role(self) -> Draft:
        schema = self.pick_schema()
        name = self.fresh(["service_jobs", "job_runs"])
        table = Table(
            schema, name, [Column("id", "bigint", BIGINT, pinned=True), Column("note", "text", TEXT)], owner="app_owner"
        )
        statements = [
            f"GRANT USAGE, CREATE ON SCHEMA {ident(schema)} TO app_owner",
            "SET ROLE app_owner",
            f"CREATE TABLE {self.qt(table)} (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, note text)",
            f"CREATE INDEX {ident(name + '_note_idx')} ON {self.qt(table)} (note)",
            "RESET ROLE",
        ]
        self.m.tables.append(table)
        return Draft(f"create_{name}_as_owner", statements)

    def alter_owner(self) -> Draft:
        # Foreign keys are checked as the owner, who has no rights on other schemas: only lone tables.
        referenced = {id(c.foreign) for t in self.m.tables for c in t.columns if c.foreign is not None}
        tables = [
            t
            for t in self.m.plain_tables()
            if t.owner is None and id(t) not in referenced and not any(c.foreign for c in t.columns)
        ]
        if not tables:
            return self.create_table()
        table = self.rng.choice(tables)
        table.owner = "app_owner"
        return Draft(f"owner_of_{slug(table.name)}", [f"ALTER TABLE {self.qt(table)} OWNER TO app_owner"])

    def kinds(self) -> list[tuple[Callable[[], Draft], int]]:
        """Every kind with its weight, roughly how often real sets ship it."""
        return [
            (self.create_table, 14),
            (self.add_columns, 8),
            (self.create_index, 7),
            (self.cic_alone, 4),
            (self.cic_mixed, 3),
            (self.unique_index_then_constraint, 1),
            (self.drop_index, 2),
            (self.create_enum, 3),
            (self.add_enum_value, 4),
            (self.plpgsql_function, 5),
            (self.sql_function, 3),
            (self.updated_at_trigger, 4),
            (self.audit_trigger, 2),
            (self.create_view, 4),
            (self.create_matview, 2),
            (self.refresh_matview, 2),
            (self.do_block, 5),
            (self.backfill, 8),
            (self.update_backfill, 3),
            (self.comments, 3),
            (self.grants, 3),
            (self.rls, 2),
            (self.partitioned_table, 1),
            (self.add_partition, 2),
            (self.fill_partitioned, 2),
            (self.sequence, 2),
            (self.alter_sequence, 1),
            (self.alter_table, 5),
            (self.vacuum, 1),
            (self.procedure, 1),
            (self.domain, 2),
            (self.owned_by_role, 1),
            (self.alter_owner, 1),
            (self.create_schema, 1),
            (self.create_extension, 1),
            (self.dumped_table, 2),
        ]
