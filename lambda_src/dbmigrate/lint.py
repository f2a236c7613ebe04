"""``dbmigrate lint``: statements that are risky on a live database, found before deploying.

Every file is read with PostgreSQL's own parser (syntax errors come with the
parser's message and line). Each finding names its rule, file and line, says why it
hurts on a database in use and how to do it safely. Rules have a default severity
that a config file can change; a finding can be accepted for one file with a reason.

Config (``dbmigrate-lint.toml`` in the migrations folder, or ``--config``)::

    require_down = true               # every .up.sql needs a .down.sql
    [severity]
    rename = "error"                  # error | warning | info | off
    [[accept]]
    file = "projectdb/202401020900_drop_legacy.up.sql"
    rule = "drop-table"
    reason = "legacy table, unused since 2023"
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .apply import decode
from .errors import ConfigError, SqlError, UnsupportedSqlError
from .model import MigrationRef
from .sources import MigrationSource
from .sqlscript import Script, Statement, analyze

__all__ = ["RULES", "Finding", "LintConfig", "lint"]

CONFIG_NAME = "dbmigrate-lint.toml"
SEVERITIES = ("error", "warning", "info", "off")
RULES: dict[str, tuple[str, str]] = {
    "syntax": ("error", "PostgreSQL's parser refuses the file"),
    "unsupported": ("error", "psql meta-commands, COPY FROM stdin, stray transaction control"),
    "drop-table": ("error", "dropping a table loses its data and breaks code still using it"),
    "drop-column": ("error", "dropping a column breaks code still reading or writing it"),
    "rename": ("warning", "renaming a table or column breaks code using the old name"),
    "index-not-concurrent": ("warning", "CREATE INDEX without CONCURRENTLY blocks writes to an existing table"),
    "add-not-null-column": ("error", "ADD COLUMN ... NOT NULL without a default fails on a table with rows"),
    "set-not-null": ("warning", "SET NOT NULL scans the whole table under an ACCESS EXCLUSIVE lock"),
    "volatile-default": ("warning", "a volatile default rewrites the whole table under an ACCESS EXCLUSIVE lock"),
    "alter-column-type": ("warning", "changing a column's type usually rewrites the table under an exclusive lock"),
    "concurrently-mixed": ("warning", "a file run outside a transaction can stop half way and needs repair"),
    "missing-down": ("error", "the policy asks for a .down.sql beside every .up.sql"),
}
VOLATILE_FUNCTIONS = {"random", "clock_timestamp", "timeofday", "gen_random_uuid", "uuid_generate_v4", "nextval"}
SERIAL_TYPES = {"serial", "serial4", "bigserial", "serial8", "smallserial", "serial2"}


@dataclass(frozen=True)
class Finding:
    """One risky statement (or file): where, which rule, how bad, why, and the safe way."""

    rule: str
    severity: str
    file: str
    line: int | None
    message: str
    hint: str
    accepted: str | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        accepted = f" (accepted: {self.accepted})" if self.accepted else ""
        return f"{where}: {self.severity} [{self.rule}] {self.message}. Fix: {self.hint}{accepted}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "severity": self.severity,
            "file": self.file,
            "line": self.line,
            "message": self.message,
            "hint": self.hint,
            "accepted": self.accepted,
        }


@dataclass(frozen=True)
class LintConfig:
    """Severity overrides, accepted findings ``{(file, rule): reason}``, and the down-file policy."""

    require_down: bool = False
    severity: dict[str, str] = field(default_factory=dict)
    accepted: dict[tuple[str, str], str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> LintConfig:
        """Read a config file; a missing file is the defaults; mistakes are ConfigError naming them."""
        if not path.exists():
            return cls()
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
        severity = data.get("severity", {})
        for rule, level in severity.items():
            if rule not in RULES or level not in SEVERITIES:
                raise ConfigError(
                    f"{path}: severity {rule} = {level!r}",
                    hint=f"rules are {', '.join(RULES)}; severities are {', '.join(SEVERITIES)}",
                )
        accepted: dict[tuple[str, str], str] = {}
        for entry in data.get("accept", []):
            if not {"file", "rule", "reason"} <= set(entry) or entry["rule"] not in RULES:
                raise ConfigError(
                    f"{path}: every [[accept]] needs file, rule (one of the rules) and reason: {entry}",
                )
            accepted[(entry["file"], entry["rule"])] = entry["reason"]
        return cls(bool(data.get("require_down", False)), dict(severity), accepted)


def lint(source: MigrationSource, config: LintConfig, databases: Sequence[str] | None = None) -> list[Finding]:
    """Every finding of every file (or of the databases named), in file order."""
    findings: list[Finding] = []
    for ref in source.list():
        if databases and ref.database not in databases:
            continue
        for rule, line, message, hint in _file_findings(ref, source, config):
            level = config.severity.get(rule, RULES[rule][0])
            if level != "off":
                accepted = config.accepted.get((ref.key, rule))
                findings.append(Finding(rule, level, ref.key, line, message, hint, accepted))
    return findings


Raw = tuple[str, int | None, str, str]


def _file_findings(ref: MigrationRef, source: MigrationSource, config: LintConfig) -> Iterator[Raw]:
    if config.require_down and ref.down_key is None:
        yield "missing-down", None, "no down file", f"add {ref.key.removesuffix('.up.sql')}.down.sql"
    try:
        script = analyze(decode(source.read(ref.key), ref), database=ref.database, file=ref.key, keep_trees=True)
    except UnsupportedSqlError as exc:
        yield "unsupported", exc.line, exc.message, exc.hint or ""
        return
    except SqlError as exc:
        yield "syntax", exc.line, exc.message, "fix the SQL before it is deployed"
        return
    yield from _script_findings(script)


def _script_findings(script: Script) -> Iterator[Raw]:
    created = {name for s in script.statements if s.node == "CreateStmt" for name in s.relations}
    outside = [s for s in script.statements if not s.transactional]
    if outside and len(script.statements) > 1:
        yield (
            "concurrently-mixed",
            outside[0].line,
            f"{outside[0].text.split('(')[0].strip()[:60]} shares its file with {len(script.statements) - 1} "
            "other statement(s), so the file runs statement by statement",
            "put each statement that cannot run in a transaction in a file of its own",
        )
    for statement in script.statements:
        yield from _statement_findings(statement, created)


def _statement_findings(statement: Statement, created: set[str]) -> Iterator[Raw]:
    node, line = statement.tree, statement.line
    if statement.node == "DropStmt" and node.get("removeType") == "OBJECT_TABLE":
        yield (
            "drop-table",
            line,
            f"drops table {', '.join(statement.relations) or _names(node)}",
            "stop using the table first (deploy the code), then drop it in a later migration; "
            "accept the finding in the lint config when that is done",
        )
    elif statement.node == "RenameStmt" and node.get("renameType") in ("OBJECT_TABLE", "OBJECT_COLUMN"):
        what = "column " + str(node.get("subname")) if node.get("renameType") == "OBJECT_COLUMN" else "table"
        yield (
            "rename",
            line,
            f"renames {what} of {_table(statement)} to {node.get('newname')}",
            "add the new name, write both, move readers over, then drop the old one",
        )
    elif statement.node == "IndexStmt" and not node.get("concurrent") and _table(statement) not in created:
        yield (
            "index-not-concurrent",
            line,
            f"builds an index on {_table(statement)} without CONCURRENTLY",
            "use CREATE INDEX CONCURRENTLY, alone in its file",
        )
    elif statement.node == "AlterTableStmt" and _table(statement) not in created:
        for command in node.get("cmds", []):
            yield from _alter_findings(statement, command.get("AlterTableCmd", {}))


def _alter_findings(statement: Statement, command: dict[str, Any]) -> Iterator[Raw]:
    table, line, kind = _table(statement), statement.line, command.get("subtype")
    column = command.get("name") or command.get("def", {}).get("ColumnDef", {}).get("colname")
    if kind == "AT_DropColumn":
        yield (
            "drop-column",
            line,
            f"drops column {column} of {table}",
            "stop using the column first (deploy the code), then drop it in a later migration",
        )
    elif kind == "AT_SetNotNull":
        yield (
            "set-not-null",
            line,
            f"sets {table}.{column} NOT NULL",
            f"ADD CONSTRAINT ... CHECK ({column} IS NOT NULL) NOT VALID, VALIDATE it in a later file, "
            "then SET NOT NULL",
        )
    elif kind == "AT_AlterColumnType":
        yield (
            "alter-column-type",
            line,
            f"changes the type of {table}.{column}",
            "add a column of the new type, backfill in batches, switch readers, then drop the old one",
        )
    elif kind == "AT_AddColumn":
        definition = command.get("def", {}).get("ColumnDef", {})
        constraints = [c.get("Constraint", {}) for c in definition.get("constraints", [])]
        default = next((c for c in constraints if c.get("contype") == "CONSTR_DEFAULT"), None)
        not_null = any(c.get("contype") == "CONSTR_NOTNULL" for c in constraints)
        type_name = str(definition.get("typeName", {}).get("names", [{}])[-1].get("String", {}).get("sval", ""))
        if not_null and default is None:
            yield (
                "add-not-null-column",
                line,
                f"adds {table}.{column} NOT NULL without a default",
                "give it a constant default, or add it NULL, backfill, then SET NOT NULL",
            )
        if type_name in SERIAL_TYPES or (default is not None and _volatile(default.get("raw_expr", {}))):
            yield (
                "volatile-default",
                line,
                f"adds {table}.{column} with a volatile default, which rewrites every row",
                "add the column without the default (or with a constant one), then backfill in batches",
            )


def _volatile(expression: Any) -> bool:
    stack = [expression]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            call = item.get("FuncCall")
            if isinstance(call, dict):
                name = str(call.get("funcname", [{}])[-1].get("String", {}).get("sval", ""))
                if name in VOLATILE_FUNCTIONS:
                    return True
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _table(statement: Statement) -> str:
    relation = statement.tree.get("relation", {})
    schema, name = relation.get("schemaname"), relation.get("relname", "?")
    return f"{schema}.{name}" if schema else str(name)


def _names(node: dict[str, Any]) -> str:
    names = [".".join(s["String"]["sval"] for s in obj.get("List", {}).get("items", [])) for obj in node["objects"]]
    return ", ".join(names)
