"""What a run imports: only what its action uses (the parser, the linter and AWS wait until needed).

Each check runs in a fresh interpreter, so nothing imported by other tests counts.
Times are measured in bench/startup.py, never here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dbmigrate import cli

LAMBDA_SRC = Path(__file__).resolve().parents[2] / "lambda_src"
# The linter, the remote plan (and so boto3), pglast and the reader of legacy strings.
LATER = ("dbmigrate.lint", "dbmigrate.cli_remote", "boto3", "pglast", "dbmigrate.legacy_strings", "tomllib")


def imported_by(code: str) -> set[str]:
    """The modules loaded once ``code`` has run in a fresh interpreter with lambda_src on its path."""
    script = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, env={"PYTHONPATH": str(LAMBDA_SRC)}
    )
    return set(json.loads(run.stdout.splitlines()[-1]))


def test_the_cli_parsing_a_status_run_imports_no_linter_no_aws_and_no_parser() -> None:
    loaded = imported_by("from dbmigrate.cli import _parser\n_parser(['status']).parse_args(['status'])")
    assert "dbmigrate.runner" in loaded
    assert not loaded & set(LATER)


def test_the_handler_imports_no_sql_parser_until_a_file_is_read() -> None:
    loaded = imported_by("import handler")
    assert "botocore.session" in loaded, "botocore stays in the init phase: every run reading S3 or the secret needs it"
    assert not loaded & {"pglast", "dbmigrate.legacy_strings", "dbmigrate.lint", "boto3"}


@pytest.mark.parametrize(
    "argv",
    [
        ["up", "--database-url", "postgresql://h/{database}", "--database", "a", "--lock-wait", "5"],
        ["plan", "--function", "fn", "--json"],
        ["status", "--dir", "elsewhere"],
        ["down", "--database", "a", "--to", "3", "--dry-run"],
        ["baseline", "--database", "a", "--version", "7"],
        ["repair", "--database", "a", "--accept-checksum", "1", "--mark-applied", "2", "--mark-applied", "3"],
        ["lint", "--config", "x.toml", "--database", "a"],
        ["new", "projectdb", "add users"],
    ],
)
def test_the_parser_built_for_one_command_reads_it_as_the_whole_parser_does(argv: list[str]) -> None:
    assert cli._parser(argv).parse_args(argv) == cli._parser().parse_args(argv)


def test_the_help_without_a_command_still_lists_every_command() -> None:
    usage = cli._parser(["--help"]).format_help()
    assert all(f"    {name} " in usage for name in cli.COMMANDS), usage
