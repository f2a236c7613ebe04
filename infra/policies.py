"""IAM and resource policies as small functions: each returns one JSON document.

Arguments are ARNs or names (plain strings or cdktf tokens, which resolve inside the
JSON at synth time). Keys are sorted so the same inputs give the same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

__all__ = [
    "assume_role",
    "document",
    "function_permissions",
    "kms_key_policy",
    "log_delivery",
    "sns_topic_policy",
    "tls_only_bucket_policy",
]

Statement = dict[str, Any]

# Lambda checks these on the execution role when it attaches the function to subnets;
# EC2 does not support narrowing them to resources for this use (Lambda validates them on "*").
ENI_ACTIONS = (
    "ec2:AssignPrivateIpAddresses",
    "ec2:CreateNetworkInterface",
    "ec2:DeleteNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSubnets",
    "ec2:UnassignPrivateIpAddresses",
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


def function_permissions(
    *,
    bucket_arn: str,
    prefix: str,
    secret_arn: str,
    kms_key_arns: Sequence[str],
    log_group_arn: str,
    dead_letter_queue_arn: str,
) -> str:
    """The migration function's permissions: no more than one run needs.

    Read the migration files under ``prefix`` (list and get), read the database secret,
    decrypt with the given keys (bucket objects, secret, environment) and encrypt for the
    dead-letter queue, write its own log group, send failed events to its queue, manage
    its network interfaces, and send traces.
    """
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
            "Resource": secret_arn,
        },
        {
            "Sid": "UseKeys",
            "Effect": "Allow",
            "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
            "Resource": list(kms_key_arns),
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
    return document(*statements)


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
    return document(
        {
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [bucket_arn, f"{bucket_arn}/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }
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


def kms_key_policy(*, account_id: str, partition: str, region: str) -> str:
    """The stack's key: the account administers it through IAM; the services that encrypt
    with it on our behalf get only what they need.

    CloudWatch Logs encrypts the log groups; S3 publishes event notifications to the
    encrypted topic (without this, S3 cannot send to an SSE-KMS topic).
    """
    return document(
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
            "Sid": "S3PublishesToEncryptedTopic",
            "Effect": "Allow",
            "Principal": {"Service": "s3.amazonaws.com"},
            "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
            "Resource": "*",
            "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
        },
    )
