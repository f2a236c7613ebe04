"""The stack's customer-managed KMS key: database storage and secret, bucket, topic,
queue, log groups, the function's environment and a fleet's state machine are encrypted with it."""

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
        self._account = account
        self._notifying_bucket_arns: tuple[str, ...] = ()
        self._state_machine_log_delivery = False
        key = KmsKey(
            self,
            "key",
            description=f"{name}: database, migrations bucket, topic, queue, logs and function environment",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            policy=self._policy(),
        )
        KmsAlias(self, "alias", name=f"alias/{name}", target_key_id=key.key_id)
        self._key = key
        self.arn = key.arn

    def allow_bucket_notifications(self, *bucket_arns: str) -> None:
        """Let S3 encrypt event notifications of these buckets (and only these) for the topic."""
        self._notifying_bucket_arns = tuple(bucket_arns)
        self._key.policy = self._policy()

    def allow_state_machine_log_delivery(self) -> None:
        """Let log delivery decrypt the logs of a state machine encrypted with this key (a fleet's)."""
        self._state_machine_log_delivery = True
        self._key.policy = self._policy()

    def _policy(self) -> str:
        account = self._account
        return policies.kms_key_policy(
            account_id=account.account_id,
            partition=account.partition,
            region=account.region,
            notifying_bucket_arns=self._notifying_bucket_arns,
            state_machine_log_delivery=self._state_machine_log_delivery,
        )
