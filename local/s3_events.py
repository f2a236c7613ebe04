"""S3's side of the bucket notification, played on moto: every put makes an event, and SNS delivers it.

As on AWS, every object put (``aws_s3_object``'s uploads included) makes an
``ObjectCreated:Put`` record carrying who put it (``userIdentity.principalId``, ``AWS:``
and the caller's unique id) and from where (``requestParameters.sourceIPAddress``). Each
topic configuration of the synthesized ``aws_s3_bucket_notification`` whose events and
key filters match publishes the record to its topic, and each ``lambda`` subscription of
that topic (``aws_sns_topic_subscription``) invokes the function asynchronously with the
SNS envelope. Nothing is delivered where the stack configures nothing.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote_plus

from local.stack import SynthesizedStack

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["DEPLOYER", "OPERATOR", "BucketEvents", "Principal", "Put"]


@dataclass(frozen=True)
class Principal:
    """Who makes a request: ``user_id`` as STS GetCallerIdentity returns it."""

    user_id: str
    source_ip: str = "127.0.0.1"

    @property
    def principal_id(self) -> str:
        """What S3 writes into an event's ``userIdentity.principalId``."""
        return f"AWS:{self.user_id}"


# The local deploy runs as an assumed role (as CI does through OIDC); people upload as themselves.
DEPLOYER = Principal("AROALOCALDEPLOYROLE00:local-deploy")
OPERATOR = Principal("AIDALOCALOPERATOR0000", source_ip="127.0.0.2")


@dataclass(frozen=True)
class Put:
    """One object put, and the asynchronous deliveries its event made (request ids)."""

    key: str
    principal: Principal
    deliveries: tuple[str, ...]
    etag: str = ""
    """As S3 answered the put, without quotes (as Terraform keeps an object's ``etag``)."""
    checksum_sha256: str = ""
    """The object's SHA-256 checksum S3 answered, when the put sent one (``ChecksumAlgorithm``)."""


class BucketEvents:
    """Puts objects into the stack's bucket and delivers their events as the stack configures.

    ``deliver(function_arn, event)`` is the asynchronous invoke of a subscribed function;
    it returns the request id.
    """

    def __init__(
        self, stack: SynthesizedStack, s3: S3Client, bucket: str, deliver: Callable[[str, Any], str], region: str
    ) -> None:
        self.stack = stack
        self.bucket = bucket
        self.region = region
        self._s3 = s3
        self._deliver = deliver

    def put(self, key: str, body: bytes, principal: Principal, **extra: Any) -> Put:
        """``PutObject`` as ``principal``; then S3's notification and SNS's deliveries."""
        response = self._s3.put_object(Bucket=self.bucket, Key=key, Body=body, **extra)
        deliveries: list[str] = []
        for topic_arn, configuration_id in self._topics_for(key):
            record = self._record(key, len(body), response, principal, configuration_id)
            envelope = self._sns_envelope(topic_arn, record)
            deliveries += [self._deliver(endpoint, envelope) for endpoint in self._lambda_subscribers(topic_arn)]
        etag, checksum = str(response.get("ETag", "")).strip('"'), str(response.get("ChecksumSHA256", ""))
        return Put(key, principal, tuple(deliveries), etag, checksum)

    def _topics_for(self, key: str) -> Iterator[tuple[str, str]]:
        """(topic ARN, configuration id) of every topic configuration that sends ``key``'s put."""
        for notification in self.stack.resources("aws_s3_bucket_notification"):
            if self.stack.resolve(notification.args.get("bucket")) != self.bucket:
                continue
            for topic in notification.args.get("topic", []):
                events = topic.get("events", [])
                if (
                    any(name in ("s3:ObjectCreated:*", "s3:ObjectCreated:Put") for name in events)
                    and key.startswith(topic.get("filter_prefix") or "")
                    and key.endswith(topic.get("filter_suffix") or "")
                ):
                    yield str(self.stack.resolve(topic["topic_arn"])), str(topic.get("id", "local"))

    def _lambda_subscribers(self, topic_arn: str) -> list[str]:
        found = []
        for subscription in self.stack.resources("aws_sns_topic_subscription"):
            args = self.stack.resolve(dict(subscription.args))
            if args.get("topic_arn") == topic_arn and args.get("protocol") == "lambda":
                found.append(str(args["endpoint"]))
        return found

    def _record(
        self, key: str, size: int, response: Any, principal: Principal, configuration_id: str
    ) -> dict[str, Any]:
        return {
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "awsRegion": self.region,
            "eventTime": _now(),
            "eventName": "ObjectCreated:Put",
            "userIdentity": {"principalId": principal.principal_id},
            "requestParameters": {"sourceIPAddress": principal.source_ip},
            "responseElements": {"x-amz-request-id": uuid.uuid4().hex[:16].upper()},
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": configuration_id,
                "bucket": {"name": self.bucket, "arn": f"arn:aws:s3:::{self.bucket}"},
                "object": {
                    "key": quote_plus(key, safe="/"),
                    "size": size,
                    "eTag": str(response["ETag"]).strip('"'),
                    **({"versionId": response["VersionId"]} if response.get("VersionId") else {}),
                    "sequencer": uuid.uuid4().hex[:16].upper(),
                },
            },
        }

    def _sns_envelope(self, topic_arn: str, record: dict[str, Any]) -> dict[str, Any]:
        return {
            "Records": [
                {
                    "EventSource": "aws:sns",
                    "EventVersion": "1.0",
                    "EventSubscriptionArn": f"{topic_arn}:{uuid.uuid4()}",
                    "Sns": {
                        "Type": "Notification",
                        "MessageId": str(uuid.uuid4()),
                        "TopicArn": topic_arn,
                        "Subject": "Amazon S3 Notification",
                        "Message": json.dumps({"Records": [record]}),
                        "Timestamp": _now(),
                    },
                }
            ]
        }


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
