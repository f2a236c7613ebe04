"""dbmigrate lint: risky statements named by rule, file and line, before anything is deployed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dbmigrate.cli import main
from dbmigrate.errors import ConfigError
from dbmigrate.lint import Finding, LintConfig, lint
from dbmigrate.sources import LocalSource
from tests.helpers import write_files

USERS = "db/1_users.up.sql"


def findings(tmp_path: Path, sql: str, config: LintConfig | None = None) -> list[Finding]:
    root = write_files(
        tmp_path, {USERS: "CREATE TABLE users (id int, email text, name text);", "db/2_change.up.sql": sql}
    )
    return [f for f in lint(LocalSource(root), config or LintConfig()) if f.file == "db/2_change.up.sql"]


@pytest.mark.parametrize(
    ("sql", "rule", "severity", "line", "message"),
    [
        ("SELECT 1;\nDROP TABLE users;", "drop-table", "error", 2, "drops table users"),
        ("ALTER TABLE users DROP COLUMN email;", "drop-column", "error", 1, "drops column email of users"),
        ("ALTER TABLE users RENAME TO people;", "rename", "warning", 1, "renames table of users to people"),
        ("ALTER TABLE users RENAME COLUMN name TO full_name;", "rename", "warning", 1, "renames column name of users"),
        ("CREATE INDEX users_email ON users (email);", "index-not-concurrent", "warning", 1, "without CONCURRENTLY"),
        ("ALTER TABLE users ADD COLUMN age int NOT NULL;", "add-not-null-column", "error", 1, "users.age NOT NULL"),
        ("ALTER TABLE users ALTER COLUMN email SET NOT NULL;", "set-not-null", "warning", 1, "users.email NOT NULL"),
        (
            "ALTER TABLE users ADD COLUMN t timestamptz DEFAULT clock_timestamp();",
            "volatile-default",
            "warning",
            1,
            "t",
        ),
        ("ALTER TABLE users ADD COLUMN n bigserial;", "volatile-default", "warning", 1, "users.n"),
        ("ALTER TABLE users ALTER COLUMN id TYPE bigint;", "alter-column-type", "warning", 1, "type of users.id"),
        (
            "CREATE INDEX CONCURRENTLY users_name ON users (name);\nUPDATE users SET name = '';",
            "concurrently-mixed",
            "warning",
            1,
            "shares its file with 1 other statement",
        ),
        ("SELECT 1;\nSELEC 2;", "syntax", "error", 2, "syntax error at or near"),
        ("SELECT 1;\n\\connect other", "unsupported", "error", 2, "psql meta-command \\connect"),
    ],
)
def test_each_rule_names_the_file_line_and_the_safe_way(  # noqa: PLR0913  pytest passes each fixture and parameter by name
    tmp_path: Path, sql: str, rule: str, severity: str, line: int, message: str
) -> None:
    (finding,) = findings(tmp_path, sql)
    assert (finding.rule, finding.severity, finding.line) == (rule, severity, line)
    assert message in finding.message
    assert finding.hint


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE TABLE t (id int);\nCREATE INDEX t_id ON t (id);\nALTER TABLE t ADD COLUMN n int NOT NULL;",
        "CREATE INDEX CONCURRENTLY users_email ON users (email);",
        "ALTER TABLE users ADD COLUMN active boolean NOT NULL DEFAULT true;",
        "ALTER TABLE users ADD COLUMN seen timestamptz DEFAULT now();",
    ],
)
def test_safe_changes_and_new_tables_raise_nothing(tmp_path: Path, sql: str) -> None:
    assert findings(tmp_path, sql) == []


def test_config_changes_severities_accepts_a_finding_for_one_file_and_asks_for_down_files(tmp_path: Path) -> None:
    (tmp_path / "cfg.toml").write_text(
        'require_down = true\n[severity]\nrename = "error"\nindex-not-concurrent = "off"\n'
        '[[accept]]\nfile = "db/2_change.up.sql"\nrule = "drop-column"\nreason = "unused since v2"\n'
    )
    config = LintConfig.load(tmp_path / "cfg.toml")
    found = findings(
        tmp_path,
        "ALTER TABLE users DROP COLUMN email;\nALTER TABLE users RENAME TO people;\nCREATE INDEX i ON people (id);",
        config,
    )
    assert [(f.rule, f.severity, f.accepted) for f in found] == [
        ("missing-down", "error", None),
        ("drop-column", "error", "unused since v2"),
        ("rename", "error", None),
    ]


@pytest.mark.parametrize(
    "text",
    ['[severity]\nrename = "fatal"\n', '[severity]\nnot-a-rule = "error"\n', '[[accept]]\nfile = "x"\n', "= broken"],
)
def test_a_bad_config_is_refused_naming_what_is_wrong(tmp_path: Path, text: str) -> None:
    (tmp_path / "cfg.toml").write_text(text)
    with pytest.raises(ConfigError):
        LintConfig.load(tmp_path / "cfg.toml")


def test_cli_exits_1_on_errors_0_on_warnings_and_prints_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write_files(
        tmp_path, {USERS: "CREATE TABLE users (id int);", "db/2_x.up.sql": "ALTER TABLE users RENAME TO p;"}
    )
    assert main(["lint", "--dir", str(root)]) == 0
    assert "db/2_x.up.sql:1: warning [rename]" in capsys.readouterr().out

    write_files(root, {"db/3_y.up.sql": "DROP TABLE p;"})
    assert main(["lint", "--dir", str(root), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["errors"] == 1
    assert [(f["file"], f["rule"]) for f in report["findings"]] == [
        ("db/2_x.up.sql", "rename"),
        ("db/3_y.up.sql", "drop-table"),
    ]


def test_the_example_migrations_lint_clean(capsys: pytest.CaptureFixture[str]) -> None:
    example = Path(__file__).resolve().parents[2] / "migrations"
    assert main(["lint", "--dir", str(example)]) == 0
    assert "0 error(s), 0 warning(s)" in capsys.readouterr().out
