"""A second stack, synthesized once per session with every security setting given (the deployer
and uploaders, a migration role's secret, a CA bundle, ``allow_down``, an alarm e-mail), and the values AWS
decides at apply time for the references its policies hold."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from infra.config import StackConfig
from infra.packaging import BuildResult, build_package
from infra.stack import synthesize
from local.postgres import EmbeddedPostgres

from ..conftest import Synth
from ..terraform_json import only, resources

ACCOUNT = "123456789012"
REGION = "eu-west-1"
BUCKET = "dbmigrate-migrations-20240101"
BUCKET_ARN = f"arn:aws:s3:::{BUCKET}"
DEPLOYER_ROLE = f"arn:aws:iam::{ACCOUNT}:role/ci-deploy"
DEPLOYER_SESSION = f"arn:aws:sts::{ACCOUNT}:assumed-role/ci-deploy/github-actions"
UPLOADER_ROLE = f"arn:aws:iam::{ACCOUNT}:role/release-uploader"
OTHER_ROLE = f"arn:aws:iam::{ACCOUNT}:role/developer"
MIGRATION_SECRET = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:dbmigrate/migrator-AbCdEf"


@pytest.fixture(scope="session")
def ca_bundle(pg_server: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stack's ``db_ca_bundle``: the CA of the tests' PostgreSQL server, standing in for RDS's."""
    bundle = tmp_path_factory.mktemp("ca") / "global-bundle.pem"
    bundle.write_bytes(pg_server.ca_file.read_bytes())
    return bundle


@pytest.fixture(scope="session")
def wrong_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid CA bundle that signed nothing the tests connect to."""
    folder = tmp_path_factory.mktemp("wrong-ca")
    bundle = folder / "other-ca.pem"
    new_ca = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=other CA"]
    subprocess.run([*new_ca, "-keyout", str(folder / "ca.key"), "-out", str(bundle)], check=True, capture_output=True)
    return bundle


@pytest.fixture(scope="session")
def secure_config(stack_config: StackConfig, ca_bundle: Path) -> StackConfig:
    return replace(
        stack_config,
        deployer_arn=DEPLOYER_ROLE,
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
    stack_file = synthesize(secure_config, package=secure_package, outdir=tmp_path_factory.mktemp("synth-secure"))
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
    }
    for name in data.get("aws_iam_session_context", {}):
        # The issuer of the deploying session: its role (what aws:PrincipalArn holds for it).
        values[f"data.aws_iam_session_context.{name}.issuer_arn"] = DEPLOYER_ROLE
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
