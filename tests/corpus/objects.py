"""What a generated database holds so far, and how to write names and literals for it.

The generator keeps this model up to date file by file so that every later migration
only refers to objects that exist when psql runs it. Object names carry a counter
suffix, so a name is unique across schemas and an unqualified name always resolves to
the one object once its schema is on the search_path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["Column", "DatabaseModel", "EnumType", "Function", "Table", "ident", "literal"]

PLAIN_IDENTIFIER = re.compile(r"^[a-z_\u00c0-\uffff][a-z0-9_$\u00c0-\uffff]*$")
# Key words that cannot be column names unquoted; the generator only uses them quoted.
RESERVED = frozenset({"order", "desc", "user", "group", "limit", "offset", "check", "table", "select"})

# Value families of columns: what a backfill writes and what an index may use.
TEXT, INT, BIGINT, NUMERIC, BOOL, JSON, ARRAY, TIMESTAMP, DATE, UUID, ENUM, CITEXT = (
    "text",
    "int",
    "bigint",
    "numeric",
    "bool",
    "json",
    "array",
    "timestamp",
    "date",
    "uuid",
    "enum",
    "citext",
)


def ident(name: str) -> str:
    """An identifier as SQL text, quoted only when it has to be."""
    if PLAIN_IDENTIFIER.match(name) and name not in RESERVED:
        return name
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    """A standard single-quoted string literal."""
    return "'" + text.replace("'", "''") + "'"


@dataclass
class EnumType:
    """An enum type and its labels, in order."""

    schema: str
    name: str
    labels: list[str]


@dataclass
class Column:
    """A column; ``pinned`` once something (view, index, trigger, generated column) uses it."""

    name: str
    sql_type: str
    family: str
    nullable: bool = True
    pinned: bool = False
    enum: EnumType | None = None
    has_default: bool = False
    generated: bool = False
    unique: bool = False
    foreign: Table | None = None


@dataclass
class Table:
    """A table (plain or partitioned) and what later migrations may do with it.

    ``fills`` is whether generic backfills may write rows: false for the audit log (its
    rows come from triggers) and for tables a kind fills itself.
    """

    schema: str
    name: str
    columns: list[Column]
    pk: str | None = "id"
    pk_family: str = BIGINT
    rows: int = 0
    partition_key: str | None = None
    partition_months: int = 0
    owner: str | None = None
    audited: bool = False
    has_updated_at_trigger: bool = False
    rls: bool = False
    fills: bool = True

    def free_columns(self) -> list[Column]:
        """Columns nothing depends on: safe to rename, retype or drop."""
        return [c for c in self.columns if not c.pinned and c.name not in (self.pk, self.partition_key)]


@dataclass
class Function:
    """A function or procedure: its qualified signature for GRANT and COMMENT ON."""

    schema: str
    name: str
    args: str
    procedure: bool = False


@dataclass
class DatabaseModel:
    """Everything a database holds after the files written so far."""

    name: str
    schemas: list[str] = field(default_factory=lambda: ["public"])
    tables: list[Table] = field(default_factory=list)
    enums: list[EnumType] = field(default_factory=list)
    functions: list[Function] = field(default_factory=list)
    views: list[tuple[str, str]] = field(default_factory=list)
    matviews: list[tuple[str, str, bool]] = field(default_factory=list)
    sequences: list[tuple[str, str]] = field(default_factory=list)
    indexes: list[tuple[str, str]] = field(default_factory=list)
    extensions: set[str] = field(default_factory=set)
    updated_at_functions: dict[str, str] = field(default_factory=dict)
    audit_table: Table | None = None
    counter: int = 0

    def next_id(self) -> int:
        self.counter += 1
        return self.counter

    def fillable(self) -> list[Table]:
        return [t for t in self.tables if t.fills and t.partition_key is None]

    def plain_tables(self) -> list[Table]:
        return [t for t in self.tables if t.partition_key is None]
