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
# Where the scan must look: comments, quotes, statement ends, parentheses, words and "=".
SIGNIFICANT = re.compile(r"--|/\*|[\"'$;()=]|[A-Za-z_\x80-\U0010ffff][A-Za-z0-9_$\x80-\U0010ffff]*")
COMMENT_MARK = re.compile(r"/\*|\*/")
STANDARD_BODY = re.compile(r"[^']*(?:''[^']*)*'")
ESCAPE_BODY = re.compile(r"[^'\\]*(?:(?:\\.|'')[^'\\]*)*'", re.DOTALL)
IDENTIFIER_BODY = re.compile(r'[^"]*(?:""[^"]*)*"')
STATEMENT_HEAD = 8
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
        while (token := SIGNIFICANT.search(sql, i)) is not None:
            i, text = token.start(), token.group()
            if text == "--":
                end = sql.find("\n", i)
                i = len(sql) if end < 0 else end + 1
            elif text == "/*":
                i = self._block_comment(i)
            elif text == '"':
                i = self._quoted(i, IDENTIFIER_BODY)
            elif text == "$":
                dollar = i == 0 or not _ident_char(sql[i - 1])
                i = self._dollar(i) if dollar and DOLLAR_TAG.match(sql, i) else i + 1
            elif text == "'":
                i = self._string(i)
            elif text == ";":
                if self.depth == 0:
                    self._end_statement(i)
                i += 1
            elif text in "()":
                self.depth += 1 if text == "(" else -1
                i += 1
            else:  # a word or "=": only a statement's first tokens can make it a SET
                if len(self.tokens) < STATEMENT_HEAD:
                    self.tokens.append(text.lower())
                i = token.end()
        self._end_statement(len(sql))
        self.out.append(sql[self.copied :])
        return Rewrite("".join(self.out), tuple(self.settings))

    def _block_comment(self, i: int) -> int:
        depth, i = 1, i + 2
        while depth and (mark := COMMENT_MARK.search(self.sql, i)) is not None:
            depth += 1 if mark.group() == "/*" else -1
            i = mark.end()
        return i if depth == 0 else len(self.sql)

    def _quoted(self, i: int, body: re.Pattern[str]) -> int:
        """Past the closing quote of a string or identifier opened at ``i``."""
        closed = body.match(self.sql, i + 1)
        if closed is None:
            raise LegacyStringsError("unterminated quoted string", i)
        return closed.end()

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
        body = ESCAPE_BODY if escapes else STANDARD_BODY
        start, end = i, self._quoted(i, body)
        while (more := CONTINUATION.match(sql, end)) is not None:
            end = self._quoted(more.end() - 1, body)
        if len(self.tokens) < STATEMENT_HEAD:
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
