"""Reading a migration file with PostgreSQL's own parser (pglast).

Decides how a file runs: as one transaction (the default), or statement by statement
in autocommit when it holds a statement PostgreSQL refuses inside a transaction block
(CREATE DATABASE, CREATE INDEX CONCURRENTLY, VACUUM, ...). Finds the line of every
statement so that server errors point into the file. Refuses, before anything runs,
what is not plain SQL: psql meta-commands, COPY ... FROM stdin, and transaction
control other than one BEGIN ... COMMIT around the whole file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from .directive import NO_DIRECTIVE, Directive, read_directive
from .errors import SqlError, UnsupportedSqlError
from .plpgsql import do_block_effects
from .sendable import (
    conforming_settings,
    line_of,
    refuse_encoding_change,
    refuse_unsendable,
    rewrite_legacy_strings,
    set_config_names,
)

__all__ = ["Mode", "Script", "SessionEffect", "Statement", "analyze", "line_of"]

# Characters parsed at a time: a file is split (by the scanner, cheaply) into statements
# and parsed a chunk of statements at a time, so the parser's JSON of a whole file is
# never held at once (a 10 MB file needed ~800 MB that way; see bench/RESULTS.md).
CHUNK_CHARS = 256 * 1024
# The largest statement read: the parse tree of one statement cannot be had in parts.
MAX_STATEMENT_CHARS = 1024 * 1024
NON_ASCII = re.compile(r"[^\x00-\x7f]")


class Mode(Enum):
    """How a file is run."""

    TRANSACTION = "transaction"
    AUTOCOMMIT = "autocommit"


class SessionEffect(Enum):
    """What a file leaves in its session that the next file must not see.

    Each file should start as in a fresh session (as with one psql per file).
    DISCARD clears settings, temporary tables and prepared statements; RECONNECT is
    for what DISCARD ALL cannot undo: custom settings (``app.tenant``) stay defined,
    and ALTER DATABASE/ROLE ... SET only reaches new sessions.
    """

    NONE = "none"
    DISCARD = "discard"
    RECONNECT = "reconnect"


@dataclass(frozen=True, slots=True)
class Statement:
    """One statement of a file: its exact text, first line, and parse-tree node type.

    ``tree`` is kept only when ``analyze(..., keep_trees=True)`` (the linter), and parsed
    again from ``text`` when asked for otherwise: a file of many statements would
    otherwise hold every statement's parse tree.
    """

    source: str = field(compare=False, repr=False)
    """The whole text the statement is part of (shared by every statement of a file, not copied)."""
    length: int
    line: int
    offset: int
    node: str
    transactional: bool
    transaction_kind: str | None = None
    session_effect: SessionEffect = SessionEffect.NONE
    changes_role: bool = False
    adds_enum_value: bool = False
    set_configs: tuple[str, ...] = ()
    """The setting each set_config(...) call in the statement names ('?' when computed)."""
    kept_tree: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    """The statement's parse tree (pglast JSON), when kept; ``tree`` parses it again otherwise."""

    @property
    def text(self) -> str:
        """The statement's exact text, without the comments and blanks around it."""
        return self.source[self.offset : self.offset + self.length]

    @property
    def tree(self) -> dict[str, Any]:
        """The statement's parse tree (pglast JSON of its node)."""
        return self.kept_tree if self.kept_tree is not None else _parse_one(self.text)

    @property
    def relations(self) -> tuple[str, ...]:
        """Tables and views the statement names (``schema.name`` where qualified)."""
        return tuple(sorted(_relations(self.tree)))


@dataclass(frozen=True)
class Script:
    """A parsed file and how to run it.

    ``body`` is the text sent in TRANSACTION mode: the file itself, with a wrapping
    BEGIN/COMMIT blanked out so that character offsets (and so line numbers) still
    match the file. ``session_effect`` says how to clean the session after the file;
    ``changes_role`` that the file runs SET ROLE (the history row is written as the
    session user). ``reason`` says why a file runs in autocommit. ``wrapped``: the file
    wraps itself in BEGIN ... COMMIT, a promise of one transaction that is kept or the
    file refused. ``directive``: what its ``-- dbmigrate: transaction=...`` line said.
    A file that said how it runs (``declared``) never falls back to another mode.
    """

    statements: tuple[Statement, ...]
    mode: Mode
    body: str
    session_effect: SessionEffect = SessionEffect.NONE
    changes_role: bool = False
    reason: str | None = None
    wrapped: bool = False
    directive: Directive = NO_DIRECTIVE

    @property
    def is_empty(self) -> bool:
        return not self.statements

    @property
    def declared(self) -> bool:
        """The file said how it runs (a directive, or its own BEGIN ... COMMIT): no runtime fallback."""
        return self.wrapped or self.directive.transaction is not None

    @property
    def promise(self) -> str:
        """How a file that ``declared`` one transaction asked for it, as its errors say."""
        return asked_for_one(self.directive)

    def to_dict(self) -> dict[str, Any]:
        """How the file will run, for plan: its mode, whether the file said so, and why."""
        return {"mode": self.mode.value, "declared": self.declared, "reason": self.reason}


def asked_for_one(directive: Directive) -> str:
    return f"says {directive.describe()}" if directive.transaction else "wraps itself in BEGIN ... COMMIT"


# Statements PostgreSQL refuses inside a transaction block, keyed by parse-tree node.
ALWAYS_OUTSIDE_TRANSACTION = {
    "CreatedbStmt": "CREATE DATABASE",
    "DropdbStmt": "DROP DATABASE",
    "CreateTableSpaceStmt": "CREATE TABLESPACE",
    "DropTableSpaceStmt": "DROP TABLESPACE",
    "AlterSystemStmt": "ALTER SYSTEM",
    "CreateSubscriptionStmt": "CREATE SUBSCRIPTION",
    "AlterSubscriptionStmt": "ALTER SUBSCRIPTION",
    "DropSubscriptionStmt": "DROP SUBSCRIPTION",
    "CallStmt": "CALL",
    "DoStmt": "a DO block that commits (or calls a procedure)",
}
ALLOWED_TRANSACTION_CONTROL = {
    "TRANS_STMT_SAVEPOINT",
    "TRANS_STMT_RELEASE",
    "TRANS_STMT_ROLLBACK_TO",
}
BEGIN_KINDS = {"TRANS_STMT_BEGIN", "TRANS_STMT_START"}
SESSION_STATE_NODES = {"PrepareStmt", "ListenStmt", "DeclareCursorStmt", "LoadStmt"}
NEW_SESSION_NODES = {"AlterDatabaseSetStmt", "AlterRoleSetStmt"}
# Only to explain a file the parser has already refused: what psql alone understands.
META_COMMAND = re.compile(r"^[ \t]*(\\[A-Za-z!?]+)", re.MULTILINE)
COPY_FROM_STDIN = re.compile(r"\bcopy\b[^;]*?\bfrom\s+stdin\b", re.IGNORECASE)


def analyze(sql: str, *, database: str, file: str, keep_trees: bool = False) -> Script:
    """Parse a file; raise SqlError (syntax) or UnsupportedSqlError naming the line.

    The statements (and ``body``) are the text the server will run: for a file that
    turns standard_conforming_strings off, that is the file with its plain strings
    written as E'' strings (see legacy_strings), so the parser and the server agree.
    ``keep_trees`` keeps every statement's parse tree (the linter); otherwise a tree is
    parsed again from the statement's text when asked for, so a file of many
    statements never holds them all.
    """
    refuse_unsendable(sql, database=database, file=file)
    sql, statements = _read(sql, database=database, file=file, keep_trees=keep_trees)
    for statement in statements:
        refuse_encoding_change(statement, database=database, file=file)
    spans = [(s.offset, s.offset + s.length) for s in statements]
    directive = read_directive(sql, spans, database=database, file=file)
    body, statements, wrapped = _unwrap_transaction(sql, statements, database=database, file=file)
    one_transaction = wrapped or directive.transaction is True

    outside = [s for s in statements if not s.transactional and not (wrapped and _may_call_in_wrapper(s))]
    reason = None
    if wrapped and directive.transaction is False:
        _refuse_contradiction(directive, database=database, file=file)
    if outside and one_transaction:
        _refuse_broken_promise(outside[0], directive, database=database, file=file)
    if directive.transaction is False:
        reason = f"the file says {directive.describe()}"
    elif outside:
        reason = f"{_describe(outside[0])} (line {outside[0].line}) cannot run inside a transaction block"
    elif any(s.adds_enum_value for s in statements[:-1]) and not one_transaction:
        # A new enum value cannot be used in the transaction that added it. A file
        # that asked for one transaction (BEGIN ... COMMIT, transaction=true) gets it.
        reason = "a new enum value is added and may be used by the statements after it"
    effects = {s.session_effect for s in statements}
    effect = max(effects, key=_EFFECT_ORDER.index, default=SessionEffect.NONE)
    return Script(
        statements=tuple(statements),
        mode=Mode.AUTOCOMMIT if reason else Mode.TRANSACTION,
        body=body,
        session_effect=effect,
        changes_role=any(s.changes_role for s in statements),
        reason=reason,
        wrapped=wrapped,
        directive=directive,
    )


def _read(sql: str, *, database: str, file: str, keep_trees: bool) -> tuple[str, list[Statement]]:
    """The text the server will run and its statements; SqlError/UnsupportedSqlError if none."""
    from pglast import parser as pg_parser  # noqa: PLC0415 (70 ms: only when a file is read)

    try:
        statements = _statements(sql, database=database, file=file, keep_trees=keep_trees)
    except pg_parser.ParseError as exc:
        text, parsed = rewrite_legacy_strings(sql, parsed=False, database=database, file=file)
        if not parsed:
            _refuse_psql_only_syntax(sql, database=database, file=file)
            raise _syntax_error(exc, sql, database=database, file=file) from exc
        return text, _statements(text, database=database, file=file, keep_trees=keep_trees)
    sets = {"stmts": [{"stmt": {s.node: s.tree}} for s in statements if s.node == "VariableSetStmt"]}
    if not any(value is not True for value in conforming_settings(sets)):  # "= on" needs nothing
        return sql, statements
    text, parsed = rewrite_legacy_strings(sql, parsed=True, database=database, file=file)
    if text == sql:
        return sql, statements
    try:
        return text, _statements(text, database=database, file=file, keep_trees=keep_trees)
    except pg_parser.ParseError as exc:
        raise _syntax_error(exc, text, database=database, file=file) from exc


def _statements(sql: str, *, database: str, file: str, keep_trees: bool) -> list[Statement]:
    """Every statement of ``sql``, parsed a chunk at a time; pglast's ParseError on a syntax error."""
    positions = _Positions(sql)
    try:
        return [_statement(positions, raw, keep_trees, calls) for raw, calls in _raw_statements(sql, positions)]
    except _StatementTooBigError as big:
        raise SqlError(
            f"a statement of {big.size:,} characters is over the limit of {MAX_STATEMENT_CHARS:,} "
            f"({MAX_STATEMENT_CHARS // 1024 // 1024} MiB) for one statement",
            database=database,
            file=file,
            line=big.line,
            hint="split it: e.g. INSERT ... VALUES in batches of a few thousand rows, each its own "
            "statement (a file may hold many); nothing of this file was run",
        ) from None


def _syntax_error(exc: Exception, sql: str, *, database: str, file: str) -> SqlError:
    message, index = exc.args[0], exc.args[1] if len(exc.args) > 1 else None
    return SqlError(
        f"syntax error: {message}",
        database=database,
        file=file,
        line=line_of(sql, index) if isinstance(index, int) else None,
        hint="fix the SQL; nothing of this file was run",
    )


def _may_call_in_wrapper(statement: Statement) -> bool:
    """A procedure call that may commit: inside a file's own BEGIN ... COMMIT it runs in that
    transaction, as psql runs it (if the procedure commits, the server refuses and all rolls back)."""
    if statement.node == "CallStmt":
        return True
    return statement.node == "DoStmt" and not do_block_effects(statement.tree).commits


def _refuse_broken_promise(statement: Statement, directive: Directive, *, database: str, file: str) -> None:
    """The file asked for one transaction (BEGIN ... COMMIT or transaction=true) and holds a statement that cannot."""
    asks = asked_for_one(directive)
    undo = "remove the directive" if directive.transaction else "remove the file's BEGIN/COMMIT"
    raise UnsupportedSqlError(
        f"the file {asks} but {_describe(statement)} (line {statement.line}) cannot run inside a transaction "
        "block: the file cannot be applied as the one transaction it asks for",
        database=database,
        file=file,
        line=statement.line,
        statement=statement.text[:200],
        hint="move that statement into a file of its own (it runs in autocommit there), "
        f"or {undo} to run it statement by statement; nothing of this file was run",
    )


def _refuse_contradiction(directive: Directive, *, database: str, file: str) -> None:
    raise UnsupportedSqlError(
        f"the file says {directive.describe()} but wraps itself in BEGIN ... COMMIT, which asks for one transaction",
        database=database,
        file=file,
        line=directive.line,
        hint="keep one of the two: remove the directive (one transaction) or the BEGIN/COMMIT (statement by "
        "statement); nothing of this file was run",
    )


_EFFECT_ORDER = [SessionEffect.NONE, SessionEffect.DISCARD, SessionEffect.RECONNECT]


class _StatementTooBigError(Exception):
    def __init__(self, size: int, line: int) -> None:
        super().__init__(size, line)
        self.size, self.line = size, line


class _Positions:
    """The parser's byte offsets (into the chunk being read) to character offsets and lines of the file."""

    def __init__(self, sql: str) -> None:
        self.sql = sql
        self.encoded = b""
        self.byte = self.char = 0
        self.line = 1
        self.line_char = 0

    def start_chunk(self, char_start: int, text: str) -> None:
        """The statements that follow are those of ``text``, found at ``char_start`` in the file."""
        self.encoded = text.encode("utf-8")
        self.byte, self.char = 0, char_start

    def char_of(self, byte: int) -> int:
        self.char += len(self.encoded[self.byte : byte].decode("utf-8"))
        self.byte = byte
        return self.char

    def line_of(self, char: int) -> int:
        self.line += self.sql.count("\n", self.line_char, char)
        self.line_char = char
        return self.line


def _raw_statements(sql: str, positions: _Positions) -> Iterator[tuple[dict[str, Any], bool]]:
    """The parser's statements of a file, a chunk at a time (offsets into the chunk ``positions`` holds),
    each with whether its chunk may call set_config (its tree names it: searched only then).

    The scanner gives candidate statement boundaries; a chunk of statements ends at
    one and is parsed on its own. The scanner splits inside a BEGIN ATOMIC body (its
    inner semicolons): such a chunk does not parse and is grown until it does, so
    every chunk the parser accepts ends where a statement ends. A chunk that cannot
    grow further raises the parser's error, its position counted from the file's start.
    A statement over MAX_STATEMENT_CHARS is refused before it is parsed.
    """
    from pglast import parser as pg_parser  # noqa: PLC0415

    # pglast maps the scanner's byte offsets to characters in time quadratic in the
    # non-ASCII text (2 MB of accented notes: 35 s); one ASCII letter per other
    # character keeps every offset and every token boundary (PostgreSQL reads
    # non-ASCII characters as identifier characters).
    scanned = sql if sql.isascii() else NON_ASCII.sub("x", sql)
    try:
        pieces = pg_parser.split(scanned, with_parser=False, only_slices=True)
    except pg_parser.ParseError:  # the scanner's own error (an unterminated string): one chunk says where
        pieces = ()
    _refuse_huge_statements(sql, pieces)
    ends = [piece.stop for piece in pieces]
    del pieces, scanned  # a slice object per statement, a copy of the file: not kept while parsing
    start, first = 0, 0  # the chunk's first character, and the index in ends of its first statement
    while True:
        last = first
        while last < len(ends) - 1 and ends[last] - start < CHUNK_CHARS:
            last += 1
        while True:
            end = ends[last] if last < len(ends) - 1 else len(sql)
            try:
                parsed = pg_parser.parse_sql_json(sql[start:end])
                break
            except pg_parser.ParseError as exc:
                if end == len(sql):
                    message, *index = exc.args
                    raise pg_parser.ParseError(message, *(i + start for i in index if isinstance(i, int))) from exc
                last = min(len(ends) - 1, last + (last - first) + 1)  # grow: twice the statements
        positions.start_chunk(start, sql[start:end])
        # Every name in the tree is a JSON string as the parser decoded it (quotes, U& escapes):
        # a call of set_config, qualified or not, puts this string in the text.
        calls_set_config = '"set_config"' in parsed
        for raw in json.loads(parsed).get("stmts", []):
            raw["stmt_len"] = raw.get("stmt_len") or len(positions.encoded) - raw.get("stmt_location", 0)
            yield raw, calls_set_config
        if end == len(sql):
            return
        start, first = end, last + 1


def _refuse_huge_statements(sql: str, pieces: Sequence[slice]) -> None:
    """SqlError naming the first statement over MAX_STATEMENT_CHARS: its parse tree alone would need
    about 70 times its size in memory (a 10 MB INSERT ... VALUES: 690 MB)."""
    for piece in pieces:
        size = (piece.stop or 0) - (piece.start or 0)
        if size > MAX_STATEMENT_CHARS:
            raise _StatementTooBigError(size, line_of(sql, piece.start or 0))


def _parse_one(text: str) -> dict[str, Any]:
    """The parse tree of one statement's text (for a statement whose tree was not kept)."""
    from pglast import parser as pg_parser  # noqa: PLC0415

    statements = json.loads(pg_parser.parse_sql_json(text)).get("stmts", [])
    return dict(next(iter(statements[0]["stmt"].values()))) if statements else {}


def _statement(positions: _Positions, raw: dict[str, Any], keep_tree: bool, calls_set_config: bool) -> Statement:
    start = raw.get("stmt_location", 0)
    length = raw.get("stmt_len", 0)
    encoded = positions.encoded
    text = (encoded[start : start + length] if length else encoded[start:]).decode("utf-8")
    lead = _leading_trivia(text)
    offset = positions.char_of(start) + lead
    node_name, node = next(iter(raw["stmt"].items()))
    configs = tuple(set_config_names(node)) if calls_set_config else ()
    return Statement(
        source=positions.sql,
        length=len(text[lead:].rstrip()),
        line=positions.line_of(offset),
        offset=offset,
        node=node_name,
        transactional=not _outside_transaction(node_name, node),
        transaction_kind=node.get("kind") if node_name == "TransactionStmt" else None,
        session_effect=_session_effect(node_name, node, configs),
        changes_role=node_name == "VariableSetStmt" and node.get("name") in ("role", "session_authorization"),
        adds_enum_value=(node_name == "AlterEnumStmt" and "oldVal" not in node)
        or (node_name == "DoStmt" and do_block_effects(node).adds_enum_value),
        set_configs=configs,
        kept_tree=node if keep_tree else None,
    )


def _relations(node: Any) -> set[str]:
    """Tables and views a statement names (``schema.name`` where qualified)."""
    found: set[str] = set()
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if "relname" in item and "relpersistence" in item:  # a RangeVar
                schema = item.get("schemaname")
                found.add(f"{schema}.{item['relname']}" if schema else item["relname"])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def _session_effect(  # noqa: PLR0911  one answer per kind of statement, in the order they take precedence
    name: str, node: dict[str, Any], configs: tuple[str, ...] | None = None
) -> SessionEffect:
    """What a statement leaves in the session beyond its transaction (DO blocks: what they run).

    ``configs`` are the settings its set_config calls name (found here if not given).
    """
    if name == "DoStmt":
        block = do_block_effects(node)
        if block.opaque:
            return SessionEffect.RECONNECT
        inner = [_session_effect(n, stmt) for n, stmt in block.embedded]
        return max(inner, key=_EFFECT_ORDER.index, default=SessionEffect.NONE)
    configs = tuple(set_config_names(node)) if configs is None else configs
    if any("." in setting or setting == "?" for setting in configs):
        return SessionEffect.RECONNECT  # a custom setting stays defined after DISCARD ALL
    if configs:
        return SessionEffect.DISCARD
    if name in NEW_SESSION_NODES or (name == "VariableSetStmt" and "." in str(node.get("name", ""))):
        return SessionEffect.RECONNECT
    if name in SESSION_STATE_NODES or (name == "VariableSetStmt" and not node.get("is_local", False)):
        return SessionEffect.DISCARD
    return SessionEffect.DISCARD if _creates_temporary(name, node) else SessionEffect.NONE


TEMPORARY_TARGET = {
    "CreateStmt": ("relation",),
    "CreateTableAsStmt": ("into", "rel"),
    "ViewStmt": ("view",),
    "CreateSeqStmt": ("sequence",),
    "SelectStmt": ("intoClause", "rel"),
}


def _creates_temporary(name: str, node: dict[str, Any]) -> bool:
    """Whether the statement creates a temporary table, view or sequence (dropped per session)."""
    target: Any = node
    for key in TEMPORARY_TARGET.get(name, ("-",)):
        target = target.get(key, {}) if isinstance(target, dict) else {}
    return isinstance(target, dict) and target.get("relpersistence") == "t"


def _leading_trivia(text: str) -> int:
    """Length of the whitespace and comments before a statement's first token."""
    i = 0
    while i < len(text):
        if text[i].isspace():
            i += 1
        elif text.startswith("--", i):
            end = text.find("\n", i)
            i = len(text) if end < 0 else end + 1
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < len(text) and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        else:
            break
    return i


def _outside_transaction(name: str, node: dict[str, Any]) -> bool:  # noqa: PLR0911  one answer per statement kind
    # CALL is among them: a procedure may COMMIT, which it can only do outside a block.
    if name in ALWAYS_OUTSIDE_TRANSACTION and name != "DoStmt":
        return True
    if name == "DoStmt":
        block = do_block_effects(node)
        return block.commits or block.calls
    if name in ("IndexStmt", "DropStmt"):
        return bool(node.get("concurrent"))
    if name == "ReindexStmt":
        concurrently = any(p.get("DefElem", {}).get("defname") == "concurrently" for p in node.get("params", []))
        whole = node.get("kind") in (
            "REINDEX_OBJECT_SCHEMA",
            "REINDEX_OBJECT_SYSTEM",
            "REINDEX_OBJECT_DATABASE",
        )
        return concurrently or whole
    if name == "VacuumStmt":
        return bool(node.get("is_vacuumcmd"))
    if name == "ClusterStmt":
        return "relation" not in node
    if name == "DiscardStmt":
        return node.get("target") == "DISCARD_ALL"
    if name == "AlterDatabaseStmt":
        return any(o.get("DefElem", {}).get("defname") == "tablespace" for o in node.get("options", []))
    if name == "AlterTableStmt":
        return any(
            cmd.get("AlterTableCmd", {}).get("def", {}).get("PartitionCmd", {}).get("concurrent", False)
            for cmd in node.get("cmds", [])
        )
    return False


def _describe(statement: Statement) -> str:
    first = " ".join(statement.text.split()[:4])
    return ALWAYS_OUTSIDE_TRANSACTION.get(statement.node, first)


def _unwrap_transaction(
    sql: str, statements: list[Statement], *, database: str, file: str
) -> tuple[str, list[Statement], bool]:
    """Accept one BEGIN ... COMMIT around the whole file (True: it has one); refuse other transaction control."""
    body = sql
    kinds = [s.transaction_kind for s in statements]
    if (
        len(statements) >= 2
        and kinds[0] in BEGIN_KINDS
        and kinds[-1] == "TRANS_STMT_COMMIT"
        and all(k is None or k in ALLOWED_TRANSACTION_CONTROL for k in kinds[1:-1])
    ):
        for wrapper in (statements[0], statements[-1]):
            end = wrapper.offset + len(wrapper.text)
            body = body[: wrapper.offset] + " " * (end - wrapper.offset) + body[end:]
        return body, statements[1:-1], True
    stray = [
        s for s, k in zip(statements, kinds, strict=True) if k is not None and k not in ALLOWED_TRANSACTION_CONTROL
    ]
    if stray:
        # A file opening with BEGIN is meant as a wrapper: point at what breaks it.
        statement = stray[1] if len(stray) > 1 and stray[0] is statements[0] else stray[0]
        raise UnsupportedSqlError(
            f"transaction control {statement.text.split(None, 1)[0].upper()!r} inside the file",
            database=database,
            file=file,
            line=statement.line,
            hint="each file runs in its own transaction: remove BEGIN/COMMIT/ROLLBACK, or wrap the "
            "whole file in exactly one BEGIN; ... COMMIT; nothing of this file was run",
        )
    return body, statements, False


def _refuse_psql_only_syntax(sql: str, *, database: str, file: str) -> None:
    meta = META_COMMAND.search(sql)
    if meta:
        raise UnsupportedSqlError(
            f"psql meta-command {meta.group(1)} is not SQL",
            database=database,
            file=file,
            line=line_of(sql, meta.start(1)),
            hint="migrations run without psql: remove it (\\connect: put the SQL in the folder of the "
            "database it targets; \\i: copy the included SQL into its own migration); nothing was run",
        )
    copy = COPY_FROM_STDIN.search(sql)
    if copy:
        raise UnsupportedSqlError(
            "COPY ... FROM stdin with inline data needs psql",
            database=database,
            file=file,
            line=line_of(sql, copy.start()),
            hint="turn the data into INSERT statements; nothing was run",
        )
