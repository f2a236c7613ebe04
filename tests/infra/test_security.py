"""Who may change a schema, in the synthesized stack: the bucket policy decided by a real
evaluator (tests/infra/iam_policies.py), the key and function policies, the RDS log groups,
the alarm's recipients, and the function's TLS, migration-role and ``down`` settings.

A second stack is synthesized here with every security setting given (uploaders, a
migration role's secret, a CA bundle, ``allow_down``, an alarm e-mail).
"""

from __future__ import annotations

import json
import re
import subprocess
import zipfile
from collections.abc import Iterator
from dataclasses import replace
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

from .conftest import Synth
from .iam_policies import Request, decide, resolve
from .terraform_json import only, ref, resources
from .test_checkov import resource_types, run_checkov

ACCOUNT = "123456789012"
REGION = "eu-west-1"
BUCKET = "dbmigrate-migrations-20240101"
BUCKET_ARN = f"arn:aws:s3:::{BUCKET}"
DEPLOYER_ROLE = f"arn:aws:iam::{ACCOUNT}:role/ci-deploy"
DEPLOYER_SESSION = f"arn:aws:sts::{ACCOUNT}:assumed-role/ci-deploy/github-actions"
UPLOADER_ROLE = f"arn:aws:iam::{ACCOUNT}:role/release-uploader"
OTHER_ROLE = f"arn:aws:iam::{ACCOUNT}:role/developer"
MIGRATION_SECRET = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:dbmigrate/migrator-AbCdEf"
EVERYTHING_ON_S3 = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}


@pytest.fixture(scope="session")
def ca_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ca")
    bundle = folder / "global-bundle.pem"
    new_ca = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test CA"]
    subprocess.run(
        [*new_ca, "-keyout", str(folder / "ca.key"), "-out", str(bundle)],
        check=True,
        capture_output=True,
    )
    return bundle


@pytest.fixture(scope="session")
def secure_config(stack_config: StackConfig, ca_bundle: Path) -> StackConfig:
    return replace(
        stack_config,
        migration_uploaders=(UPLOADER_ROLE,),
        allow_down=True,
        migration_secret_arn=MIGRATION_SECRET,
        db_ca_bundle=ca_bundle,
        alarm_email="oncall@example.com",
    )


@pytest.fixture(scope="session")
def secure_package(secure_config: StackConfig, tmp_path_factory: pytest.TempPathFactory) -> BuildResult:
    return build_package(tmp_path_factory.mktemp("package") / "lambda.zip", ca_bundle=secure_config.db_ca_bundle)


@pytest.fixture(scope="session")
def secure(secure_config: StackConfig, secure_package: BuildResult, tmp_path_factory: pytest.TempPathFactory) -> Synth:
    stack_file = synthesize(secure_config, package=secure_package.path, outdir=tmp_path_factory.mktemp("synth-secure"))
    return Synth(json.loads(stack_file.read_text(encoding="utf-8")), stack_file.parent, 0.0)


def concrete(stack: dict[str, Any]) -> dict[str, str]:
    """What AWS decides at apply time, for the references the policies hold."""
    data = stack["data"]
    bucket, _ = only(stack, "aws_s3_bucket")
    values = {
        f"aws_s3_bucket.{bucket}.arn": BUCKET_ARN,
        f"data.aws_caller_identity.{next(iter(data['aws_caller_identity']))}.account_id": ACCOUNT,
        f"data.aws_partition.{next(iter(data['aws_partition']))}.partition": "aws",
        f"data.aws_region.{next(iter(data['aws_region']))}.region": REGION,
        # The issuer of the deploying session: its role (what aws:PrincipalArn holds for it).
        f"data.aws_iam_session_context.{next(iter(data['aws_iam_session_context']))}.issuer_arn": DEPLOYER_ROLE,
    }
    for name in resources(stack, "aws_kms_key"):
        values[f"aws_kms_key.{name}.arn"] = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1111-2222"
    for name in resources(stack, "aws_sqs_queue"):
        values[f"aws_sqs_queue.{name}.arn"] = f"arn:aws:sqs:{REGION}:{ACCOUNT}:dbmigrate-migrate-failed"
    for name in resources(stack, "aws_cloudwatch_log_group"):
        values[f"aws_cloudwatch_log_group.{name}.arn"] = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{name}"
    database = resources(stack, "aws_db_instance")
    for name in database:
        values[f"aws_db_instance.{name}.master_user_secret[0].secret_arn"] = (
            f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:rds!db-1234-AbCdEf"
        )
    return values


def bucket_policy(stack: dict[str, Any]) -> dict[str, Any]:
    _, policy = only(stack, "aws_s3_bucket_policy")
    return resolve(policy["policy"], concrete(stack))


def s3_request(principal: str, action: str, key: str, policy: dict[str, Any], *, tls: bool = True) -> Request:
    """A request of a principal whose own IAM policy allows all of S3; ``principal_arn`` as AWS sets it."""
    principal_arn = DEPLOYER_ROLE if principal == DEPLOYER_SESSION else principal
    return Request(
        principal=principal,
        action=action,
        resource=f"{BUCKET_ARN}/{key}",
        context={"aws:PrincipalArn": principal_arn, "aws:SecureTransport": "true" if tls else "false"},
        identity_policies=[EVERYTHING_ON_S3],
        resource_policy=policy,
    )


def test_only_the_deployer_and_listed_uploaders_write_or_delete_under_the_prefix(secure: Synth) -> None:
    policy = bucket_policy(secure.stack)
    key = "migrations/app/0002_orders.up.sql"
    cases = {
        (DEPLOYER_SESSION, "s3:PutObject"): "Allowed",
        (DEPLOYER_SESSION, "s3:DeleteObject"): "Allowed",
        (UPLOADER_ROLE, "s3:PutObject"): "Allowed",
        (UPLOADER_ROLE, "s3:DeleteObjectVersion"): "Allowed",
        (OTHER_ROLE, "s3:PutObject"): "ExplicitlyDenied",
        (OTHER_ROLE, "s3:DeleteObject"): "ExplicitlyDenied",
        (OTHER_ROLE, "s3:DeleteObjectVersion"): "ExplicitlyDenied",
        (OTHER_ROLE, "s3:ReplicateObject"): "ExplicitlyDenied",
        (OTHER_ROLE, "s3:GetObject"): "Allowed",  # reading is not changing a schema
    }
    requests = [s3_request(principal, action, key, policy) for principal, action in cases]
    assert dict(zip(cases, decide(requests), strict=True)) == cases


def test_outside_the_prefix_the_write_rule_does_not_apply_but_tls_still_does(secure: Synth) -> None:
    policy = bucket_policy(secure.stack)
    requests = [
        s3_request(OTHER_ROLE, "s3:PutObject", "notes/readme.txt", policy),
        s3_request(OTHER_ROLE, "s3:PutObject", "migrationsX/app/0002_x.up.sql", policy),
        s3_request(DEPLOYER_SESSION, "s3:PutObject", "migrations/app/0002_x.up.sql", policy, tls=False),
    ]
    assert decide(requests) == ["Allowed", "Allowed", "ExplicitlyDenied"]


def test_with_no_uploaders_listed_only_the_deploying_principal_writes(stack: dict[str, Any]) -> None:
    policy = bucket_policy(stack)
    key = "migrations/app/0002_orders.up.sql"
    requests = [s3_request(principal, "s3:PutObject", key, policy) for principal in (DEPLOYER_SESSION, UPLOADER_ROLE)]
    assert decide(requests) == ["Allowed", "ExplicitlyDenied"]


def test_migration_objects_are_written_after_the_bucket_policy_admits_the_deployer(stack: dict[str, Any]) -> None:
    policy_name, _ = only(stack, "aws_s3_bucket_policy")
    objects = resources(stack, "aws_s3_object")
    assert objects
    assert all(f"aws_s3_bucket_policy.{policy_name}" in obj["depends_on"] for obj in objects.values())


def test_the_deployer_is_the_issuer_role_of_the_callers_session(stack: dict[str, Any]) -> None:
    caller = next(iter(stack["data"]["aws_caller_identity"]))
    (session,) = stack["data"]["aws_iam_session_context"].values()
    assert session["arn"] == f"${{data.aws_caller_identity.{caller}.arn}}"


def kms_key_policy(stack: dict[str, Any]) -> dict[str, Any]:
    (key,) = resources(stack, "aws_kms_key").values()
    return resolve(key["policy"], concrete(stack))


def test_s3_may_encrypt_notifications_for_the_topic_only_for_the_migrations_bucket(stack: dict[str, Any]) -> None:
    policy = kms_key_policy(stack)
    key_arn = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1111-2222"

    def from_s3(source_arn: str, account: str = ACCOUNT) -> Request:
        return Request(
            principal="s3.amazonaws.com",
            action="kms:GenerateDataKey",
            resource=key_arn,
            context={"aws:SourceArn": source_arn, "aws:SourceAccount": account},
            resource_policy=policy,
        )

    decisions = decide(
        [from_s3(BUCKET_ARN), from_s3("arn:aws:s3:::someone-elses-bucket"), from_s3(BUCKET_ARN, "999999999999")]
    )
    assert decisions == ["Allowed", "ImplicitlyDenied", "ImplicitlyDenied"]


def function_policy(stack: dict[str, Any]) -> dict[str, Any]:
    (policy,) = (item for name, item in resources(stack, "aws_iam_role_policy").items() if "function" in name)
    return resolve(policy["policy"], concrete(stack))


def test_the_function_decrypts_only_through_the_services_it_uses(stack: dict[str, Any]) -> None:
    identity, key_policy = function_policy(stack), kms_key_policy(stack)  # the key delegates to IAM
    role = f"arn:aws:iam::{ACCOUNT}:role/dbmigrate-migrate"
    key_arn = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1111-2222"

    def decrypt(via: str | None) -> Request:
        context = {"aws:PrincipalArn": role, **({"kms:ViaService": via} if via else {})}
        return Request(
            principal=role,
            action="kms:Decrypt",
            resource=key_arn,
            context=context,
            identity_policies=[identity],
            resource_policy=key_policy,
        )

    services = [f"{name}.{REGION}.amazonaws.com" for name in ("secretsmanager", "s3", "sqs", "lambda")]
    decisions = decide([*(decrypt(via) for via in services), decrypt(None), decrypt(f"ec2.{REGION}.amazonaws.com")])
    assert decisions == ["Allowed"] * 4 + ["ImplicitlyDenied", "ImplicitlyDenied"]


def test_the_function_reads_the_migration_roles_secret_and_no_other(secure: Synth, stack: dict[str, Any]) -> None:
    identity = function_policy(secure.stack)
    role = f"arn:aws:iam::{ACCOUNT}:role/dbmigrate-migrate"
    master = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:rds!db-1234-AbCdEf"

    def read(secret: str) -> Request:
        return Request(
            principal=role,
            action="secretsmanager:GetSecretValue",
            resource=secret,
            context={"aws:PrincipalArn": role},
            identity_policies=[identity],
        )

    assert decide([read(MIGRATION_SECRET), read(master)]) == ["Allowed", "ImplicitlyDenied"]
    _, function = only(secure.stack, "aws_lambda_function")
    assert function["environment"]["variables"]["DB_SECRET_ARN"] == MIGRATION_SECRET
    _, default_function = only(stack, "aws_lambda_function")
    database, _ = only(stack, "aws_db_instance")
    assert default_function["environment"]["variables"]["DB_SECRET_ARN"] == ref(
        "aws_db_instance", database, "master_user_secret[0].secret_arn"
    )


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


def test_cloudwatch_alarms_may_encrypt_for_the_alarm_topic_only_from_this_account(stack: dict[str, Any]) -> None:
    policy = kms_key_policy(stack)
    key_arn = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1111-2222"

    def from_alarm(account: str) -> Request:
        return Request(
            principal="cloudwatch.amazonaws.com",
            action="kms:GenerateDataKey",
            resource=key_arn,
            context={
                "aws:SourceArn": f"arn:aws:cloudwatch:{REGION}:{account}:alarm:dbmigrate-migrate-failed-async-runs",
                "aws:SourceAccount": account,
            },
            resource_policy=policy,
        )

    assert decide([from_alarm(ACCOUNT), from_alarm("999999999999")]) == ["Allowed", "ImplicitlyDenied"]


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
        synthesize(secure_config, package=package.path, outdir=tmp_path)


@pytest.fixture
def secure_replay(secure: Synth, pg: EmbeddedPostgres) -> Iterator[LocalDeploy]:
    """The secure stack played locally: its migration role, its verify-full against the local CA."""
    stack = SynthesizedStack(secure.stack_dir / "cdk.tf.json")
    with LocalAws(stack.region()) as aws:
        aws.reset()
        deploy = LocalDeploy(stack, pg, aws)
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


def test_local_deploy_with_a_ca_that_did_not_sign_the_server_fails_the_apply_naming_tls(
    secure_replay: LocalDeploy, ca_bundle: Path, pg: EmbeddedPostgres
) -> None:
    secure_replay.overrides["DB_SSLROOTCERT"] = str(ca_bundle)  # a valid bundle, but not the server's CA
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
