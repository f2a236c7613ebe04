"""A file's ``-- dbmigrate: transaction=...`` directive: what it does, and every way of getting it wrong."""

from __future__ import annotations

import pytest

from dbmigrate.errors import UnsupportedSqlError
from dbmigrate.sqlscript import Mode, Script, analyze


def parse(sql: str) -> Script:
    return analyze(sql, database="appdb", file="appdb/1_x.up.sql")


def refused(sql: str) -> UnsupportedSqlError:
    with pytest.raises(UnsupportedSqlError) as caught:
        parse(sql)
    return caught.value


@pytest.mark.parametrize(
    "line",
    ["-- dbmigrate: transaction=false", "--dbmigrate:transaction=false", "-- DBMIGRATE: Transaction = FALSE"],
)
def test_transaction_false_runs_plain_statements_one_by_one_and_says_why(line: str) -> None:
    script = parse(f"-- adds a table\n{line}\nCREATE TABLE a ();\nCREATE TABLE b ();\n")
    assert script.mode is Mode.AUTOCOMMIT
    assert script.declared
    assert script.reason == "the file says transaction=false (line 2)"
    assert script.to_dict() == {"mode": "autocommit", "declared": True, "reason": script.reason}


def test_transaction_true_keeps_one_transaction_where_the_engine_would_have_split_the_file() -> None:
    sql = "ALTER TYPE mood ADD VALUE 'meh';\nINSERT INTO feelings VALUES ('meh');\n"
    assert parse(sql).mode is Mode.AUTOCOMMIT, "undeclared: a new enum value used after it splits the file"
    script = parse(f"-- dbmigrate: transaction=true\n{sql}")
    assert script.mode is Mode.TRANSACTION
    assert script.declared and not script.wrapped
    assert script.to_dict() == {"mode": "transaction", "declared": True, "reason": None}


def test_without_a_directive_nothing_is_declared() -> None:
    script = parse("-- a comment that names dbmigrate in passing\nCREATE TABLE a ();\n")
    assert script.mode is Mode.TRANSACTION
    assert not script.declared
    assert script.to_dict() == {"mode": "transaction", "declared": False, "reason": None}


@pytest.mark.parametrize(
    ("statement", "what"),
    [
        ("CREATE INDEX CONCURRENTLY i ON a (x);", "CREATE INDEX CONCURRENTLY"),
        ("VACUUM a;", "VACUUM"),
        ("CREATE DATABASE other;", "CREATE DATABASE"),
        ("CALL refresh();", "CALL"),
    ],
)
def test_transaction_true_refuses_a_statement_that_cannot_run_in_one(statement: str, what: str) -> None:
    error = refused(f"-- dbmigrate: transaction=true\nCREATE TABLE a (x int);\n{statement}\n")
    assert error.line == 3
    assert "says transaction=true (line 1)" in error.message
    assert what in error.message or what in str(error.statement)
    assert "remove the directive" in str(error.hint)


def test_transaction_false_and_a_begin_commit_wrapper_contradict_each_other() -> None:
    error = refused("-- dbmigrate: transaction=false\nBEGIN;\nCREATE TABLE a ();\nCOMMIT;\n")
    assert error.line == 1
    assert "BEGIN ... COMMIT" in error.message


@pytest.mark.parametrize(
    ("sql", "line", "says"),
    [
        ("-- dbmigrate: transaction=no\nSELECT 1;\n", 1, "unknown directive"),
        ("-- dbmigrate: transactions=false\nSELECT 1;\n", 1, "unknown directive"),
        ("-- dbmigrate: transaction:false\nSELECT 1;\n", 1, "unknown directive"),
        ("-- dbmigrate transaction=false\nSELECT 1;\n", 1, "unknown directive"),
        ("-- dbmigrate:\nSELECT 1;\n", 1, "unknown directive"),
        ("-- dbmigrate: transaction=false lock=none\nSELECT 1;\n", 1, "unknown directive"),
        ("SELECT 1;\n-- dbmigrate: transaction=false\nSELECT 2;\n", 2, "after the first statement"),
        ("SELECT 1;\n\n  -- dbmigrate: transaction=true\n", 3, "after the first statement"),
        ("-- dbmigrate: transaction=true\n-- dbmigrate: transaction=true\nSELECT 1;\n", 2, "second directive"),
        ("-- dbmigrate: transaction=true\n-- dbmigrate: transaction=false\nSELECT 1;\n", 2, "second directive"),
        ("-- migrate:up transaction:false\nSELECT 1;\n", 1, "dbmate's directive"),
    ],
)
def test_a_directive_that_would_be_ignored_refuses_the_file_naming_its_line(sql: str, line: int, says: str) -> None:
    error = refused(sql)
    assert error.line == line
    assert says in error.message
    hint = str(error.hint)
    assert "-- dbmigrate: transaction=false" in hint and "nothing of this file was run" in hint


def test_a_directive_line_inside_a_statement_is_sql_not_a_directive() -> None:
    body = "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$\n-- dbmigrate: whatever\nSELECT 1\n$$;\n"
    script = parse(f"CREATE TABLE a ();\n{body}")
    assert script.mode is Mode.TRANSACTION and not script.declared
    assert parse(f"-- dbmigrate: transaction=false\n{body}").reason == "the file says transaction=false (line 1)"


def test_a_file_of_only_a_directive_is_empty_and_declared() -> None:
    script = parse("-- dbmigrate: transaction=false\n")
    assert script.is_empty and script.declared
