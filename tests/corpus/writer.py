"""The common ground of every kind of migration: the model, names, literals and values.

``WriterBase`` holds the database model being written and the file's search_path, and
knows how to spell a name (qualified only when the path would not find it), a string
literal (in the spellings real files use), a deterministic backfill value, and a
column definition. The kinds themselves live in ``tables``, ``data``, ``code`` and
``kinds``, each a subclass of the one before.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .objects import (
    ARRAY,
    BIGINT,
    BOOL,
    CITEXT,
    DATE,
    ENUM,
    INT,
    JSON,
    NUMERIC,
    TEXT,
    TIMESTAMP,
    UUID,
    Column,
    DatabaseModel,
    Table,
    ident,
    literal,
)

__all__ = ["ROLES", "SAFE_TEXT", "TABLE_WORDS", "Draft", "WriterBase", "slug"]

TABLE_WORDS = [
    "accounts",
    "users",
    "teams",
    "memberships",
    "projects",
    "issues",
    "comments",
    "labels",
    "orders",
    "line_items",
    "invoices",
    "payments",
    "subscriptions",
    "plans",
    "webhooks",
    "deliveries",
    "events",
    "sessions",
    "api_keys",
    "notifications",
    "attachments",
    "releases",
    "deployments",
    "builds",
    "café_menus",
    "größen",
    "заказы",
    "états",
    "audit_trail",
    "feature_flags",
    "tenants",
    "regions",
]
QUOTED_TABLE_WORDS = [
    "Order Lines",
    "semi;colon",
    'it"s',
    "Kundenübersicht",
    "MixedCase",
]
COLUMN_WORDS = [
    "title",
    "slug",
    "body",
    "summary",
    "email",
    "handle",
    "note",
    "position",
    "quantity",
    "amount",
    "price",
    "score",
    "is_active",
    "archived",
    "settings",
    "metadata",
    "tags",
    "due_on",
    "published_at",
    "external_ref",
    "locale",
    "timezone",
    "priority",
    "weight",
    "description",
    "straße",
    "prénom",
]
# Text that breaks naive statement splitters: semicolons, dollar tags, comment markers, quotes.
SAFE_TEXT = [
    "it's; fine",
    "semi;colon",
    "$$ not a tag $$",
    "-- not a comment",
    "/* not a comment */",
    "café ☕ naïve",
    "emoji 🚀; ok",
    "back\\slash",
    'double "quotes"',
    "tab\there",
    "$fn$ also not",
]
ROLES = ("app_reader", "app_writer", "app_owner")


@dataclass
class Draft:
    """One migration before styling: description, statements, and how it may be run."""

    description: str
    statements: list[str]
    wrap_ok: bool = True
    down: str | None = None
    pg_dump_header: bool = False


BACKFILL_VALUES = {
    INT: "({var} % 97)::integer",
    BIGINT: "{var}::bigint * 1000",
    NUMERIC: "round(({var} * 1.25)::numeric, 2)",
    BOOL: "{var} % 2 = 0",
    JSON: "jsonb_build_object('n', {var}, 'tag', 'x;y', 'quote', 'it''s')",
    ARRAY: "ARRAY['a', 'b;' || {var}::text]",
    TIMESTAMP: "timestamptz '2024-01-01 00:00:00+00' + {var} * interval '1 minute'",
    DATE: "date '2024-01-01' + ({var} % 80)::integer",
    UUID: "md5({var}::text)::uuid",
}
"""A deterministic backfill expression of the series variable ``{var}``, by column family."""

PLAIN_COLUMNS = (
    (0.3, "text", TEXT, True),
    (0.42, "integer", INT, True),
    (0.5, "numeric(12,2)", NUMERIC, False),
    (0.58, "boolean", BOOL, True),
    (0.66, "jsonb", JSON, True),
    (0.72, "text[]", ARRAY, False),
    (0.8, "timestamptz", TIMESTAMP, False),
    (0.86, "date", DATE, False),
)
"""New columns of a plain type: (roll below which it is chosen, type, family, has a default)."""


class WriterBase:
    """Names, literals and values for one database; every kind builds on these."""

    def __init__(self, model: DatabaseModel, rng: random.Random, *, server_major: int | None = None) -> None:
        self.m = model
        self.rng = rng
        self.server_major = server_major
        self.path: tuple[str, ...] = ("public",)

    def server_has(self, major: int) -> bool:
        """Whether the target server (None: the newest) has syntax that came in ``major``."""
        return self.server_major is None or self.server_major >= major

    # -- names and values --------------------------------------------------------------

    def q(self, schema: str, name: str, *, qualify: bool = False) -> str:
        """A (schema-)qualified name, unqualified when the file's search_path finds it."""
        if not qualify and self.path and schema == self.path[0]:
            return ident(name)
        return f"{ident(schema)}.{ident(name)}"

    def qt(self, table: Table, *, qualify: bool = False) -> str:
        return self.q(table.schema, table.name, qualify=qualify)

    def fresh(self, words: list[str]) -> str:
        return f"{self.rng.choice(words)}_{self.m.next_id()}"

    def pub(self, name: str) -> str:
        """An object an extension put in ``public``, found whatever the file's search_path."""
        return name if "public" in self.path else f"public.{name}"

    def text_value(self) -> str:
        return self.rng.choice(SAFE_TEXT)

    def sql_text(self, text: str) -> str:
        """A literal for ``text`` in one of the spellings real files use."""
        style = self.rng.random()
        if "\\" not in text and "\t" not in text and style < 0.5:
            return literal(text)
        if "$$" not in text and style < 0.7:
            return f"$${text}$$" if "$" not in text else f"$q$ {text} $q$"
        escaped = text.replace("\\", "\\\\").replace("'", "\\'").replace("\t", "\\t")
        return f"E'{escaped}'"

    def value_expr(self, column: Column, var: str) -> str:
        """A deterministic expression of the series variable ``var`` for a backfill."""
        family = column.family
        if family in (TEXT, CITEXT):
            prefix = self.rng.choice(["row ", "it''s; ", "café ☕ ", "semi;colon ", "$$ "])
            return f"'{prefix}' || {var}::text"
        if family == ENUM and column.enum is not None:
            labels = column.enum.labels
            return f"({literal(labels[0])})::{self.q(column.enum.schema, column.enum.name)}"
        return BACKFILL_VALUES[family].format(var=var)

    # -- building blocks ---------------------------------------------------------------

    def pick_schema(self) -> str:
        return self.rng.choice(self.m.schemas)

    def new_columns(self, count: int) -> list[Column]:
        columns: list[Column] = []
        used: set[str] = set()
        for _ in range(count):
            word = self.rng.choice(COLUMN_WORDS)
            if word in used:
                continue
            used.add(word)
            roll = self.rng.random()
            plain = next((kind for kind in PLAIN_COLUMNS if roll < kind[0]), None)
            if plain is not None:
                _, sql_type, family, has_default = plain
                columns.append(Column(word, sql_type, family, has_default=has_default))
            elif roll < 0.92 and self.m.enums:
                enum = self.rng.choice(self.m.enums)
                columns.append(Column(word, self.q(enum.schema, enum.name), ENUM, enum=enum, has_default=True))
            elif "citext" in self.m.extensions:
                columns.append(Column(word, self.pub("citext"), CITEXT))
            else:
                columns.append(Column(word, "bigint", BIGINT))
        return columns

    def column_sql(self, column: Column) -> str:
        parts = [ident(column.name), column.sql_type]
        if column.has_default:
            defaults = {
                TEXT: "DEFAULT ''",
                INT: "DEFAULT 0",
                BOOL: "DEFAULT false",
                JSON: "DEFAULT '{}'::jsonb",
            }
            if column.family == ENUM and column.enum is not None:
                parts.append(f"DEFAULT {literal(column.enum.labels[0])}")
            elif column.family in defaults:
                parts.append(defaults[column.family])
            if column.family in (TEXT, INT, BOOL) and self.rng.random() < 0.6:
                column.nullable = False
                parts.append("NOT NULL")
        if column.family == INT and self.rng.random() < 0.4:
            parts.append(f"CHECK ({ident(column.name)} >= 0)")
        return " ".join(parts)

    # -- kinds -------------------------------------------------------------------------


def slug(name: str) -> str:
    """A file-name-safe form of an object name (keeps unicode letters)."""
    out = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in name.lower())
    return out.strip("_") or "x"
