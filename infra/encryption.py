"""The stack's customer-managed KMS key: database storage and secret, bucket, topic,
queue, log groups and the function's environment are encrypted with it."""

from __future__ import annotations

from cdktf_cdktf_provider_aws.data_aws_caller_identity import DataAwsCallerIdentity
from cdktf_cdktf_provider_aws.data_aws_partition import DataAwsPartition
from cdktf_cdktf_provider_aws.data_aws_region import DataAwsRegion
from cdktf_cdktf_provider_aws.kms_alias import KmsAlias
from cdktf_cdktf_provider_aws.kms_key import KmsKey
from constructs import Construct

from . import policies

__all__ = ["Account", "EncryptionKey"]


class Account(Construct):
    """Where the stack is deployed: account id, partition and region, read at plan time;
    ``user_id`` is the deploying principal's unique id (``AROA...:session`` for a role)."""

    def __init__(self, scope: Construct, id: str) -> None:
        super().__init__(scope, id)
        caller = DataAwsCallerIdentity(self, "caller")
        self.account_id = caller.account_id
        self.user_id = caller.user_id
        self.partition = DataAwsPartition(self, "partition").partition
        self.region = DataAwsRegion(self, "region").region


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
        self.arn = key.arn
