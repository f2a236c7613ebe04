"""StackConfig: defaults that synthesize, cdktf.json context, environment overrides, clear refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from dbmigrate.errors import LayoutError
from infra.bucket import migration_files
from infra.config import ROOT, ConfigError, StackConfig
from infra.invocation import content_hash


def test_defaults_need_no_aws_account_and_create_network_and_database() -> None:
    config = StackConfig()
    assert config.creates_network and config.creates_database
    assert config.run_mode == "every-apply"
    assert config.migrations_dir == ROOT / "migrations"


def test_environment_overrides_the_context_and_types_are_read() -> None:
    config = StackConfig.from_sources(
        {"region": "us-east-1", "db_multi_az": True, "function_timeout_s": 600},
        {
            "DBMIGRATE_REGION": "eu-central-1",
            "DBMIGRATE_DB_MULTI_AZ": "false",
            "DBMIGRATE_EXISTING_VPC_ID": "vpc-1",
            "DBMIGRATE_EXISTING_SUBNET_IDS": "subnet-a, subnet-b",
            "DBMIGRATE_MIGRATIONS_DIR": "db/migrations",
            "UNRELATED": "ignored",
        },
    )
    assert config.region == "eu-central-1"
    assert config.db_multi_az is False
    assert config.function_timeout_s == 600
    assert config.existing_subnet_ids == ("subnet-a", "subnet-b")
    assert config.migrations_dir == ROOT / "db" / "migrations", "relative to the repository, not the working directory"


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"name": "Bad_Name"}, "name"),
        ({"run_mode": "sometimes"}, "run_mode"),
        ({"migrations_prefix": "migrations"}, "migrations_prefix"),
        ({"function_timeout_s": 3}, "function_timeout_s"),
        ({"lock_wait_s": 290}, "lock_wait_s"),
        ({"log_retention_days": 10}, "log_retention_days"),
        ({"reserved_concurrency": 0}, "reserved_concurrency"),
        ({"existing_db_host": "db.internal"}, "existing_db_host"),
        (
            {"existing_db_host": "h", "existing_db_secret_arn": "arn", "existing_db_security_group_id": "sg-1"},
            "existing_vpc_id",
        ),
    ],
)
def test_bad_settings_are_refused_naming_the_setting(settings: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        StackConfig.from_sources(settings, {})


def test_unknown_context_keys_and_unreadable_values_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"unknown setting.*colour"):
        StackConfig.from_sources({"colour": "blue"}, {})
    with pytest.raises(ConfigError, match="DBMIGRATE_FUNCTION_TIMEOUT_S"):
        StackConfig.from_sources({}, {"DBMIGRATE_FUNCTION_TIMEOUT_S": "five minutes"})


def test_a_misnamed_migration_fails_the_synth_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "create_users.up.sql").write_text("CREATE TABLE users ();\n")
    with pytest.raises(LayoutError, match=r"create_users\.up\.sql"):
        migration_files(tmp_path)


def test_content_hash_changes_with_a_migration_the_package_or_the_prefix(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "1_users.up.sql").write_text("CREATE TABLE users ();\n")
    files = migration_files(tmp_path)
    base = content_hash(files, "a" * 64, "migrations/")
    assert base == content_hash(list(reversed(files)), "a" * 64, "migrations/")
    assert base != content_hash(files, "b" * 64, "migrations/")
    assert base != content_hash(files, "a" * 64, "")
    (tmp_path / "app" / "1_users.up.sql").write_text("CREATE TABLE users (id int);\n")
    assert base != content_hash(migration_files(tmp_path), "a" * 64, "migrations/")


@pytest.mark.parametrize("principal", ["arn:aws:iam::123456789012:role/deploy", "deploy-role", "AROA EXAMPLE", ""])
def test_a_deploy_principal_that_is_not_a_unique_id_is_refused(principal: str) -> None:
    with pytest.raises(ConfigError, match=r"deploy_principal .* unique id"):
        StackConfig(deploy_principal=principal)


@pytest.mark.parametrize(
    "principal", ["AROA3XFRBF535EXAMPLE", "AROA3XFRBF535EXAMPLE:GitHubActions", "AIDAJ45Q7YFFAREXAMPLE"]
)
def test_a_role_or_user_id_is_a_deploy_principal(principal: str) -> None:
    assert StackConfig.from_sources({}, {"DBMIGRATE_DEPLOY_PRINCIPAL": principal}).deploy_principal == principal
