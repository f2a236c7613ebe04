"""The function's errors and logs never carry the database password, in any encoding.

The handler runs for real (moto S3 and Secrets Manager, the real server where it gets
that far); its log lines are captured as the Lambda runtime's handler writes them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

from dbmigrate.errors import ConfigError, DatabaseConnectError, MigrationError
from environment import VARIABLES
from handler import handler
from local.aws import LocalAws
from local.lambda_runtime import Context
from tests.helpers import LambdaLoggerHandler

BUCKET = "acme-dbmigrate-migrations"
SECRET = "hunter2 100%@home"
ENCODED = quote(SECRET, safe="")
FORMS = [SECRET, ENCODED, quote_plus(SECRET, safe=""), quote(SECRET), SECRET.replace(" ", "+"), "hunter2"]


@pytest.fixture
def runtime(aws: LocalAws, monkeypatch: pytest.MonkeyPatch) -> Iterator[LambdaLoggerHandler]:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    aws.bucket(BUCKET)
    aws.upload(BUCKET, {"projectdb/1_a.up.sql": "SELECT 1;"}, "migrations/")
    monkeypatch.setenv("MIGRATIONS_BUCKET", BUCKET)
    monkeypatch.setenv("MIGRATIONS_PREFIX", "migrations")
    root = logging.getLogger()
    level, lambda_handler = root.level, LambdaLoggerHandler()
    root.addHandler(lambda_handler)
    yield lambda_handler
    root.removeHandler(lambda_handler)
    root.setLevel(level)
    for name in ("botocore", "urllib3"):
        logging.getLogger(name).setLevel(logging.NOTSET)


def failure(event: dict[str, Any]) -> MigrationError:
    with pytest.raises(MigrationError) as caught:
        handler(event, Context())
    return caught.value


def assert_nowhere(error: BaseException, lines: list[str]) -> None:
    texts = [str(error), repr(error), *lines]
    if isinstance(error, MigrationError):
        texts.append(json.dumps(error.to_dict()))
    assert lines, "the run logged nothing"
    for text in texts:
        for form in FORMS:
            assert form not in text


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (f"postgresql://admin:{ENCODED}%q@127.0.0.1/{{database}}", "not followed by two hex digits"),
        (f"postgresql://admin:{ENCODED}@[]:5432/{{database}}", "the IPv6 host '[]' is empty"),
        (f"postgresql://admin:{ENCODED}@127.0.0.1/{{database}}?sslmod=require", "unknown connection option 'sslmod'"),
        (f"postgresql://admin:{SECRET}@127.0.0.1/{{database}}", "the user or password holds '@'"),
        (f"postgresql://admin@127.0.0.1:five/{{database}}?password={quote_plus(SECRET)}", "port 'five'"),
    ],
)
def test_a_malformed_database_url_fails_the_invocation_naming_the_problem_not_the_password(
    runtime: LambdaLoggerHandler, monkeypatch: pytest.MonkeyPatch, url: str, problem: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", url)
    error = failure({"action": "migrate"})
    assert isinstance(error, ConfigError)
    assert problem in str(error)
    assert_nowhere(error, runtime.lines)


def test_a_secret_password_with_spaces_and_percent_never_appears_when_the_connection_fails(
    runtime: LambdaLoggerHandler, aws: LocalAws, monkeypatch: pytest.MonkeyPatch, refusing_port: int
) -> None:
    arn = aws.secretsmanager.create_secret(
        Name="rds!db-1", SecretString=json.dumps({"username": "admin", "password": SECRET})
    )["ARN"]
    monkeypatch.setenv("DB_SECRET_ARN", arn)
    monkeypatch.setenv("DB_HOST", "127.0.0.1")
    monkeypatch.setenv("DB_PORT", str(refusing_port))
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    error = failure({"action": "status"})
    assert isinstance(error, DatabaseConnectError)
    assert_nowhere(error, runtime.lines)


@pytest.mark.parametrize(
    ("variable", "value"),
    [("LOCK_WAIT_S", "nan"), ("STATEMENT_TIMEOUT_S", "inf"), ("LOCK_TIMEOUT_S", "-2"), ("CONNECT_TIMEOUT_S", "0")],
)
def test_a_timeout_setting_that_is_not_a_sane_number_is_a_configuration_error(
    runtime: LambdaLoggerHandler, monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"postgresql://admin:{ENCODED}@127.0.0.1/{{database}}")
    monkeypatch.setenv(variable, value)
    error = failure({"action": "migrate"})
    assert isinstance(error, ConfigError)
    assert_nowhere(error, runtime.lines)


def test_an_engine_refusal_raised_in_the_function_names_its_variable_and_the_stack_setting(
    runtime: LambdaLoggerHandler, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"postgresql://admin:{ENCODED}@127.0.0.1/{{database}}")
    monkeypatch.setenv("LOCK_TIMEOUT_S", "-2")
    error = failure({"action": "migrate"})
    assert "lock timeout must not be negative" in str(error)
    assert error.hint == "give LOCK_TIMEOUT_S (the stack's lock_timeout_s) a plain number of seconds, e.g. 30"
    assert "--lock-timeout" not in str(error), "a flag means nothing to the function's user"
