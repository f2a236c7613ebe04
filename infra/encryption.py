"""The stack's customer-managed KMS key: database storage and secret, bucket, topic,
queue, log groups and the function's environment are encrypted with it."""

from __future__ import annotations

from cdktf_cdktf_provider_aws.data_aws_caller_identity import DataAwsCallerIdentity
from cdktf_cdktf_provider_aws.data_aws_iam_session_context import DataAwsIamSessionContext
from cdktf_cdktf_provider_aws.data_aws_partition import DataAwsPartition
from cdktf_cdktf_provider_aws.data_aws_region import DataAwsRegion
from cdktf_cdktf_provider_aws.kms_alias import KmsAlias
from cdktf_cdktf_provider_aws.kms_key import KmsKey
from constructs import Construct

from . import policies

__all__ = ["Account", "EncryptionKey"]


class Account(Construct):
    """Where the stack is deployed, read at plan time: account id, partition, region;
    ``user_id``, the deploying principal's unique id (``AROA...:session`` for a role), which
    S3 events carry; and ``deployer_arn``, the IAM role (or user) that runs the plan (the
    issuer of an assumed-role session, which is what ``aws:PrincipalArn`` holds for its
    requests)."""

    def __init__(self, scope: Construct, id: str) -> None:
        super().__init__(scope, id)
        self._caller = DataAwsCallerIdentity(self, "caller")
        self.account_id = self._caller.account_id
        self.user_id = self._caller.user_id
        self.partition = DataAwsPartition(self, "partition").partition
        self.region = DataAwsRegion(self, "region").region
        self._deployer_arn: str | None = None

    @property
    def deployer_arn(self) -> str:
        """Added on first use: for an assumed role the provider reads the role (``iam:GetRole``)."""
        if self._deployer_arn is None:
            self._deployer_arn = DataAwsIamSessionContext(self, "deployer", arn=self._caller.arn).issuer_arn
        return self._deployer_arn


class EncryptionKey(Construct):
    """A rotating key with a policy that lets Logs and S3 (to the topic) use it."""

    def __init__(self, scope: Construct, id: str, *, name: str, account: Account) -> None:
        super().__init__(scope, id)
        key = KmsKey(
            self,
            "key",
            description=f"{name}: database, migrations bucket, topic, queue, logs and function environment",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            policy=policies.kms_key_policy(
                account_id=account.account_id, partition=account.partition, region=account.region
            ),
        )
        KmsAlias(self, "alias", name=f"alias/{name}", target_key_id=key.key_id)
        self._key, self._account = key, account
        self.arn = key.arn

    def allow_bucket_notifications(self, *bucket_arns: str) -> None:
        """Let S3 encrypt event notifications of these buckets (and only these) for the topic."""
        account = self._account
        self._key.policy = policies.kms_key_policy(
            account_id=account.account_id,
            partition=account.partition,
            region=account.region,
            notifying_bucket_arns=bucket_arns,
        )
