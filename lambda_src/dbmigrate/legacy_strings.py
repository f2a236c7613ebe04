"""Files written for ``standard_conforming_strings = off`` (old pg_dump output).

With the setting off, a backslash escapes inside a plain ``'...'`` string, as in an
``E'...'`` string; the parser (pglast) reads every file with it on. So that the parser
sees what the server runs, such a file is rewritten before it is parsed or sent: while
the file has the setting off, each plain string gets an ``E`` in front, which means the
same to the server whatever the setting. The scan follows PostgreSQL's lexer (comments,
quoted identifiers, dollar quotes, E/B/X/U& strings, continuation lines); the parser
then checks that it found the same SET statements the scan acted on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["LegacyStringsError", "Rewrite", "rewrite_escape_strings"]

SETTING = "standard_conforming_strings"
DOLLAR_TAG = re.compile(r"\$([A-Za-z_\x80-\U0010ffff][A-Za-z0-9_\x80-\U0010ffff]*)?\$")
WORD = re.compile(r"[A-Za-z_\x80-\U0010ffff][A-Za-z0-9_$\x80-\U0010ffff]*")
CONTINUATION = re.compile(r"(?:[ \t\f\r]|--[^\n]*)*\n(?:\s|--[^\n]*\n)*'")
OFF = {"off", "false", "no", "0", "of", "fa", "f", "n"}
ON = {"on", "true", "yes", "1", "t", "y", "tr", "ye"}


class LegacyStringsError(ValueError):
    """The file cannot be rewritten faithfully; ``offset`` points at the cause."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


@dataclass(frozen=True)
class Rewrite:
    """The file as the server runs it, and the values of each SET of the setting, in order."""

    text: str
    settings: tuple[bool, ...]


def _ident_char(ch: str) -> bool:
    return ch.isalnum() or ch in "_$" or ord(ch) >= 0x80


class _Scanner:
    def __init__(self, sql: str) -> None:
        self.sql = sql
        self.out: list[str] = []
        self.copied = 0
        self.conforming = True
        self.settings: list[bool] = []
        self.tokens: list[str] = []
        self.depth = 0

    def run(self) -> Rewrite:
        sql, i = self.sql, 0
        while i < len(sql):
            ch = sql[i]
            if ch.isspace():
                i += 1
            elif sql.startswith("--", i):
                end = sql.find("\n", i)
                i = len(sql) if end < 0 else end + 1
            elif sql.startswith("/*", i):
                i = self._block_comment(i)
            elif ch == '"':
                i = self._quoted(i, '"')
            elif ch == "$" and (i == 0 or not _ident_char(sql[i - 1])) and DOLLAR_TAG.match(sql, i):
                i = self._dollar(i)
            elif ch == "'":
                i = self._string(i)
            elif ch == ";" and self.depth == 0:
                self._end_statement(i)
                i += 1
            elif WORD.match(sql, i):
                word = WORD.match(sql, i)
                assert word is not None
                self.tokens.append(word.group().lower())
                i = word.end()
            else:
                self.depth += {"(": 1, ")": -1}.get(ch, 0)
                if ch == "=":
                    self.tokens.append("=")
                i += 1
        self._end_statement(len(sql))
        self.out.append(sql[self.copied :])
        return Rewrite("".join(self.out), tuple(self.settings))

    def _block_comment(self, i: int) -> int:
        depth, i = 1, i + 2
        while i < len(self.sql) and depth:
            if self.sql.startswith("/*", i):
                depth, i = depth + 1, i + 2
            elif self.sql.startswith("*/", i):
                depth, i = depth - 1, i + 2
            else:
                i += 1
        return i

    def _quoted(self, i: int, quote: str, *, backslash: bool = False) -> int:
        """Past the closing quote of a string or identifier opened at ``i``."""
        sql, i = self.sql, i + 1
        while i < len(sql):
            if (backslash and sql[i] == "\\") or sql.startswith(quote * 2, i):
                i += 2
            elif sql[i] == quote:
                return i + 1
            else:
                i += 1
        raise LegacyStringsError("unterminated quoted string", i)

    def _dollar(self, i: int) -> int:
        tag = DOLLAR_TAG.match(self.sql, i)
        assert tag is not None
        end = self.sql.find(tag.group(), tag.end())
        if end < 0:
            raise LegacyStringsError("unterminated dollar-quoted string", i)
        return end + len(tag.group())

    def _string(self, i: int) -> int:
        sql = self.sql
        before = sql[i - 1].lower() if i else ""
        standalone = i < 2 or not _ident_char(sql[i - 2])
        if before == "&" and i >= 2 and sql[i - 2] in "uU" and (i < 3 or not _ident_char(sql[i - 3])):
            kind = "unicode"
        elif before in ("e", "b", "x", "n") and standalone:
            kind = before
        else:
            kind = "plain"
        if kind == "n" and not self.conforming:
            raise LegacyStringsError("N'...' string with standard_conforming_strings off", i)
        escapes = kind == "e" or (kind == "plain" and not self.conforming)
        if kind == "plain" and not self.conforming:
            # After a word (a typed literal such as date'2024-01-01') the E needs a space.
            self.out.append(sql[self.copied : i] + (" E" if i and _ident_char(sql[i - 1]) else "E"))
            self.copied = i
        start, end = i, self._quoted(i, "'", backslash=escapes)
        while (more := CONTINUATION.match(sql, end)) is not None:
            end = self._quoted(more.end() - 1, "'", backslash=escapes)
        self.tokens.append("'" + sql[start + 1 : end - 1].lower())
        return end

    def _end_statement(self, offset: int) -> None:
        tokens, self.tokens, self.depth = self.tokens, [], 0
        if tokens[:1] not in (["set"], ["reset"]) or SETTING not in tokens[:3]:
            return
        rest = tokens[tokens.index(SETTING) + 1 :]
        value = rest[1].lstrip("'") if len(rest) == 2 and rest[0] in ("=", "to") else None
        if tokens[0] == "reset" or value == "default":
            value = "on"  # the session's default, which the engine keeps on
        if value not in OFF | ON:
            raise LegacyStringsError(f"{SETTING} set to something other than on or off", offset)
        self.conforming = value in ON
        self.settings.append(self.conforming)


def rewrite_escape_strings(sql: str) -> Rewrite:
    """The file with each plain string written while the setting is off turned into E'...'."""
    return _Scanner(sql).run()
