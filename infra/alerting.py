"""Who hears the alarm: an encrypted topic that e-mails one address (the ``alarm_email`` setting).

Without it, and without ``alarm_actions``, the failed-runs alarm changes state in
CloudWatch and notifies no one. E-mail subscriptions must be confirmed from the message
AWS sends to the address before any alarm reaches it.
"""

from __future__ import annotations

from cdktf_cdktf_provider_aws.sns_topic import SnsTopic
from cdktf_cdktf_provider_aws.sns_topic_subscription import SnsTopicSubscription
from constructs import Construct

__all__ = ["AlarmTopic"]


class AlarmTopic(Construct):
    """An SNS topic encrypted with the stack's key, with one e-mail subscription.

    Attributes: ``arn`` (an alarm action).
    """

    def __init__(self, scope: Construct, id: str, *, name: str, email: str, kms_key_arn: str) -> None:
        super().__init__(scope, id)
        topic = SnsTopic(self, "topic", name=f"{name}-alarms", kms_master_key_id=kms_key_arn)
        SnsTopicSubscription(self, "email", topic_arn=topic.arn, protocol="email", endpoint=email)
        self.arn = topic.arn
