"""The function's environment variables: what the stack sets, and how a mistake is reported."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

import environment
from dbmigrate.errors import ConfigError
from environment import FunctionEnv, build_settings

SYSTEM_CAS = Path("/etc/ssl/certs/ca-certificates.crt")  # any PEM bundle will do: only parsing is tested here
MINIMAL = {"MIGRATIONS_BUCKET": "acme-migrations", "DATABASE_URL": "postgresql://u:pw@db:5432/{database}"}


def env(**variables: str) -> FunctionEnv:
    return FunctionEnv.from_environ({**MINIMAL, **variables})


def test_defaults_fill_everything_but_the_bucket_and_the_credentials() -> None:
    parsed = FunctionEnv.from_environ({**MINIMAL, "PATH": "/usr/bin"})
    assert parsed == FunctionEnv(bucket="acme-migrations", database_url=MINIMAL["DATABASE_URL"])


def test_every_variable_the_stack_sets_is_read() -> None:
    parsed = FunctionEnv.from_environ(
        {
            "MIGRATIONS_BUCKET": "b",
            "MIGRATIONS_PREFIX": "migrations/",
            "DB_SECRET_ARN": "arn:aws:secretsmanager:eu-west-1:1:secret:x",
            "DB_HOST": "db.internal",
            "DB_PORT": "5433",
            "DB_SSLMODE": "require",
            "ROOT_DATABASE": "rootdb",
            "CONNECT_TIMEOUT_S": "4",
            "LOCK_WAIT_S": "45",
            "STATEMENT_TIMEOUT_S": "120",
            "LOCK_TIMEOUT_S": "5.5",
            "MIN_TIME_LEFT_S": "20",
            "LOG_LEVEL": "debug",
        }
    )
    assert parsed == FunctionEnv(
        bucket="b",
        prefix="migrations/",
        secret_arn="arn:aws:secretsmanager:eu-west-1:1:secret:x",
        db_host="db.internal",
        db_port=5433,
        db_sslmode="require",
        root_database="rootdb",
        connect_timeout_s=4,
        lock_wait_s=45.0,
        statement_timeout_s=120.0,
        lock_timeout_s=5.5,
        min_time_left_s=20.0,
        log_level="DEBUG",
    )


@pytest.mark.parametrize(
    ("written", "prefix"),
    [("migrations", "migrations/"), ("/migrations/", "migrations/"), ("a/b", "a/b/"), ("/", ""), ("", "")],
)
def test_the_prefix_may_be_written_with_or_without_slashes_and_is_read_as_a_folder(written: str, prefix: str) -> None:
    assert env(MIGRATIONS_PREFIX=written).prefix == prefix


def test_empty_variables_count_as_unset() -> None:
    assert env(MIGRATIONS_PREFIX="", STATEMENT_TIMEOUT_S=" ").statement_timeout_s is None


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"MIGRATIONS_BUCKET": ""}, "MIGRATIONS_BUCKET is not set"),
        ({"DB_SECRET_ARN": "arn:x"}, "set exactly one of DB_SECRET_ARN and DATABASE_URL (both are set)"),
        ({"DATABASE_URL": ""}, "set exactly one of DB_SECRET_ARN and DATABASE_URL (neither is set)"),
        ({"CONNECT_TIMEOUT_S": "5s"}, "CONNECT_TIMEOUT_S must be a whole number, not '5s'"),
        ({"LOCK_WAIT_S": "a minute"}, "LOCK_WAIT_S must be a number, not 'a minute'"),
        ({"DB_PORT": "postgres"}, "DB_PORT must be a whole number, not 'postgres'"),
        ({"LOG_LEVEL": "chatty"}, "LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, not 'CHATTY'"),
        ({"DB_SSLMODE": "on"}, "DB_SSLMODE must be one of disable"),
        ({"LOCK_WAIT_S": "nan"}, "LOCK_WAIT_S must be a finite number, not 'nan'"),
        ({"STATEMENT_TIMEOUT_S": "inf"}, "STATEMENT_TIMEOUT_S must be a finite number, not 'inf'"),
        ({"MIN_TIME_LEFT_S": "-Infinity"}, "MIN_TIME_LEFT_S must be a finite number"),
        ({"UPLOAD_SETTLE_S": "-1"}, "UPLOAD_SETTLE_S must be a number from 0 to 900, not '-1'"),
        ({"UPLOAD_SETTLE_S": "NaN"}, "UPLOAD_SETTLE_S must be a finite number"),
        ({"DB_PORT": "0"}, "DB_PORT must be a whole number from 1 to 65535, not '0'"),
        ({"DB_PORT": "70000"}, "DB_PORT must be a whole number from 1 to 65535"),
    ],
)
def test_a_bad_variable_is_a_config_error_naming_it(variables: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        env(**variables)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"CONNECT_TIMEOUT_S": "0"}, "connect timeout must be at least 1 second"),
        ({"LOCK_WAIT_S": "-1"}, "lock wait must not be negative"),
        ({"LOCK_WAIT_S": "1e9"}, "lock wait must be at most 86400 seconds"),
        ({"STATEMENT_TIMEOUT_S": "-0.5"}, "statement timeout must not be negative"),
        ({"LOCK_TIMEOUT_S": "3000000"}, "lock timeout must be at most 2147483 seconds"),
        ({"MIN_TIME_LEFT_S": "-3"}, "min time left must not be negative"),
        ({"CONNECT_TIMEOUT_S": "-5"}, "connect timeout must be at least 1 second"),
        ({"DATABASE_URL": "postgresql://u:pw@[]/{database}"}, "the IPv6 host '[]' is empty"),
        ({"DATABASE_URL": "postgresql://u:pw@db/{database}?sslmod=require"}, "unknown connection option 'sslmod'"),
        ({"ROOT_DATABASE": "Root"}, "'Root' is not a valid database or schema name"),
        ({"DATABASE_URL": "postgresql://u:pw@db/projectdb"}, "no {database} placeholder"),
    ],
)
def test_values_the_engine_refuses_are_reported_when_the_settings_are_built(
    variables: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        build_settings(env(**variables), applied_by="lambda:f")


def test_settings_carry_the_environment_and_the_function_name() -> None:
    settings = build_settings(env(LOCK_TIMEOUT_S="5", MIN_TIME_LEFT_S="12"), applied_by="lambda:acme")
    assert (settings.lock_timeout_s, settings.min_time_left_s, settings.applied_by) == (5.0, 12.0, "lambda:acme")
    assert settings.url("projectdb") == "postgresql://u:pw@db:5432/projectdb"


def test_the_legacy_db_name_placeholder_is_accepted() -> None:
    settings = build_settings(env(DATABASE_URL="postgresql://u:pw@db:5432/DB_NAME"), applied_by="x")
    assert settings.url("projectdb") == "postgresql://u:pw@db:5432/projectdb"


class SecretsStub:
    """Answers get_secret_value with a fixed secret string, as Secrets Manager does."""

    def __init__(self, secret: str) -> None:
        self.secret = secret

    def get_secret_value(self, SecretId: str) -> dict[str, Any]:  # noqa: N803 (the AWS API's casing)
        return {"ARN": SecretId, "SecretString": self.secret}


def secret_settings(secret: str, **variables: str) -> Any:
    parsed = FunctionEnv.from_environ({"MIGRATIONS_BUCKET": "b", "DB_SECRET_ARN": "arn:s", **variables})
    return build_settings(parsed, applied_by="x", secrets_client=SecretsStub(secret))  # type: ignore[arg-type]


def test_rds_secret_password_is_quoted_and_sslmode_added() -> None:
    settings = secret_settings(
        '{"username": "admin", "password": "a@b:c/d?e"}', DB_HOST="db.internal", DB_SSLMODE="require"
    )
    assert settings.url("x") == "postgresql://admin:a%40b%3Ac%2Fd%3Fe@db.internal:5432/x?sslmode=require"


def test_environment_host_and_port_override_the_secret() -> None:
    settings = secret_settings(
        '{"username": "u", "password": "p", "host": "old.internal", "port": 5432}',
        DB_HOST="new.internal",
        DB_PORT="6432",
    )
    assert settings.url("x") == "postgresql://u:p@new.internal:6432/x"


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ("not json {hunter2", "the secret arn:s is not a JSON object"),
        ('["u", "p"]', "the secret arn:s is not a JSON object"),
        ('{"username": "u"}', "the secret arn:s has no username and password"),
        ('{"username": "u", "password": "p"}', "no database host: DB_HOST is not set"),
    ],
)
def test_a_malformed_secret_is_named_without_quoting_it(secret: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        secret_settings(secret)
    assert message in str(caught.value)
    assert "hunter2" not in str(caught.value)
    assert caught.value.__cause__ is None or "hunter2" not in str(caught.value.__cause__)


def test_allow_down_is_off_unless_set_true() -> None:
    assert env().allow_down is False
    assert env(ALLOW_DOWN="false").allow_down is False
    assert env(ALLOW_DOWN="TRUE").allow_down is True
    with pytest.raises(ConfigError, match="ALLOW_DOWN must be true or false, not 'on'"):
        env(ALLOW_DOWN="on")


def test_a_relative_ca_bundle_is_found_inside_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = tmp_path / "certs" / "db-ca.pem"
    bundle.parent.mkdir()
    bundle.write_text(SYSTEM_CAS.read_text())
    monkeypatch.setattr(environment, "PACKAGE_ROOT", tmp_path)
    parsed = env(DB_SSLMODE="verify-full", DB_SSLROOTCERT="certs/db-ca.pem")
    assert parsed.db_sslrootcert == bundle


def test_the_ca_bundle_reaches_the_connection_url_beside_sslmode(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text(SYSTEM_CAS.read_text())
    settings = secret_settings(
        '{"username": "migrator", "password": "pw"}',
        DB_HOST="db.internal",
        DB_SSLMODE="verify-full",
        DB_SSLROOTCERT=str(bundle),
    )
    assert settings.url("x") == (
        f"postgresql://migrator:pw@db.internal:5432/x?sslmode=verify-full&sslrootcert={quote(str(bundle), safe='')}"
    )


@pytest.mark.parametrize("mode", ["verify-ca", "verify-full"])
def test_a_verifying_sslmode_without_a_bundle_names_the_setting(mode: str) -> None:
    with pytest.raises(ConfigError, match="needs DB_SSLROOTCERT") as refused:
        env(DB_SSLMODE=mode)
    assert "db_ca_bundle" in str(refused.value)


def test_the_deploying_principal_is_read_and_optional() -> None:
    assert FunctionEnv.from_environ(MINIMAL).deploy_principal is None
    parsed = FunctionEnv.from_environ({**MINIMAL, "DEPLOY_PRINCIPAL": "AROA3XFRBF535EXAMPLE:GitHubActions"})
    assert parsed.deploy_principal == "AROA3XFRBF535EXAMPLE:GitHubActions"


def test_the_fleets_state_machine_is_read_and_optional() -> None:
    assert FunctionEnv.from_environ(MINIMAL).fleet_state_machine_arn is None
    arn = "arn:aws:states:eu-west-1:123456789012:stateMachine:shop-fleet"
    assert FunctionEnv.from_environ({**MINIMAL, "FLEET_STATE_MACHINE_ARN": arn}).fleet_state_machine_arn == arn


@pytest.mark.parametrize(
    "arn",
    [
        "shop-fleet",
        "arn:aws:states:eu-west-1:123456789012:execution:shop-fleet:run-1",
        "arn:aws:lambda:eu-west-1:123456789012:function:shop-migrate",
    ],
)
def test_a_fleet_variable_that_is_no_state_machine_is_refused_naming_it(arn: str) -> None:
    with pytest.raises(ConfigError, match="FLEET_STATE_MACHINE_ARN") as refused:
        FunctionEnv.from_environ({**MINIMAL, "FLEET_STATE_MACHINE_ARN": arn})
    assert "stateMachine" in str(refused.value.hint)
