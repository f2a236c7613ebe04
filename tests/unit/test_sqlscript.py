"""Reading files with PostgreSQL's parser: how each file runs, and what is refused."""

from __future__ import annotations

import pytest

from dbmigrate.errors import SqlError, UnsupportedSqlError
from dbmigrate.sqlscript import Mode, Script, SessionEffect, analyze


def parse(sql: str) -> Script:
    return analyze(sql, database="db", file="db/1_x.up.sql")


def test_plain_ddl_runs_as_one_transaction_and_the_body_is_the_file() -> None:
    sql = "CREATE TABLE a (id int);\nCREATE TABLE b (id int);\n"
    script = parse(sql)
    assert script.mode is Mode.TRANSACTION
    assert script.body == sql
    assert [s.line for s in script.statements] == [1, 2]


def test_semicolons_in_dollar_quotes_strings_and_comments_do_not_split() -> None:
    sql = (
        "-- a comment; with a semicolon\n"
        "/* block; /* nested; */ still; */\n"
        "CREATE FUNCTION f() RETURNS text LANGUAGE plpgsql AS $fn$\n"
        "BEGIN RETURN 'a;b' || $$c;d$$; END;\n"
        "$fn$;\n"
        "SELECT E'it''s; \\'quoted\\'', '$$';\n"
        "DO $$ BEGIN PERFORM 1; END $$;\n"
    )
    script = parse(sql)
    assert [s.node for s in script.statements] == ["CreateFunctionStmt", "SelectStmt", "DoStmt"]
    assert [s.line for s in script.statements] == [3, 6, 7]


def test_line_numbers_count_characters_not_bytes() -> None:
    script = parse("SELECT 'ünïcødé €';\n\n-- ß\nSELECT 2;")
    assert [s.line for s in script.statements] == [1, 4]
    assert script.statements[1].text == "SELECT 2"


@pytest.mark.parametrize(
    "statement",
    [
        "CREATE DATABASE x",
        "DROP DATABASE x",
        "CREATE INDEX CONCURRENTLY i ON t (x)",
        "DROP INDEX CONCURRENTLY i",
        "REINDEX TABLE CONCURRENTLY t",
        "REINDEX DATABASE x",
        "VACUUM t",
        "ALTER SYSTEM SET work_mem = '8MB'",
        "ALTER TABLE t DETACH PARTITION p CONCURRENTLY",
        "CREATE TABLESPACE s LOCATION '/x'",
    ],
)
def test_statements_refused_in_a_transaction_block_make_the_file_run_in_autocommit(statement: str) -> None:
    script = parse(f"SELECT 1;\n{statement};\n")
    assert script.mode is Mode.AUTOCOMMIT
    assert script.reason and "(line 2) cannot run inside a transaction block" in script.reason


@pytest.mark.parametrize(
    "statement", ["ANALYZE t", "REFRESH MATERIALIZED VIEW CONCURRENTLY v", "CREATE INDEX i ON t (x)"]
)
def test_statements_allowed_in_a_transaction_keep_the_file_transactional(statement: str) -> None:
    assert parse(f"{statement};").mode is Mode.TRANSACTION


def test_new_enum_value_followed_by_more_statements_runs_in_autocommit() -> None:
    assert parse("ALTER TYPE e ADD VALUE 'x';\nINSERT INTO t VALUES ('x');").mode is Mode.AUTOCOMMIT
    assert parse("ALTER TYPE e ADD VALUE 'x';").mode is Mode.TRANSACTION


def test_one_begin_commit_around_the_file_is_unwrapped_keeping_line_numbers() -> None:
    sql = "BEGIN;\nCREATE TABLE a (id int);\nSAVEPOINT s;\nCOMMIT;\n"
    script = parse(sql)
    assert script.mode is Mode.TRANSACTION
    assert [s.node for s in script.statements] == ["CreateStmt", "TransactionStmt"]
    assert "BEGIN" not in script.body and "COMMIT" not in script.body
    assert len(script.body) == len(sql) and script.body.count("\n") == sql.count("\n")


@pytest.mark.parametrize(
    ("sql", "line"),
    [
        ("CREATE TABLE a (id int);\nCOMMIT;\n", 2),
        ("BEGIN;\nCREATE TABLE a (id int);\n", 1),
        ("BEGIN;\nSELECT 1;\nCOMMIT;\nBEGIN;\nSELECT 2;\nCOMMIT;\n", 3),
        ("SELECT 1;\nROLLBACK;\n", 2),
    ],
)
def test_other_transaction_control_is_refused_with_its_line(sql: str, line: int) -> None:
    with pytest.raises(UnsupportedSqlError) as caught:
        parse(sql)
    assert caught.value.line == line
    assert "nothing of this file was run" in str(caught.value)


@pytest.mark.parametrize(("meta", "line"), [("\\connect other", 2), ("\\i other.sql", 2), ("\\set x 1", 2)])
def test_psql_meta_commands_are_refused_with_their_line(meta: str, line: int) -> None:
    with pytest.raises(UnsupportedSqlError) as caught:
        parse(f"SELECT 1;\n{meta}\nSELECT 2;\n")
    assert caught.value.line == line
    assert meta.split(maxsplit=1)[0] in str(caught.value)


def test_copy_from_stdin_is_refused() -> None:
    with pytest.raises(UnsupportedSqlError, match=r"COPY \.\.\. FROM stdin"):
        parse("COPY t (a) FROM stdin;\n1\n\\.\n")


def test_syntax_error_names_file_and_line() -> None:
    with pytest.raises(SqlError) as caught:
        parse("SELECT 1;\n\nSELEC 2;\n")
    assert caught.value.line == 3
    assert str(caught.value).startswith("db/1_x.up.sql:3: syntax error")


def test_empty_and_comment_only_files_have_no_statements() -> None:
    assert parse("").is_empty
    assert parse("-- nothing to do;\n/* really */\n").is_empty


@pytest.mark.parametrize(
    ("sql", "effect"),
    [
        ("SET search_path = app;", SessionEffect.DISCARD),
        ("SET LOCAL search_path = app;", SessionEffect.NONE),
        ("SELECT pg_catalog.set_config('search_path', '', false);", SessionEffect.DISCARD),
        ("CREATE TEMP TABLE t (x int);", SessionEffect.DISCARD),
        ("CREATE TABLE temperature (temp int);", SessionEffect.NONE),
        ("PREPARE q AS SELECT 1;", SessionEffect.DISCARD),
        ("SET app.tenant = 'x';", SessionEffect.RECONNECT),
        ("SELECT set_config('app.tenant', 'x', false);", SessionEffect.RECONNECT),
        ("ALTER DATABASE d SET search_path = app;", SessionEffect.RECONNECT),
        ("ALTER ROLE r SET statement_timeout = 5;", SessionEffect.RECONNECT),
    ],
)
def test_what_a_file_leaves_in_its_session_is_cleaned_before_the_next_file(sql: str, effect: SessionEffect) -> None:
    assert parse(sql).session_effect is effect


def test_set_role_is_noticed_so_the_history_row_is_written_as_the_session_user() -> None:
    assert parse("SET ROLE app_owner;\nCREATE TABLE t ();").changes_role
    assert not parse("CREATE TABLE t ();").changes_role


@pytest.mark.parametrize(
    "sql",
    [
        "CALL refresh_everything();",
        "DO $$ BEGIN FOR i IN 1..3 LOOP INSERT INTO t VALUES (i); COMMIT; END LOOP; END $$;",
        "DO $$ BEGIN ALTER TYPE e ADD VALUE 'x'; END $$;\nUPDATE t SET e = 'x';",
    ],
)
def test_procedures_commits_in_do_blocks_and_enum_values_added_in_do_blocks_run_in_autocommit(sql: str) -> None:
    assert parse(sql).mode is Mode.AUTOCOMMIT


def test_file_with_standard_conforming_strings_off_is_parsed_as_the_server_reads_it() -> None:
    sql = "SET standard_conforming_strings = off;\nINSERT INTO t VALUES ('it\\'s; x', 'a\\\\b');\n"
    script = parse(sql)
    assert script.mode is Mode.TRANSACTION
    assert script.body == "SET standard_conforming_strings = off;\nINSERT INTO t VALUES (E'it\\'s; x', E'a\\\\b');\n"
    assert [s.node for s in script.statements] == ["VariableSetStmt", "InsertStmt"]
    assert script.statements[1].line == 2


@pytest.mark.parametrize(
    ("sql", "line"),
    [
        ("SET standard_conforming_strings = off;\nSELECT 'x\\''; COMMIT; SELECT ' ';\n", 2),
        ("SET standard_conforming_strings = off;\nSELECT 'a';\nSELECT 'x\\'';\nROLLBACK;\n", 4),
    ],
)
def test_transaction_control_hidden_by_standard_conforming_strings_off_is_found(sql: str, line: int) -> None:
    # Read with the setting on, the COMMIT/ROLLBACK would look like part of a string (or vice versa).
    script_or_error: Script | UnsupportedSqlError
    try:
        script_or_error = parse(sql)
    except UnsupportedSqlError as exc:
        script_or_error = exc
    assert isinstance(script_or_error, UnsupportedSqlError)
    assert script_or_error.line == line


def test_commit_inside_a_string_under_standard_conforming_strings_off_is_only_a_string() -> None:
    script = parse("SET standard_conforming_strings = off;\nSELECT 'x\\'; COMMIT; --';\nSELECT 1;")
    assert script.mode is Mode.TRANSACTION
    assert [s.node for s in script.statements] == ["VariableSetStmt", "SelectStmt", "SelectStmt"]


def test_strings_before_standard_conforming_strings_off_and_e_strings_are_left_alone() -> None:
    sql = "SELECT 'a\\';\nSET standard_conforming_strings = off;\nSELECT E'b\\'', B'01', 'c';\n"
    assert parse(sql).body == "SELECT 'a\\';\nSET standard_conforming_strings = off;\nSELECT E'b\\'', B'01', E'c';\n"


def test_typed_literals_and_continued_strings_under_standard_conforming_strings_off_stay_one_token() -> None:
    sql = "SET standard_conforming_strings = off;\nSELECT date'2024-01-01', 'a\\''\n  'b';\n"
    script = parse(sql)
    assert script.statements[1].text == "SELECT date E'2024-01-01', E'a\\''\n  'b'"
    assert script.statements[1].node == "SelectStmt"
    continued = parse("SET standard_conforming_strings = off;\nSELECT 'a\\'' -- note\n'b';\n")
    assert continued.statements[1].text == "SELECT E'a\\'' -- note\n'b'"


def test_reset_of_standard_conforming_strings_reads_later_strings_with_it_on() -> None:
    sql = "SET standard_conforming_strings = off;\nSELECT 'a\\'';\nRESET standard_conforming_strings;\nSELECT 'b\\';\n"
    assert parse(sql).body == sql.replace("'a", "E'a")


@pytest.mark.parametrize(
    "sql",
    [
        "SET standard_conforming_strings = off;\nSET standard_conforming_strings = 'maybe';\nSELECT '\\';",
        "SET client_encoding = 'LATIN1';\nSELECT 'é';",
        "SET NAMES 'SQL_ASCII';",
        "SELECT set_config('standard_conforming_strings', 'off', false);",
    ],
)
def test_changes_to_how_the_server_reads_text_are_refused_before_anything_runs(sql: str) -> None:
    with pytest.raises(UnsupportedSqlError) as refused:
        parse(sql)
    assert refused.value.file == "db/1_x.up.sql" and refused.value.line is not None


@pytest.mark.parametrize("at", ["SELECT 1;\nSELECT '\x00';", "SELECT 1;\nSELECT 'a\x00b'; COMMIT;"])
def test_a_nul_character_is_refused_naming_line_and_column(at: str) -> None:
    with pytest.raises(UnsupportedSqlError) as refused:
        parse(at)
    assert (refused.value.line, refused.value.details["column"]) == (2, at.split("\n")[1].index("\x00") + 1)


@pytest.mark.parametrize(
    "body",
    [
        "BEGIN RAISE NOTICE 'commit;'; END",
        "BEGIN PERFORM 'rollback and chain'; END",
        "BEGIN EXECUTE 'SELECT 1'; END",
        "DECLARE c text := 'commit;'; BEGIN NULL; END",
        "BEGIN BEGIN INSERT INTO t VALUES ('COMMIT;'); END; END",
    ],
)
def test_a_do_block_that_only_mentions_commit_stays_in_the_transaction(body: str) -> None:
    script = parse(f"CREATE TABLE t (a text);\nDO $$ {body} $$;\nSELECT 1;")
    assert script.mode is Mode.TRANSACTION
    assert all(s.transactional for s in script.statements)


@pytest.mark.parametrize(
    "body",
    [
        "BEGIN COMMIT; END",
        "BEGIN IF true THEN BEGIN ROLLBACK; END; END IF; END",
        "BEGIN FOR i IN 1..2 LOOP COMMIT AND CHAIN; END LOOP; END",
        "BEGIN CALL p(); END",
    ],
)
def test_a_do_block_that_ends_transactions_runs_in_autocommit(body: str) -> None:
    script = parse(f"DO $$ {body} $$;\nSELECT 1;")
    assert script.mode is Mode.AUTOCOMMIT
    assert [s.transactional for s in script.statements] == [False, True]


def test_enum_values_added_in_a_do_block_are_found_in_its_parsed_body() -> None:
    mentioned = parse("DO $$ BEGIN RAISE NOTICE 'alter type e add value'; END $$;\nSELECT 1;")
    added = parse("DO $$ BEGIN IF true THEN ALTER TYPE e ADD VALUE 'x'; END IF; END $$;\nSELECT 1;")
    assert not mentioned.statements[0].adds_enum_value and mentioned.mode is Mode.TRANSACTION
    assert added.statements[0].adds_enum_value and added.mode is Mode.AUTOCOMMIT


@pytest.mark.parametrize(
    ("sql", "effect"),
    [
        ("DO $$ BEGIN PERFORM set_config('app.tenant', 'x', false); END $$;", SessionEffect.RECONNECT),
        ("DO $$ BEGIN RAISE NOTICE 'set_config(''app.x'', ''y'', false)'; END $$;", SessionEffect.NONE),
        ("DO $$ BEGIN EXECUTE format('SET %s = 1', 'x'); END $$;", SessionEffect.RECONNECT),
        ("SELECT 'set_config(''app.x'', 1)';", SessionEffect.NONE),
        ("SELECT \"set_config\"('app.tenant', 'x', false);", SessionEffect.RECONNECT),
        ("SELECT U&\"set\\005fconfig\"('search_path', '', false);", SessionEffect.DISCARD),
        ("SELECT pg_catalog.\"set_config\"('app.tenant', 'x', false);", SessionEffect.RECONNECT),
        ("CREATE TABLE a (x int);\nSELECT 1;\nSELECT set_config('search_path', '', false);", SessionEffect.DISCARD),
        ("SELECT 'set_config' AS name, set_config('search_path', '', true);", SessionEffect.DISCARD),
    ],
)
def test_session_effects_of_set_config_come_from_the_tree(sql: str, effect: SessionEffect) -> None:
    assert parse(sql).session_effect is effect


@pytest.mark.parametrize(
    ("inner", "line"),
    [
        ("CREATE INDEX CONCURRENTLY i ON t (a);", 3),
        ("VACUUM t;", 3),
        ("DO $$ BEGIN COMMIT; END $$;", 3),
    ],
)
def test_a_wrapped_file_with_a_statement_that_cannot_run_in_a_transaction_is_refused(inner: str, line: int) -> None:
    with pytest.raises(UnsupportedSqlError) as refused:
        parse(f"BEGIN;\nCREATE TABLE t (a int);\n{inner}\nINSERT INTO t VALUES (1);\nCOMMIT;\n")
    assert refused.value.line == line
    assert "BEGIN ... COMMIT" in refused.value.message


def test_a_wrapped_file_that_adds_an_enum_value_keeps_its_one_transaction() -> None:
    script = parse("BEGIN;\nALTER TYPE e ADD VALUE 'x';\nSELECT 1;\nCOMMIT;\n")
    assert script.mode is Mode.TRANSACTION and script.wrapped


@pytest.mark.parametrize("call", ["CALL refresh();", "DO $$ BEGIN CALL refresh(); END $$;"])
def test_a_procedure_call_inside_a_wrapper_runs_in_the_wrapper_transaction(call: str) -> None:
    script = parse(f"BEGIN;\nCREATE TABLE t (a int);\n{call}\nCOMMIT;\n")
    assert script.mode is Mode.TRANSACTION and script.wrapped
    assert parse(f"CREATE TABLE t (a int);\n{call}\n").mode is Mode.AUTOCOMMIT
