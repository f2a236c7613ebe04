"""What a DO block does, read from its parsed PL/pgSQL body (pglast), never from its text.

A DO block's body is a string to the SQL parser. PostgreSQL's PL/pgSQL parser turns it
into statements; ``COMMIT``/``ROLLBACK`` there, a ``CALL`` (a procedure may commit), an
``ALTER TYPE ... ADD VALUE`` or a ``set_config`` are found in that tree and in the SQL
of each embedded statement, so a string that merely mentions ``commit;`` changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

__all__ = ["BlockEffects", "do_block_effects", "walk"]

# parseMode of a PLpgSQL_expr: 0 is a whole statement, the others an expression.
STATEMENT_MODE = 0
ASSIGNMENT_MODES = (3, 4, 5)


@dataclass(frozen=True)
class BlockEffects:
    """What a DO block may do beyond a plain statement in a transaction.

    ``commits``: it ends transactions (COMMIT/ROLLBACK), so it runs outside a transaction
    block. ``calls``: it calls a procedure, which may commit (only the server knows), so
    it runs outside one too unless the file asked for one transaction. ``adds_enum_value``: it adds a value
    to an enum type. ``embedded`` are the parse trees of the SQL statements it runs
    (for session effects). ``opaque``: it runs SQL that cannot be read before it runs
    (EXECUTE of a computed string, or a body that is not PL/pgSQL or does not parse).
    """

    commits: bool = False
    calls: bool = False
    adds_enum_value: bool = False
    embedded: tuple[tuple[str, dict[str, Any]], ...] = ()
    opaque: bool = False


def walk(node: Any) -> Iterator[dict[str, Any]]:
    """Every dict of a parse tree, depth first."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def do_block_effects(node: dict[str, Any]) -> BlockEffects:
    """Read a DoStmt node (pglast JSON): its language and body come from its arguments."""
    language, body = "plpgsql", None
    for arg in node.get("args", []):
        elem = arg.get("DefElem", {})
        value = elem.get("arg", {}).get("String", {}).get("sval")
        if elem.get("defname") == "as":
            body = value
        elif elem.get("defname") == "language":
            language = str(value).lower()
    if body is None or language != "plpgsql":
        return BlockEffects(opaque=True)
    return _body_effects(body)


@lru_cache(maxsize=256)
def _body_effects(body: str) -> BlockEffects:
    """One parse per body: a statement's mode, enum and session checks all ask."""
    tree = _parse_body(body)
    if tree is None:
        # The server will refuse the body too; the statement fails where it stands.
        return BlockEffects(opaque=True)
    commits = calls = adds = opaque = False
    embedded: list[tuple[str, dict[str, Any]]] = []
    for item in walk(tree):
        if "PLpgSQL_stmt_commit" in item or "PLpgSQL_stmt_rollback" in item:
            commits = True
        elif "PLpgSQL_stmt_dynexecute" in item or "PLpgSQL_stmt_dynfors" in item:
            opaque = True
        elif "PLpgSQL_stmt_call" in item:
            calls = True
        expr = item.get("PLpgSQL_expr")
        if isinstance(expr, dict) and isinstance(expr.get("query"), str):
            statements = _parse_embedded(expr["query"], expr.get("parseMode", STATEMENT_MODE))
            if statements is None:
                opaque = True
                continue
            for name, stmt in statements:
                calls = calls or name == "CallStmt"
                adds = adds or (name == "AlterEnumStmt" and "oldVal" not in stmt)
                embedded.append((name, stmt))
    return BlockEffects(commits, calls, adds, tuple(embedded), opaque)


def _parse_body(body: str) -> list[Any] | None:
    from pglast import parser as pg_parser  # noqa: PLC0415

    tag = "$dbmigrate$"
    while tag in body:
        tag = tag[:-1] + "_$"
    function = f"CREATE FUNCTION dbmigrate_do_block() RETURNS void LANGUAGE plpgsql AS {tag}{body}{tag}"
    try:
        parsed: list[Any] = json.loads(pg_parser.parse_plpgsql_json(function))
    except pg_parser.ParseError:
        return None
    return parsed


def _parse_embedded(query: str, mode: int) -> list[tuple[str, dict[str, Any]]] | None:
    from pglast import parser as pg_parser  # noqa: PLC0415

    if mode in ASSIGNMENT_MODES:
        query = query.split(":=", 1)[-1] if ":=" in query else query.split("=", 1)[-1]
    text = query if mode == STATEMENT_MODE else f"SELECT {query}"
    try:
        tree = json.loads(pg_parser.parse_sql_json(text))
    except pg_parser.ParseError:
        return None
    return [next(iter(raw["stmt"].items())) for raw in tree.get("stmts", [])]
