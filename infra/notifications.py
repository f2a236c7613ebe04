"""Uploads outside Terraform also run the migrations: S3 -> SNS -> Lambda.

The bucket notifies an encrypted topic of every new ``.sql`` object under the prefix;
only that bucket may publish; the topic invokes the function asynchronously (failures
go to its dead-letter queue). Going through SNS leaves room for other subscribers.
"""

from __future__ import annotations

from cdktf_cdktf_provider_aws.lambda_permission import LambdaPermission
from cdktf_cdktf_provider_aws.s3_bucket_notification import S3BucketNotification, S3BucketNotificationTopic
from cdktf_cdktf_provider_aws.sns_topic import SnsTopic
from cdktf_cdktf_provider_aws.sns_topic_policy import SnsTopicPolicy
from cdktf_cdktf_provider_aws.sns_topic_subscription import SnsTopicSubscription
from constructs import Construct

from . import policies

__all__ = ["UploadNotifications"]


class UploadNotifications(Construct):
    """Topic, topic policy, bucket notification, subscription and invoke permission.

    Attributes: ``topic_arn``.
    """

    def __init__(  # noqa: PLR0913  a cdktf construct: (scope, id), then keyword-only props, as the provider's resources take theirs
        self,
        scope: Construct,
        id: str,
        *,
        name: str,
        bucket_name: str,
        bucket_arn: str,
        prefix: str,
        function_arn: str,
        account_id: str,
        kms_key_arn: str,
    ) -> None:
        super().__init__(scope, id)
        topic = SnsTopic(self, "topic", name=f"{name}-migration-uploads", kms_master_key_id=kms_key_arn)
        topic_policy = SnsTopicPolicy(
            self,
            "topic-policy",
            arn=topic.arn,
            policy=policies.sns_topic_policy(topic_arn=topic.arn, bucket_arn=bucket_arn, account_id=account_id),
        )
        S3BucketNotification(
            self,
            "bucket-notification",
            bucket=bucket_name,
            topic=[
                S3BucketNotificationTopic(
                    id="migration-uploads",
                    topic_arn=topic.arn,
                    events=["s3:ObjectCreated:*"],
                    filter_prefix=prefix or None,
                    filter_suffix=".sql",
                )
            ],
            # S3 checks that it may publish when the notification is configured.
            depends_on=[topic_policy],
        )
        permission = LambdaPermission(
            self,
            "invoke-from-topic",
            statement_id="migration-uploads",
            action="lambda:InvokeFunction",
            function_name=function_arn,
            principal="sns.amazonaws.com",
            source_arn=topic.arn,
        )
        SnsTopicSubscription(
            self,
            "subscription",
            topic_arn=topic.arn,
            protocol="lambda",
            endpoint=function_arn,
            depends_on=[permission],
        )
        self.topic_arn = topic.arn
