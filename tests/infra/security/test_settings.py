"""The security settings in the synthesized stack and on the local deploy: RDS log groups, the
alarm's recipients, the CA bundle and verify-full, ``ALLOW_DOWN``, the migration role, checkov."""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.accepted_findings import ACCEPTED_FINDINGS
from infra.config import ConfigError, StackConfig
from infra.packaging import CA_BUNDLE_ENTRY, BuildResult, PackagingError, build_package
from infra.stack import synthesize
from local.aws import LocalAws
from local.deploy import MIGRATION_ROLE, LocalDeploy
from local.function import FunctionError
from local.postgres import EmbeddedPostgres
from local.stack import SynthesizedStack
from tests.helpers import query

from ..conftest import ROOT, Synth
from ..terraform_json import only, ref, resources
from ..test_checkov import resource_types, run_checkov
from .conftest import DEPLOYER_SESSION, UPLOADER_ROLE


def test_rds_log_exports_go_to_encrypted_log_groups_with_retention_created_first(stack: dict[str, Any]) -> None:
    _, database = only(stack, "aws_db_instance")
    groups = {
        name: group
        for name, group in resources(stack, "aws_cloudwatch_log_group").items()
        if "/aws/rds/" in group["name"]
    }
    assert sorted(group["name"] for group in groups.values()) == [
        f"/aws/rds/instance/{database['identifier']}/{export}" for export in ("postgresql", "upgrade")
    ]
    assert sorted(database["enabled_cloudwatch_logs_exports"]) == ["postgresql", "upgrade"]
    for name, group in groups.items():
        assert group["retention_in_days"] == 365
        assert group["kms_key_id"].startswith("${aws_kms_key.")
        assert f"aws_cloudwatch_log_group.{name}" in database["depends_on"]


def test_the_alarm_notifies_no_one_unless_a_topic_or_an_email_is_set(secure: Synth, stack: dict[str, Any]) -> None:
    _, alarm = only(stack, "aws_cloudwatch_metric_alarm")
    assert alarm.get("alarm_actions", []) == []
    _, secure_alarm = only(secure.stack, "aws_cloudwatch_metric_alarm")
    topics = {
        name: topic for name, topic in resources(secure.stack, "aws_sns_topic").items() if name.startswith("alarms")
    }
    (topic_name, topic) = only({"resource": {"t": topics}}, "t")
    assert topic["kms_master_key_id"].startswith("${aws_kms_key.")
    assert secure_alarm["alarm_actions"] == [ref("aws_sns_topic", topic_name, "arn")]
    email = [
        sub for sub in resources(secure.stack, "aws_sns_topic_subscription").values() if sub["protocol"] == "email"
    ]
    assert email == [
        {**email[0], "endpoint": "oncall@example.com", "topic_arn": ref("aws_sns_topic", topic_name, "arn")}
    ]


def test_a_ca_bundle_lands_in_the_package_and_the_function_verifies_the_server(
    secure: Synth, secure_package: BuildResult, ca_bundle: Path, stack: dict[str, Any]
) -> None:
    with zipfile.ZipFile(secure_package.path) as archive:
        assert archive.read(CA_BUNDLE_ENTRY) == ca_bundle.read_bytes()
    _, function = only(secure.stack, "aws_lambda_function")
    variables = function["environment"]["variables"]
    assert (variables["DB_SSLMODE"], variables["DB_SSLROOTCERT"]) == ("verify-full", CA_BUNDLE_ENTRY)
    _, default_function = only(stack, "aws_lambda_function")
    assert default_function["environment"]["variables"]["DB_SSLMODE"] == "require"
    assert "DB_SSLROOTCERT" not in default_function["environment"]["variables"]


def test_down_through_the_function_is_off_unless_the_stack_enables_it(secure: Synth, stack: dict[str, Any]) -> None:
    _, default_function = only(stack, "aws_lambda_function")
    _, secure_function = only(secure.stack, "aws_lambda_function")
    assert default_function["environment"]["variables"]["ALLOW_DOWN"] == "false"
    assert secure_function["environment"]["variables"]["ALLOW_DOWN"] == "true"


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"migration_uploaders": (DEPLOYER_SESSION,)}, "is a session (assumed-role) ARN"),
        ({"deployer_arn": DEPLOYER_SESSION}, "deployer_arn: arn:aws:sts::"),
        ({"migration_uploaders": ("developer",)}, "is not an IAM role or user ARN"),
        ({"migration_secret_arn": "dbmigrate/migrator"}, "migration_secret_arn"),
        ({"db_ca_bundle": Path("/nonexistent/global-bundle.pem")}, "db_ca_bundle"),
        ({"alarm_email": "oncall"}, "alarm_email"),
        ({"alarm_actions": ("oncall-topic",)}, "alarm_actions"),
    ],
)
def test_security_settings_are_checked_and_named(settings: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(named)):
        StackConfig(**settings)


def test_a_stack_asking_for_a_ca_bundle_refuses_a_package_without_one(
    secure_config: StackConfig, package: BuildResult, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=f"has no {CA_BUNDLE_ENTRY}"):
        synthesize(secure_config, package=package, outdir=tmp_path)


@pytest.fixture
def secure_replay(secure: Synth, pg: EmbeddedPostgres, moto_server: LocalAws) -> Iterator[LocalDeploy]:
    """The secure stack played locally: its migration role, its verify-full against the local CA."""
    stack = SynthesizedStack(secure.stack_dir / "cdk.tf.json")
    deploy = LocalDeploy(stack, pg, moto_server.reset(stack.region()))
    deploy.provision()
    yield deploy
    deploy.close()


def test_local_deploy_migrates_as_the_migration_role_over_verified_tls(
    secure_replay: LocalDeploy, pg: EmbeddedPostgres
) -> None:
    created = secure_replay.apply()["result"]
    assert {database["name"]: database["applied"] for database in created["databases"]} == {
        "postgres": [1],
        "app": [1, 20240102090000],
    }
    owner = query(pg, "postgres", "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'app'")
    assert owner == [(MIGRATION_ROLE,)]
    assert query(
        pg, "postgres", "SELECT rolsuper, rolcreaterole FROM pg_roles WHERE rolname = %s", (MIGRATION_ROLE,)
    ) == [(False, False)]


def test_the_packaged_bundle_is_what_the_function_verifies_the_server_with(
    secure_replay: LocalDeploy, pg: EmbeddedPostgres
) -> None:
    # The stack's own DB_SSLROOTCERT, resolved inside the synthesized package (which holds the server's CA).
    secure_replay.overrides["DB_SSLROOTCERT"] = CA_BUNDLE_ENTRY
    created = secure_replay.apply()["result"]
    assert [database["name"] for database in created["databases"]] == ["postgres", "app"]


def test_local_deploy_with_a_ca_that_did_not_sign_the_server_fails_the_apply_naming_tls(
    secure_replay: LocalDeploy, wrong_ca: Path, pg: EmbeddedPostgres
) -> None:
    secure_replay.overrides["DB_SSLROOTCERT"] = str(wrong_ca)  # a valid bundle, but not the server's CA
    with pytest.raises(FunctionError, match="TLS verification of the database server failed"):
        secure_replay.apply()
    assert "app" not in [row[0] for row in query(pg, "postgres", "SELECT datname FROM pg_database")]


@pytest.mark.parametrize("content", [None, "not a certificate\n"])
def test_a_ca_bundle_that_is_missing_or_holds_no_certificate_fails_the_build(
    tmp_path: Path, content: str | None
) -> None:
    bundle = tmp_path / "global-bundle.pem"
    if content is not None:
        bundle.write_text(content)
    with pytest.raises(PackagingError, match=re.escape("global-bundle.pem")):
        build_package(tmp_path / "lambda.zip", ca_bundle=bundle)


def test_checkov_finds_nothing_new_in_the_stack_with_every_security_setting(secure: Synth) -> None:
    results = run_checkov(secure.stack_dir)
    types = resource_types(secure.stack)
    failed = [
        (str(item["check_id"]), types[str(item["resource"]).rsplit(".", 1)[-1]])
        for item in results.get("failed_checks", [])
    ]
    assert [finding for finding in failed if finding not in ACCEPTED_FINDINGS] == []


def test_security_settings_come_from_the_environment_like_every_other() -> None:
    bundle = ROOT / "build" / "test-global-bundle.pem"
    bundle.parent.mkdir(exist_ok=True)
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    try:
        config = StackConfig.from_sources(
            {"allow_down": True},
            {
                "DBMIGRATE_MIGRATION_UPLOADERS": f"{UPLOADER_ROLE}, arn:aws:iam::123456789012:role/release-*",
                "DBMIGRATE_DB_CA_BUNDLE": "build/test-global-bundle.pem",  # relative: from the repository
                "DBMIGRATE_ALLOW_DOWN": "false",
                "DBMIGRATE_ALARM_EMAIL": "oncall@example.com",
            },
        )
    finally:
        bundle.unlink()
    assert config.migration_uploaders == (UPLOADER_ROLE, "arn:aws:iam::123456789012:role/release-*")
    assert config.db_ca_bundle == bundle
    assert (config.allow_down, config.alarm_email) == (False, "oncall@example.com")
