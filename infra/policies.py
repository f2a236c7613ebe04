"""IAM and resource policies as small functions: each returns one JSON document.

Arguments are ARNs or names (plain strings or cdktf tokens, which resolve inside the
JSON at synth time). Keys are sorted so the same inputs give the same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

__all__ = [
    "WRITE_ACTIONS",
    "assume_role",
    "document",
    "fleet_permissions",
    "function_permissions",
    "kms_key_policy",
    "log_delivery",
    "migrations_bucket_policy",
    "sns_topic_policy",
    "state_machine_log_source",
    "tls_only_bucket_policy",
]

Statement = dict[str, Any]

# Lambda checks these on the execution role when it attaches the function to subnets;
# EC2 does not support narrowing them to resources for this use (Lambda validates them on "*").
# The services that use the keys for the function: S3 (migration files), Secrets Manager (the
# database secret), SQS (the dead-letter queue) and Lambda (the encrypted environment).
KEY_USERS = ("lambda", "s3", "secretsmanager", "sqs")
ENI_ACTIONS = (
    "ec2:AssignPrivateIpAddresses",
    "ec2:CreateNetworkInterface",
    "ec2:DeleteNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSubnets",
    "ec2:UnassignPrivateIpAddresses",
)

# What changes the files under the prefix: new or replaced objects (PutObject also covers
# CopyObject and multipart uploads), deletions, versions, and replication into the bucket.
WRITE_ACTIONS = (
    "s3:DeleteObject",
    "s3:DeleteObjectVersion",
    "s3:PutObject",
    "s3:ReplicateDelete",
    "s3:ReplicateObject",
)


def document(*statements: Statement) -> str:
    """A policy document with the given statements."""
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)}, sort_keys=True, indent=None)


def assume_role(service: str, *, account_id: str | None = None) -> str:
    """Trust policy: ``service`` (e.g. ``lambda.amazonaws.com``) may assume the role."""
    statement: Statement = {
        "Effect": "Allow",
        "Principal": {"Service": service},
        "Action": "sts:AssumeRole",
    }
    if account_id is not None:
        statement["Condition"] = {"StringEquals": {"aws:SourceAccount": account_id}}
    return document(statement)


def function_permissions(  # noqa: PLR0913  keyword-only: one per resource the statements grant on, named at the call
    *,
    bucket_arn: str,
    prefix: str,
    secret_arns: Sequence[str],
    kms_key_arns: Sequence[str],
    region: str,
    log_group_arn: str,
    dead_letter_queue_arn: str,
    fleet_state_machine_arn: str | None = None,
    fleet_kms_key_arn: str | None = None,
) -> str:
    """The migration function's permissions: no more than one run needs.

    Read the migration files under ``prefix`` (list and get), read the database secrets
    (its server's, and a fleet's servers'), decrypt with the given keys (bucket objects,
    secret, environment) and encrypt for the dead-letter queue, only through those services
    (``kms:ViaService``), write its own log group, send failed events to its queue, manage
    its network interfaces, and send traces. With a fleet: start, list and describe the
    executions of the fleet's state machine (and describe it), nothing else of Step Functions,
    and use ``fleet_kms_key_arn`` (the key that encrypts the state machine) for that state
    machine's data only.
    """
    secrets = list(dict.fromkeys(secret_arns))
    statements: list[Statement] = [
        {
            "Sid": "ListMigrations",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": bucket_arn,
            "Condition": {"StringLike": {"s3:prefix": [f"{prefix}*"]}},
        },
        {"Sid": "ReadMigrations", "Effect": "Allow", "Action": "s3:GetObject", "Resource": f"{bucket_arn}/{prefix}*"},
        {
            "Sid": "ReadDatabaseSecret",
            "Effect": "Allow",
            "Action": "secretsmanager:GetSecretValue",
            "Resource": secrets[0] if len(secrets) == 1 else secrets,
        },
        {
            "Sid": "UseKeys",
            "Effect": "Allow",
            "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
            "Resource": list(kms_key_arns),
            "Condition": {
                "StringEquals": {"kms:ViaService": [f"{service}.{region}.amazonaws.com" for service in KEY_USERS]}
            },
        },
        {
            "Sid": "WriteLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": f"{log_group_arn}:*",
        },
        {"Sid": "DeadLetters", "Effect": "Allow", "Action": "sqs:SendMessage", "Resource": dead_letter_queue_arn},
        {"Sid": "NetworkInterfaces", "Effect": "Allow", "Action": list(ENI_ACTIONS), "Resource": "*"},
        {
            "Sid": "Traces",
            "Effect": "Allow",
            "Action": ["xray:PutTelemetryRecords", "xray:PutTraceSegments"],
            "Resource": "*",
        },
    ]
    if fleet_state_machine_arn is not None:
        if fleet_kms_key_arn is None:
            raise ValueError("a fleet's state machine is encrypted: name its key (fleet_kms_key_arn)")
        statements += fleet_starter(fleet_state_machine_arn, kms_key_arn=fleet_kms_key_arn)
    return document(*statements)


def fleet_starter(state_machine_arn: str, *, kms_key_arn: str) -> list[Statement]:
    """Start the fleet's state machine and follow its executions (``lambda_src/fleet_run.py``).

    The state machine is encrypted with ``kms_key_arn``: Step Functions uses the key with the
    caller's permissions on StartExecution (encrypts the input: ``kms:GenerateDataKey``, and
    ``kms:Decrypt``), DescribeExecution and DescribeStateMachine (decrypt the input, output and
    definition); ListExecutions returns nothing encrypted.
    """
    executions = state_machine_arn.replace(":stateMachine:", ":execution:", 1) + ":*"
    return [
        {
            "Sid": "StartFleet",
            "Effect": "Allow",
            "Action": ["states:StartExecution", "states:ListExecutions", "states:DescribeStateMachine"],
            "Resource": state_machine_arn,
        },
        {"Sid": "FollowFleet", "Effect": "Allow", "Action": "states:DescribeExecution", "Resource": executions},
        state_machine_key_use("FleetData", kms_key_arn=kms_key_arn, state_machine_arn=state_machine_arn),
    ]


def state_machine_key_use(sid: str, *, kms_key_arn: str, state_machine_arn: str) -> Statement:
    """Use the key only for the data of one state machine: Step Functions puts the state machine's
    ARN in the encryption context (``aws:states:stateMachineArn``) of every KMS call it makes for
    its definition and executions."""
    return {
        "Sid": sid,
        "Effect": "Allow",
        "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
        "Resource": kms_key_arn,
        "Condition": {"StringEquals": {"kms:EncryptionContext:aws:states:stateMachineArn": state_machine_arn}},
    }


# What a state machine's role needs to log to CloudWatch Logs, as the Step Functions guide lists
# it ("IAM policies for logging to CloudWatch Logs"): log deliveries are not resources IAM can
# name, so these are granted on "*". The log group is named by the logging configuration.
STATE_MACHINE_LOG_DELIVERY = (
    "logs:CreateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:DescribeLogGroups",
    "logs:DescribeResourcePolicies",
    "logs:GetLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:UpdateLogDelivery",
)


def fleet_permissions(*, function_arn: str, state_machine_arn: str, kms_key_arn: str, log_source_arn: str) -> str:
    """The fleet state machine's permissions: invoke the migration function (and its versions), use
    the key for its own definition and execution history (and no other state machine's), deliver
    its logs, send traces.

    Its logs: a state machine encrypted with a customer key encrypts what it hands to log delivery
    with that key too, under the encryption context ``SourceArn`` (``log_source_arn``, this
    account's and region's CloudWatch Logs: ``arn:...:logs:<region>:<account>:*``); log delivery
    decrypts it (``kms_key_policy(state_machine_log_delivery=True)``).
    """
    return document(
        {
            "Sid": "InvokeMigrationFunction",
            "Effect": "Allow",
            "Action": "lambda:InvokeFunction",
            "Resource": [function_arn, f"{function_arn}:*"],
        },
        state_machine_key_use("OwnData", kms_key_arn=kms_key_arn, state_machine_arn=state_machine_arn),
        {
            "Sid": "EncryptLogsForDelivery",
            "Effect": "Allow",
            "Action": "kms:GenerateDataKey",
            "Resource": kms_key_arn,
            "Condition": {"ArnLike": {"kms:EncryptionContext:SourceArn": log_source_arn}},
        },
        {"Sid": "DeliverLogs", "Effect": "Allow", "Action": list(STATE_MACHINE_LOG_DELIVERY), "Resource": "*"},
        {
            "Sid": "Traces",
            "Effect": "Allow",
            "Action": [
                "xray:GetSamplingRules",
                "xray:GetSamplingTargets",
                "xray:PutTelemetryRecords",
                "xray:PutTraceSegments",
            ],
            "Resource": "*",
        },
    )


def log_delivery(log_group_arn: str) -> str:
    """VPC flow logs may write to one log group."""
    return document(
        {
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"],
            "Resource": [log_group_arn, f"{log_group_arn}:*"],
        }
    )


def tls_only_bucket_policy(bucket_arn: str) -> str:
    """Refuse every request to the bucket that does not use TLS."""
    return document(_deny_insecure_transport(bucket_arn))


def _deny_insecure_transport(bucket_arn: str) -> Statement:
    return {
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [bucket_arn, f"{bucket_arn}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }


def migrations_bucket_policy(*, bucket_arn: str, prefix: str, writers: Sequence[str]) -> str:
    """TLS only, and only ``writers`` may change what is under ``prefix``.

    ``writers`` are IAM role or user ARNs (wildcards allowed), matched against
    ``aws:PrincipalArn``: for a session of an assumed role that is the role's ARN, so
    listing a role admits every session of it. Everyone else is denied the writes of
    ``WRITE_ACTIONS`` under the prefix, whatever their IAM policies allow.
    """
    return document(
        _deny_insecure_transport(bucket_arn),
        {
            "Sid": "OnlyListedPrincipalsWriteMigrations",
            "Effect": "Deny",
            "Principal": "*",
            "Action": list(WRITE_ACTIONS),
            "Resource": f"{bucket_arn}/{prefix}*",
            "Condition": {"ArnNotLike": {"aws:PrincipalArn": list(writers)}},
        },
    )


def sns_topic_policy(*, topic_arn: str, bucket_arn: str, account_id: str) -> str:
    """Only the migrations bucket, in this account, may publish to the topic; TLS only."""
    return document(
        {
            "Sid": "BucketPublishes",
            "Effect": "Allow",
            "Principal": {"Service": "s3.amazonaws.com"},
            "Action": "SNS:Publish",
            "Resource": topic_arn,
            "Condition": {"ArnLike": {"aws:SourceArn": bucket_arn}, "StringEquals": {"aws:SourceAccount": account_id}},
        },
        {
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "SNS:Publish",
            "Resource": topic_arn,
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        },
    )


def kms_key_policy(
    *,
    account_id: str,
    partition: str,
    region: str,
    notifying_bucket_arns: Sequence[str] = (),
    state_machine_log_delivery: bool = False,
) -> str:
    """The stack's key: the account administers it through IAM; the services that encrypt
    with it on our behalf get only what they need.

    CloudWatch Logs encrypts the log groups; S3 publishes event notifications of the given
    buckets (``aws:SourceArn``) to the encrypted topic (without this, S3 cannot send to an
    SSE-KMS topic); CloudWatch alarms of this account publish to the encrypted alarm topic.
    With ``state_machine_log_delivery`` (a fleet's state machine, encrypted with this key, logs):
    log delivery decrypts what the state machine encrypted for it, with this account's and
    region's logs as the encryption context's ``SourceArn`` (``fleet_permissions``). Step
    Functions itself needs no statement: it uses the key with its callers' IAM permissions.
    """
    statements: list[Statement] = [
        {
            "Sid": "AccountAdministersThroughIam",
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:{partition}:iam::{account_id}:root"},
            "Action": "kms:*",
            "Resource": "*",
        },
        {
            "Sid": "CloudWatchLogsEncrypts",
            "Effect": "Allow",
            "Principal": {"Service": f"logs.{region}.amazonaws.com"},
            "Action": ["kms:Decrypt*", "kms:Describe*", "kms:Encrypt*", "kms:GenerateDataKey*", "kms:ReEncrypt*"],
            "Resource": "*",
            "Condition": {
                "ArnLike": {"kms:EncryptionContext:aws:logs:arn": f"arn:{partition}:logs:{region}:{account_id}:*"}
            },
        },
        {
            "Sid": "CloudWatchAlarmsPublishToEncryptedTopic",
            "Effect": "Allow",
            "Principal": {"Service": "cloudwatch.amazonaws.com"},
            "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
            "Resource": "*",
            "Condition": {
                "ArnLike": {"aws:SourceArn": f"arn:{partition}:cloudwatch:{region}:{account_id}:alarm:*"},
                "StringEquals": {"aws:SourceAccount": account_id},
            },
        },
    ]
    if notifying_bucket_arns:
        statements.append(
            {
                "Sid": "S3PublishesToEncryptedTopic",
                "Effect": "Allow",
                "Principal": {"Service": "s3.amazonaws.com"},
                "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
                "Resource": "*",
                "Condition": {
                    "ArnEquals": {"aws:SourceArn": list(notifying_bucket_arns)},
                    "StringEquals": {"aws:SourceAccount": account_id},
                },
            }
        )
    if state_machine_log_delivery:
        statements.append(
            {
                "Sid": "LogDeliveryDecryptsStateMachineLogs",
                "Effect": "Allow",
                "Principal": {"Service": "delivery.logs.amazonaws.com"},
                "Action": "kms:Decrypt",
                "Resource": "*",
                "Condition": {
                    "ArnLike": {
                        "kms:EncryptionContext:SourceArn": state_machine_log_source(
                            partition=partition, region=region, account_id=account_id
                        )
                    }
                },
            }
        )
    return document(*statements)


def state_machine_log_source(*, partition: str, region: str, account_id: str) -> str:
    """The encryption context's ``SourceArn`` of a state machine's logs on their way to log delivery."""
    return f"arn:{partition}:logs:{region}:{account_id}:*"
