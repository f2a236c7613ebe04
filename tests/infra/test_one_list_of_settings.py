"""One list of settings: the engine's Options, and every edge that offers them (CLI, function, stack)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

import pytest

import environment
from dbmigrate import cli
from dbmigrate.config import Options, Settings, options
from dbmigrate.errors import ConfigError, LockTimeoutError, MigrationError, OutOfOrderError, SqlError
from environment import FunctionEnv
from infra.config import ConfigError as StackConfigError
from infra.config import StackConfig
from infra.function import FunctionSettings, engine_environment, function_environment
from infra.packaging import PackagingError

from .terraform_json import only

ENGINE = {option.name: option.default for option in options()}


def cli_defaults() -> dict[str, Any]:
    parser = cli._parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    up = subparsers.choices["up"]
    return {action.dest: action.default for action in up._actions if action.option_strings}


def test_every_engine_setting_is_a_cli_flag_with_the_engine_default() -> None:
    flags = cli_defaults()
    offered = {option.name: option.default for option in options(cli=True)}
    assert {name: flags[name] for name in offered if name in flags} == offered
    assert set(offered) <= set(flags)
    assert set(ENGINE) - set(offered) == {"min_time_left_s"}, "only the Lambda's reserve is not a flag"


def test_every_engine_setting_is_a_function_variable_with_the_engine_default() -> None:
    parsed = FunctionEnv.from_environ({"MIGRATIONS_BUCKET": "b", "DATABASE_URL": "postgresql://h/{database}"})
    assert {name: getattr(parsed, name) for name in ENGINE} == ENGINE
    assert {option.variable for option in options()} <= set(environment.VARIABLES)


def test_every_engine_setting_is_a_stack_setting_with_the_engine_default() -> None:
    stack = {item.name: item.default for item in dataclasses.fields(StackConfig) if item.name in ENGINE}
    assert stack == ENGINE
    engine_fields = {item.name for item in dataclasses.fields(Settings)} - {"url_template", "applied_by", "parsed_url"}
    assert engine_fields == set(ENGINE), "a field of Settings outside Options reaches no edge"


def test_the_stack_sends_every_variable_the_function_reads() -> None:
    env = function_environment(
        bucket="b", prefix="p/", secret_arn="arn", host="h", port=5432, settings=FunctionSettings()
    )
    credentials_by_url = {"DATABASE_URL", "DB_SSLROOTCERT"}  # the stack uses the secret; a CA bundle only when given
    unset_by_default = {"STATEMENT_TIMEOUT_S", "LOCK_TIMEOUT_S"}
    fleet_only = {"FLEET_STATE_MACHINE_ARN"}  # set by the stack when it has a fleet (tests/infra/test_fleet_stack.py)
    assert set(env) == set(environment.VARIABLES) - credentials_by_url - unset_by_default - fleet_only
    read = FunctionEnv.from_environ({**env, "DATABASE_URL": "postgresql://h/{database}", "DB_SECRET_ARN": ""})
    assert {name: getattr(read, name) for name in ENGINE} == ENGINE
    assert read.upload_settle_s == FunctionEnv.upload_settle_s == StackConfig.upload_settle_s
    assert read.log_level == FunctionEnv.log_level == StackConfig.log_level
    assert read.allow_down is FunctionEnv.allow_down is StackConfig.allow_down


def test_an_unset_statement_timeout_is_not_sent_so_the_roles_own_limit_stays() -> None:
    assert "STATEMENT_TIMEOUT_S" not in engine_environment(Options())
    assert "LOCK_TIMEOUT_S" not in engine_environment(Options())
    assert engine_environment(Options(statement_timeout_s=0))["STATEMENT_TIMEOUT_S"] == "0"
    assert engine_environment(Options(lock_timeout_s=2.5))["LOCK_TIMEOUT_S"] == "2.5"


def test_the_synthesized_function_has_no_statement_timeout_and_the_engines_lock_wait(stack: dict[str, Any]) -> None:
    _, function = only(stack, "aws_lambda_function")
    variables = function["environment"]["variables"]
    assert "STATEMENT_TIMEOUT_S" not in variables
    assert float(variables["LOCK_WAIT_S"]) == Options().lock_wait_s == cli_defaults()["lock_wait_s"] == 60
    assert variables["ROOT_DATABASE"] == Options().root_database


def test_upload_settle_time_and_engine_settings_from_the_stack_reach_the_function() -> None:
    config = StackConfig.from_sources(
        {"upload_settle_s": 12, "network_timeout_s": 9, "allow_out_of_order": True},
        {"DBMIGRATE_STATEMENT_TIMEOUT_S": "45.5"},
    )
    settings = FunctionSettings(
        engine=Options(**{option.name: getattr(config, option.name) for option in options()}),
        upload_settle_s=config.upload_settle_s,
    )
    env = function_environment(bucket="b", prefix="", secret_arn="a", host="h", port=1, settings=settings)
    assert (env["UPLOAD_SETTLE_S"], env["NETWORK_TIMEOUT_S"]) == ("12", "9")
    assert (env["ALLOW_OUT_OF_ORDER"], env["STATEMENT_TIMEOUT_S"]) == ("true", "45.5")


def test_a_stack_setting_the_engine_refuses_is_refused_at_synth_naming_it() -> None:
    with pytest.raises(ConfigError, match="lock timeout must not be negative") as caught:
        StackConfig.from_sources({"lock_timeout_s": -1}, {})
    assert "lock_timeout_s" in str(caught.value)
    with pytest.raises(ConfigError, match="upload_settle_s"):
        StackConfig(upload_settle_s=1000)


def test_synth_errors_are_in_the_one_hierarchy() -> None:
    assert issubclass(PackagingError, MigrationError)
    assert StackConfigError is ConfigError


@pytest.mark.parametrize(
    ("error", "cli_text", "function_text"),
    [
        (
            lambda: OutOfOrderError("v", hint="allow it with {allow_out_of_order}", settings=("allow_out_of_order",)),
            "allow it with --allow-out-of-order",
            "allow it with ALLOW_OUT_OF_ORDER=true (the stack's allow_out_of_order)",
        ),
        (
            lambda: LockTimeoutError("held", hint="allow a longer wait ({lock_wait_s})", settings=("lock_wait_s",)),
            "allow a longer wait (--lock-wait)",
            "allow a longer wait (LOCK_WAIT_S (the stack's lock_wait_s))",
        ),
        (
            lambda: SqlError("slow", hint="raise it ({statement_timeout_s})", settings=("statement_timeout_s",)),
            "raise it (--statement-timeout)",
            "raise it (STATEMENT_TIMEOUT_S (the stack's statement_timeout_s))",
        ),
        (
            lambda: Settings("postgresql://h/{database}", lock_wait_s=-1),
            "give --lock-wait a plain number",
            "give LOCK_WAIT_S (the stack's lock_wait_s) a plain number",
        ),
        (
            lambda: ConfigError("none", hint="point {source} at it", settings=("source",)),
            "point --dir at it",
            "point MIGRATIONS_BUCKET and MIGRATIONS_PREFIX (the stack's migrations_prefix) at it",
        ),
    ],
)
def test_the_edge_names_the_setting_an_engine_error_points_at(error: Any, cli_text: str, function_text: str) -> None:
    def made() -> Any:
        try:
            return error()
        except ConfigError as exc:
            return exc

    assert cli_text in str(made().name_settings(cli.spell))
    assert function_text in str(made().name_settings(environment.spell))
    assert "--" not in str(made()) and "_S " not in str(made()), "alone, the engine names no edge's spelling"


def test_the_readme_lists_each_setting_once_with_its_flag_variable_and_stack_setting() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    for option in options():
        rows = [line for line in readme.splitlines() if line.startswith("| ") and f"`{option.variable}`" in line]
        rows = [row for row in rows if f"| `{option.name}` |" in row]
        assert len(rows) == 1, f"README: one row for {option.name}, found {rows}"
        assert (f"`{option.flag}`" in rows[0]) == option.spec.cli, rows[0]


def test_the_example_stack_sets_a_lock_timeout_explicitly(stack: dict[str, Any]) -> None:
    _, function = only(stack, "aws_lambda_function")
    assert function["environment"]["variables"]["LOCK_TIMEOUT_S"] == "10", "cdktf.json's choice, not a second default"
