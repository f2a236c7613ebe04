"""Files parsed a chunk of statements at a time read exactly as if parsed whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from dbmigrate import sqlscript
from dbmigrate.errors import MigrationError
from dbmigrate.sqlscript import Script, analyze

TRICKY = sorted((Path(__file__).resolve().parents[1] / "corpus" / "tricky").glob("*.sql"))
SAMPLES = {
    "begin_atomic_across_chunks": (
        "CREATE TABLE t (id int);\n"
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n  SELECT 1;\n  SELECT 2;\nEND;\n"
        "CREATE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC INSERT INTO t VALUES (1); INSERT INTO t VALUES (2); END;\n"
        "SELECT 'é€'; -- trailing; comment\n"
    ),
    "non_ascii_tags_and_names": (
        "CREATE FUNCTION \"fünf\"() RETURNS text LANGUAGE sql AS $é$ SELECT 'a;b' $é$;\n"
        'SELECT "fünf"(); -- ü; é\nSELECT \'ß;€\' AS "größe";\n'
    ),
    "no_final_semicolon": "SELECT 1;\r\nSELECT 'ü';\r\nSELECT 3",
    "comments_between": "/* a; */ SELECT 1; -- b;\n\n-- c;\nSELECT 2;\n/* end; */\n",
    "rule_with_actions": "CREATE TABLE a (x int); CREATE TABLE b (x int);\n"
    "CREATE RULE r AS ON INSERT TO a DO ALSO (INSERT INTO b VALUES (1); INSERT INTO b VALUES (2));\nSELECT 1;",
}


def described(sql: str, chunk: int, monkeypatch: pytest.MonkeyPatch) -> object:
    monkeypatch.setattr(sqlscript, "CHUNK_CHARS", chunk)
    try:
        script: Script = analyze(sql, database="db", file="db/1_x.up.sql")
    except MigrationError as exc:
        return ("error", type(exc).__name__, exc.message, exc.line)
    statements = [(s.text, s.line, s.offset, s.node, s.transactional, s.session_effect) for s in script.statements]
    return (script.mode, script.body, script.reason, script.session_effect, statements)


@pytest.mark.parametrize(
    "sql",
    [*(path.read_text() for path in TRICKY), *SAMPLES.values()],
    ids=[*(path.stem for path in TRICKY), *SAMPLES],
)
@pytest.mark.parametrize("chunk", [1, 40, 200])
def test_a_file_parsed_in_chunks_reads_as_if_parsed_whole(
    sql: str, chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = described(sql, 10**9, monkeypatch)
    assert described(sql, chunk, monkeypatch) == whole


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1;\nSELECT 'ü';\nSELEC 3;\nSELECT 4;",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n SELECT 1;\n SELEC 2;\nEND;\nSELECT 3;",
        "SELECT 1;\nSELECT 'unterminated;\nSELECT 3;",
    ],
)
@pytest.mark.parametrize("chunk", [1, 15])
def test_a_syntax_error_is_named_at_the_same_line_in_chunks(
    sql: str, chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = described(sql, 10**9, monkeypatch)
    assert isinstance(whole, tuple) and whole[0] == "error" and whole[3] is not None
    assert described(sql, chunk, monkeypatch) == whole


def test_a_syntax_error_deep_in_a_big_file_names_its_line() -> None:
    lines = [f"INSERT INTO t VALUES ({i}, 'ligne n° {i}');" for i in range(20_000)]
    lines[17_321] = "INSERT INTO t VALUES (1, 'x') oops;"
    sql = "\n".join(lines)
    assert len(sql) > 3 * sqlscript.CHUNK_CHARS
    with pytest.raises(MigrationError) as caught:
        analyze(sql, database="db", file="db/1_x.up.sql")
    assert caught.value.line == 17_322


def test_statements_keep_their_trees_only_when_asked_and_parse_them_again_otherwise() -> None:
    sql = "CREATE TABLE app.users (id int);\nALTER TABLE widgets ADD COLUMN x int;\n"
    lean = analyze(sql, database="db", file="f")
    kept = analyze(sql, database="db", file="f", keep_trees=True)
    assert [s.kept_tree for s in lean.statements] == [None, None]
    assert all(s.kept_tree for s in kept.statements)
    assert [sorted(s.tree) for s in lean.statements] == [sorted(s.tree) for s in kept.statements]
    assert [s.relations for s in lean.statements] == [s.relations for s in kept.statements]
    assert [s.relations for s in lean.statements] == [("app.users",), ("widgets",)]


def test_a_statement_over_the_limit_is_refused_naming_the_limit_and_its_line() -> None:
    rows = ",\n".join(f"({i}, 'row {i}')" for i in range(60_000))
    sql = f"CREATE TABLE t (id int, name text);\n\nINSERT INTO t VALUES\n{rows};\nSELECT 1;\n"
    assert len(sql) > sqlscript.MAX_STATEMENT_CHARS
    with pytest.raises(MigrationError) as caught:
        analyze(sql, database="db", file="db/1_x.up.sql")
    assert caught.value.line == 3
    assert "over the limit of 1,048,576 (1 MiB) for one statement" in caught.value.message
    assert "split it" in (caught.value.hint or "")


def test_a_big_file_of_statements_under_the_limit_is_read_whole() -> None:
    body = "x" * (sqlscript.MAX_STATEMENT_CHARS - 100)
    sql = f"CREATE FUNCTION f() RETURNS text LANGUAGE sql AS $$ SELECT '{body}' $$;\n" + "SELECT 1;\n" * 50_000
    script = analyze(sql, database="db", file="db/1_x.up.sql")
    assert len(script.statements) == 50_001
    assert [s.line for s in script.statements[:3]] == [1, 2, 3]
    assert script.statements[-1].line == 50_001
