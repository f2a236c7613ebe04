"""The synthesized bucket, key and function policies, decided by a real evaluator
(``tests/infra/iam_policies.py``) for allowed and denied principals, services and sources."""

from __future__ import annotations

import json
from typing import Any

from ..conftest import Synth
from ..iam_policies import Request, decide, resolve
from ..terraform_json import only, ref, resources
from .conftest import (
    ACCOUNT,
    BUCKET_ARN,
    DEPLOYER_ROLE,
    DEPLOYER_SESSION,
    MIGRATION_SECRET,
    OTHER_ROLE,
    REGION,
    UPLOADER_ROLE,
    concrete,
)

EVERYTHING_ON_S3 = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}


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


def test_a_deployer_given_by_setting_is_named_itself_and_the_callers_session_is_not_read(secure: Synth) -> None:
    assert "aws_iam_session_context" not in secure.stack["data"]
    _, policy = only(secure.stack, "aws_s3_bucket_policy")
    writers = json.loads(policy["policy"])["Statement"][1]["Condition"]["ArnNotLike"]["aws:PrincipalArn"]
    assert writers == [DEPLOYER_ROLE, UPLOADER_ROLE]


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
