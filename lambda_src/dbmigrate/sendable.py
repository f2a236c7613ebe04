"""What reaches the server intact, and is read there as the parser read it.

libpq ends a query at a NUL character, so a file holding one is refused before
anything is sent. Text is sent as UTF-8, so a file may not change client_encoding. A
file that turns standard_conforming_strings off is rewritten (legacy_strings) so that
its strings mean the same to the parser and to the server, and the parser checks that
rewrite against the SET statements it finds.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from .errors import UnsupportedSqlError
from .plpgsql import walk

if TYPE_CHECKING:
    from .sqlscript import Statement

__all__ = [
    "conforming_settings",
    "refuse_encoding_change",
    "refuse_unsendable",
    "rewrite_legacy_strings",
    "set_config_names",
]

CONFORMING_STRINGS = "standard_conforming_strings"


def line_of(text: str, offset: int) -> int:
    """1-based line number of a character offset in ``text``."""
    return text.count("\n", 0, max(0, offset)) + 1


def conforming_settings(tree: dict[str, Any]) -> list[bool | None]:
    """The value of each top-level SET standard_conforming_strings, in order (None: not on/off)."""
    values: list[bool | None] = []
    for raw in tree.get("stmts", []):
        node = raw["stmt"].get("VariableSetStmt")
        if node is None or node.get("name") != CONFORMING_STRINGS:
            continue
        if node.get("kind") in ("VAR_RESET", "VAR_SET_DEFAULT"):
            values.append(True)  # the session's default; the engine keeps it on (apply._read_as_parsed)
            continue
        args = node.get("args", [])
        const = args[0].get("A_Const", {}) if len(args) == 1 else {}
        text = str(const.get("sval", {}).get("sval", const.get("ival", {}).get("ival", ""))).lower()
        values.append(True if text in ("on", "true", "1") else False if text in ("off", "false", "0") else None)
    return values


def rewrite_legacy_strings(sql: str, *, parsed: bool, database: str, file: str) -> tuple[str, bool]:
    """The file with strings written under standard_conforming_strings=off made explicit (E''),
    and whether that rewrite parses (False when unchanged, or when it does not parse either).

    ``parsed``: the file itself parsed (so it surely sets the option, and a file that cannot
    be rewritten faithfully is refused rather than reported as a syntax error).
    """
    # 8 ms of regular expressions to compile: only for a file that does not parse or sets the option.
    from .legacy_strings import LegacyStringsError, rewrite_escape_strings  # noqa: PLC0415

    try:
        rewrite = rewrite_escape_strings(sql)
    except LegacyStringsError as exc:
        if not parsed:
            return sql, False  # not a file that sets the option: the syntax error stands
        raise _conforming_strings_error(f"{exc}", line_of(sql, exc.offset), database, file) from exc
    if rewrite.text == sql:
        return sql, False
    from pglast import parser as pg_parser  # noqa: PLC0415

    try:
        tree: dict[str, Any] = json.loads(pg_parser.parse_sql_json(rewrite.text))
    except pg_parser.ParseError:
        return (rewrite.text if parsed else sql), False
    if conforming_settings(tree) != list(rewrite.settings):
        raise _conforming_strings_error(
            "the file's SET standard_conforming_strings statements could not be matched to its strings",
            None,
            database,
            file,
        )
    return rewrite.text, True


def _conforming_strings_error(message: str, line: int | None, database: str, file: str) -> UnsupportedSqlError:
    return UnsupportedSqlError(
        f"cannot read the file as the server would with standard_conforming_strings off: {message}",
        database=database,
        file=file,
        line=line,
        hint="write strings that hold backslash escapes as E'...' strings and remove SET "
        "standard_conforming_strings; nothing of this file was run",
    )


def refuse_unsendable(sql: str, *, database: str, file: str) -> None:
    """Refuse what cannot reach the server intact: libpq ends a query at a NUL character."""
    index = sql.find("\0")
    if index >= 0:
        line = line_of(sql, index)
        column = index - (sql.rfind("\n", 0, index) + 1) + 1
        raise UnsupportedSqlError(
            f"the file holds a NUL character (line {line}, column {column}); the driver would cut the "
            "query there and the rest of the file would never reach the server",
            database=database,
            file=file,
            line=line,
            column=column,
            hint="remove the NUL character (write chr(0)-free SQL; bytea values as '\\x00' escapes); "
            "nothing of this file was run",
        )


def refuse_encoding_change(statement: Statement, *, database: str, file: str) -> None:
    """Text is sent as UTF-8: a statement must not change how the server decodes what follows."""
    names = set(statement.set_configs) & {"client_encoding", CONFORMING_STRINGS}
    tree = statement.tree if statement.node == "VariableSetStmt" else {}  # parsed again unless kept
    if tree.get("name") == "client_encoding":
        args = tree.get("args", [])
        value = args[0].get("A_Const", {}).get("sval", {}).get("sval", "") if len(args) == 1 else ""
        if str(value).upper().replace("-", "") not in ("UTF8", "UNICODE"):  # pg_dump writes 'UTF8'
            names.add("client_encoding")
    if not names:
        return
    raise UnsupportedSqlError(
        f"the file changes {sorted(names)[0]}, which changes how the server reads the SQL sent after it",
        database=database,
        file=file,
        line=statement.line,
        hint="remove it: files are sent as UTF-8 (use E'' strings for backslash escapes, and "
        "SET standard_conforming_strings rather than set_config); nothing of this file was run",
    )


def set_config_names(tree: Any) -> list[str]:
    """The setting named by each set_config(...) call in a parse tree ('?' when not a constant)."""
    names = []
    for item in walk(tree):
        call = item.get("FuncCall")
        if not isinstance(call, dict):
            continue
        funcname = [part.get("String", {}).get("sval") for part in call.get("funcname", [])]
        if not funcname or funcname[-1] != "set_config":
            continue
        args = call.get("args", [])
        const = args[0].get("A_Const", {}) if args else {}
        names.append(str(const.get("sval", {}).get("sval", "?")))
    return names
