"""The local deploy: play a synthesized stack on local stand-ins, as ``terraform apply`` would.

PostgreSQL on 127.0.0.1 stands in for RDS, moto for S3, SNS and Secrets Manager, and
the function runs from its built package under the runtime's Python. What to create,
upload and invoke is read from the synthesized ``cdk.tf.json``:

1. the bucket (``aws_s3_bucket``), the database's master user and its managed secret
   (``aws_db_instance``), the notification topic (``aws_sns_topic``); when the function
   connects with a secret of its own (``migration_secret_arn``), a migration role that is
   not the master user (LOGIN CREATEDB) and that secret; when it verifies the server
   (``verify-full``), the local server's own CA stands in for the packaged bundle;
2. every ``aws_s3_object`` (bucket, key, source file), uploaded as Terraform would;
3. the function (``aws_lambda_function``: package, handler, timeout, environment), then
   the ``aws_lambda_invocation`` input wrapped in the CRUD lifecycle envelope; a failure
   ends the apply with the function's error, as ``terraform apply`` would.

``upload`` plays the out-of-band path: an object put into the bucket, and the S3 event
the bucket's notification (``aws_s3_bucket_notification``) sends through SNS.
"""

from __future__ import annotations

import json
import secrets
import sys
import uuid
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote_plus

import psycopg2
from psycopg2 import sql

from local.aws import LocalAws
from local.function import LocalFunction, PackageImage, runtime_python
from local.postgres import EmbeddedPostgres
from local.stack import Resource, SynthesizedStack

__all__ = ["LocalDeploy", "NoNotificationError", "runnable_package"]

LOCAL_BUCKET_SUFFIX = "local"
MIGRATION_ROLE = "dbmigrate_migrator"


class NoNotificationError(RuntimeError):
    """The bucket's notification configuration does not send this object's event."""


@dataclass
class LocalDeploy:
    """One stack played on one set of stand-ins. ``provision()`` once, then ``apply()``."""

    stack: SynthesizedStack
    server: EmbeddedPostgres
    aws: LocalAws
    package: Path | None = None
    python: str | None = None
    logs: IO[str] | None = None
    overrides: dict[str, str] = field(default_factory=dict)
    previous_input: Any = None
    applies: int = 0
    image: PackageImage | None = None
    function: LocalFunction | None = field(default=None, repr=False)
    bucket: str = ""
    topic_arn: str = ""
    note: str = ""
    _own_image: bool = False

    # -- stand-ins ------------------------------------------------------------------------
    def provision(self) -> None:
        """Create what the objects and the function refer to: bucket, database user, secret, topic."""
        bucket = self.stack.one("aws_s3_bucket")
        self.bucket = bucket.args.get("bucket") or f"{bucket.args.get('bucket_prefix', 'bucket-')}{LOCAL_BUCKET_SUFFIX}"
        self.aws.create_bucket(self.bucket)
        for attribute in ("id", "bucket"):
            self.stack.stand_in(bucket, attribute, self.bucket)
        self.stack.stand_in(bucket, "arn", f"arn:aws:s3:::{self.bucket}")
        self._database(self.stack.one("aws_db_instance"))
        given_secret = self._function_env().get("DB_SECRET_ARN", "")
        if given_secret and "${" not in given_secret:
            self._migration_role(given_secret)
        for topic in self.stack.resources("aws_sns_topic"):
            arn = self.aws.sns.create_topic(Name=topic.args["name"])["TopicArn"]
            self.stack.stand_in(topic, "arn", arn)
            self.topic_arn = arn

    def _database(self, instance: Resource) -> None:
        """The RDS master user (not a superuser: CREATEDB, CREATEROLE) and its managed secret."""
        user, password = instance.args.get("username", "postgres"), secrets.token_urlsafe(18)
        conn = psycopg2.connect(self.server.dsn("postgres"))
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(
                sql.SQL("CREATE ROLE {} LOGIN CREATEDB CREATEROLE PASSWORD {}").format(
                    sql.Identifier(user), sql.Literal(password)
                )
            )
            cur.execute(sql.SQL("GRANT CREATE ON DATABASE postgres TO {}").format(sql.Identifier(user)))
        conn.close()
        secret = self.aws.secretsmanager.create_secret(
            Name=f"rds!{instance.args.get('identifier', instance.name)}",
            SecretString=json.dumps({"username": user, "password": password}),
        )
        self.stack.stand_in(instance, "master_user_secret[0].secret_arn", secret["ARN"])
        self.stack.stand_in(instance, "address", self.server.host)
        self.stack.stand_in(instance, "port", self.server.port)
        self.stack.stand_in(instance, "endpoint", f"{self.server.host}:{self.server.port}")

    def _migration_role(self, secret_arn: str) -> None:
        """The role the stack's migration secret names: CREATEDB (root-database files), no superuser,
        no CREATEROLE; it owns what it creates. The secret gets moto's ARN in the function's environment."""
        user, password = MIGRATION_ROLE, secrets.token_urlsafe(18)
        conn = psycopg2.connect(self.server.dsn("postgres"))
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(
                sql.SQL("CREATE ROLE {} LOGIN CREATEDB PASSWORD {}").format(sql.Identifier(user), sql.Literal(password))
            )
            cur.execute(sql.SQL("GRANT CREATE ON DATABASE postgres TO {}").format(sql.Identifier(user)))
        conn.close()
        name = secret_arn.split(":secret:", 1)[-1]
        secret = self.aws.secretsmanager.create_secret(
            Name=name, SecretString=json.dumps({"username": user, "password": password})
        )
        self.overrides.setdefault("DB_SECRET_ARN", secret["ARN"])

    # -- apply ---------------------------------------------------------------------------------
    def apply(self, *, function: LocalFunction | None = None, upload: bool = True) -> Any:
        """Upload the objects and run the invocation; returns its result or raises FunctionError."""
        uploaded = [self._upload_object(obj) for obj in self.stack.resources("aws_s3_object")] if upload else []
        result = self._invoke("create" if self.applies == 0 else "update", function)
        self.applies += 1
        return {"uploaded": len(uploaded), "result": result}

    def destroy(self) -> Any:
        """What ``terraform destroy`` sends the function (CRUD scope): the delete envelope."""
        return self._invoke("delete", None)

    def _invoke(self, action: str, function: LocalFunction | None) -> Any:
        invocation = self.stack.one("aws_lambda_invocation")
        payload = json.loads(invocation.args["input"])
        event = dict(payload)
        if invocation.args.get("lifecycle_scope") == "CRUD":
            event[invocation.args.get("terraform_key", "tf")] = {"action": action, "prev_input": self.previous_input}
        result = (function or self._function()).invoke(event)
        self.previous_input = payload
        return result

    def _upload_object(self, obj: Resource) -> str:
        args = self.stack.resolve({name: obj.args[name] for name in ("bucket", "key") if name in obj.args})
        body = self.stack.path(obj.args["source"]).read_bytes()
        extra = {"ContentType": obj.args["content_type"]} if "content_type" in obj.args else {}
        self.aws.s3.put_object(Bucket=args["bucket"], Key=args["key"], Body=body, **extra)
        key: str = args["key"]
        return key

    def _function(self) -> LocalFunction:
        if self.function is None:
            self.function = self.another_function()
        return self.function

    def another_function(self) -> LocalFunction:
        """A further instance of the function (Lambda runs concurrent invocations in separate ones)."""
        resource = self.stack.one("aws_lambda_function")
        self.stack.stand_in(resource, "function_name", resource.args["function_name"])
        variables = self.stack.resolve(resource.args.get("environment", {}).get("variables", {}))
        # The stand-in for RDS listens on its own port, not the instance's.
        instance_port = str(self.stack.one("aws_db_instance").args.get("port", 5432))
        if variables.get("DB_PORT") == instance_port:
            variables["DB_PORT"] = str(self.server.port)
        if variables.get("DB_SSLMODE") in ("verify-ca", "verify-full"):  # the local server's CA, not RDS's bundle
            variables["DB_SSLROOTCERT"] = str(self.server.ca_file)
        if self.image is None:
            self.image = PackageImage(self._package(self.stack.path(resource.args["filename"])))
            self._own_image = True
        return LocalFunction(
            self.image,
            handler=resource.args["handler"],
            environment={**{k: str(v) for k, v in variables.items()}, **self.aws.environ, **self.overrides},
            timeout_s=float(resource.args.get("timeout", 3)),
            memory_mb=int(resource.args.get("memory_size", 128)),
            name=resource.args["function_name"],
            python=self.python,
            logs=self.logs,
        )

    def _package(self, synthesized: Path) -> Path:
        if self.package is None:
            self.package, python, self.note = runnable_package(synthesized)
            self.python = self.python or python
        return self.package

    # -- the out-of-band path ----------------------------------------------------------------
    def upload(self, relative_key: str, body: bytes, *, function: LocalFunction | None = None) -> Any:
        """Put a file into the bucket under the stack's prefix and deliver its S3 event via SNS."""
        prefix = self._function_env().get("MIGRATIONS_PREFIX", "")
        key = f"{prefix}{relative_key}"
        put = self.aws.s3.put_object(Bucket=self.bucket, Key=key, Body=body)
        notification = self._notification_for(key)
        s3_event = {
            "Records": [
                {
                    "eventVersion": "2.1",
                    "eventSource": "aws:s3",
                    "awsRegion": self.aws.region,
                    "eventTime": _now(),
                    "eventName": "ObjectCreated:Put",
                    "s3": {
                        "s3SchemaVersion": "1.0",
                        "configurationId": notification.get("id", "local"),
                        "bucket": {"name": self.bucket, "arn": f"arn:aws:s3:::{self.bucket}"},
                        "object": {
                            "key": quote_plus(key, safe="/"),
                            "size": len(body),
                            "eTag": put["ETag"].strip('"'),
                            "sequencer": uuid.uuid4().hex[:16].upper(),
                        },
                    },
                }
            ]
        }
        sns_event = {
            "Records": [
                {
                    "EventSource": "aws:sns",
                    "EventVersion": "1.0",
                    "EventSubscriptionArn": f"{self.topic_arn}:{uuid.uuid4()}",
                    "Sns": {
                        "Type": "Notification",
                        "MessageId": str(uuid.uuid4()),
                        "TopicArn": self.topic_arn,
                        "Subject": "Amazon S3 Notification",
                        "Message": json.dumps(s3_event),
                        "Timestamp": _now(),
                    },
                }
            ]
        }
        return (function or self._function()).invoke(sns_event)

    def _function_env(self) -> dict[str, str]:
        resource = self.stack.one("aws_lambda_function")
        variables: dict[str, str] = resource.args.get("environment", {}).get("variables", {})
        return variables

    def _notification_for(self, key: str) -> dict[str, Any]:
        """The bucket notification's topic entry that sends an event for ``key``."""
        for notification in self.stack.resources("aws_s3_bucket_notification"):
            for topic in notification.args.get("topic", []):
                created = any(event.startswith("s3:ObjectCreated:") for event in topic.get("events", []))
                if (
                    created
                    and key.startswith(topic.get("filter_prefix", ""))
                    and key.endswith(topic.get("filter_suffix", ""))
                ):
                    entry: dict[str, Any] = topic
                    return entry
        raise NoNotificationError(f"the bucket's notifications send no event for {key}")

    def close(self) -> None:
        """Stop the function; remove the package image if this deploy prepared it."""
        if self.function is not None:
            self.function.close()
            self.function = None
        if self.image is not None and self._own_image:
            self.image.remove()
            self.image = None


def runnable_package(synthesized: Path) -> tuple[Path, str, str]:
    """(package, interpreter, note): the synthesized zip under the runtime's python3.12; on a
    machine without one, the same package built for this interpreter, and a note saying so."""
    python, exact = runtime_python()
    if exact:
        return synthesized, python, ""
    from infra.packaging import CA_BUNDLE_ENTRY, Target, build_package  # noqa: PLC0415 (only without 3.12)

    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    target = Target(python_version=version)
    output = synthesized.parent / f"lambda-{target.slug}.zip"
    with zipfile.ZipFile(synthesized) as archive:  # the same CA bundle as the synthesized package, if any
        bundle = archive.read(CA_BUNDLE_ENTRY) if CA_BUNDLE_ENTRY in archive.namelist() else None
    ca_bundle = output.with_suffix(".ca.pem") if bundle is not None else None
    if ca_bundle is not None and bundle is not None:
        ca_bundle.write_bytes(bundle)
    package = build_package(output, target=target, ca_bundle=ca_bundle).path
    return package, python, f"no python3.12 on this machine: the package was rebuilt for Python {version}"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
