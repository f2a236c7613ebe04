"""A file's own word on how it runs: ``-- dbmigrate: transaction=false`` (or ``=true``).

Without a directive the engine decides: one transaction, or statement by statement when
the file holds a statement PostgreSQL refuses inside a transaction block, and at run
time it falls back to statement by statement when the server says the statements cannot
share one. A directive takes that decision away from the engine:

- ``transaction=false``: statement by statement in autocommit, always (as dbmate's
  ``transaction:false``), recorded as it goes like any autocommit file;
- ``transaction=true``: one transaction or nothing: a statement that cannot run in one
  refuses the file before it runs, and the runtime fallback never applies.

Directives are comment lines before the file's first statement. One anywhere else, a
misspelt one, and another tool's directive are refused: ignoring them would run the file
in a way its author did not ask for.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NoReturn

from .errors import UnsupportedSqlError
from .sendable import line_of

__all__ = ["NO_DIRECTIVE", "Directive", "read_directive"]

# ``-- dbmigrate: ...``, and the same without its colon (a comment that merely names the tool is not one).
ANY_DIRECTIVE = re.compile(
    r"^[ \t]*--[ \t]*dbmigrate[ \t]*(?P<rest>:.*|[a-z_]+[ \t]*[=:].*)$", re.MULTILINE | re.IGNORECASE
)
SETTING = re.compile(r"^(?P<key>[a-z_]+)[ \t]*=[ \t]*(?P<value>[a-z]+)$", re.IGNORECASE)
# dbmate's section marker: ``-- migrate:up transaction:false``; in a file of ours it would be a silent comment.
DBMATE = re.compile(r"^[ \t]*--[ \t]*migrate:(?:up|down)\b[^\n]*\btransaction:\s*(?P<value>\w+)", re.MULTILINE)
VALUES = {"true": True, "false": False}
FORMS = (
    "write `-- dbmigrate: transaction=false` (statement by statement, without a transaction) or "
    "`-- dbmigrate: transaction=true` (one transaction, never split) on a line of its own before the first statement"
)


@dataclass(frozen=True)
class Directive:
    """What the file said: ``transaction`` True/False, or None when it said nothing; ``line`` where."""

    transaction: bool | None = None
    line: int | None = None

    def describe(self) -> str:
        return f"transaction={str(self.transaction).lower()} (line {self.line})"


NO_DIRECTIVE = Directive()


def read_directive(sql: str, spans: Sequence[tuple[int, int]], *, database: str, file: str) -> Directive:
    """The file's directive; ``spans`` are its statements' (start, end) offsets in ``sql``.

    A directive line inside a statement (a function body's comment) is SQL, not a directive.
    """
    head_end = spans[0][0] if spans else len(sql)
    foreign = DBMATE.search(sql, 0, head_end)
    if foreign:
        _refuse(
            sql,
            foreign.start(),
            f"`{foreign.group(0).strip()}` is dbmate's directive, which this tool does not read",
            database=database,
            file=file,
        )
    found = NO_DIRECTIVE
    for match in ANY_DIRECTIVE.finditer(sql):
        start = match.start()
        if any(begin <= start < end for begin, end in spans):
            continue
        if start > head_end:
            _refuse(sql, start, "a directive after the first statement is not read", database=database, file=file)
        value = _value(match.group("rest"))
        if value is None:
            _refuse(sql, start, f"unknown directive `{match.group(0).strip()}`", database=database, file=file)
        if found.line is not None:
            _refuse(sql, start, f"a second directive (the first is on line {found.line})", database=database, file=file)
        found = Directive(value, line_of(sql, start))
    return found


def _value(rest: str) -> bool | None:
    """``: transaction=false`` -> False; None for anything else."""
    if not rest.startswith(":"):
        return None
    setting = SETTING.match(rest[1:].strip())
    if not setting or setting.group("key").lower() != "transaction":
        return None
    return VALUES.get(setting.group("value").lower())


def _refuse(sql: str, offset: int, what: str, *, database: str, file: str) -> NoReturn:
    raise UnsupportedSqlError(
        what,
        database=database,
        file=file,
        line=line_of(sql, offset),
        hint=f"{FORMS}; nothing of this file was run",
    )
