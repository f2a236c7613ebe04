"""The local deploy: play a synthesized stack on local stand-ins, as ``terraform apply`` would.

PostgreSQL on 127.0.0.1 stands in for RDS, moto for S3, SNS, SQS and Secrets Manager,
and the function runs from its built package under the runtime's Python, behind a model
of the Lambda service (``lambda_service.py``: concurrency, throttling, async retries, the
dead-letter queue). What to create, upload and invoke is read from the synthesized
``cdk.tf.json``:

1. the bucket (``aws_s3_bucket``), the database's master user and its managed secret
   (``aws_db_instance``), the notification topic (``aws_sns_topic``), the queues
   (``aws_sqs_queue``: the dead-letter target), and who deploys
   (``data.aws_caller_identity``: ``DEPLOYER``, an assumed role); when the function
   connects with a secret of its own (``migration_secret_arn``), a migration role that is
   not the master user (LOGIN CREATEDB) and that secret; when it verifies the server
   (``verify-full``), the local server's own CA stands in for the packaged bundle;
2. every ``aws_s3_object`` (bucket, key, source file), put as the deploying principal;
   as on AWS, each put makes an S3 event that the bucket notification sends through SNS
   to the function, asynchronously (``s3_events.py``); an object whose ``content`` names
   other objects' ``etag`` or ``checksum_sha256`` (the bundle's index) is put after them,
   with what S3 answered their puts, as Terraform reads those back;
3. the function (``aws_lambda_function``: package, handler, timeout, environment, reserved
   concurrency, dead-letter target), then the ``aws_lambda_invocation`` input wrapped in
   the CRUD lifecycle envelope, invoked synchronously and retried while throttled as the
   AWS provider does; a failure ends the apply with the function's error.

``upload`` plays the out-of-band path: an object put by someone else (``OPERATOR``), and
what its event's asynchronous delivery did. AWS's delays (retry backoff, minutes between
async retries) run on a ``ModelClock``, scaled down.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psycopg2
from psycopg2 import sql

from local.aws import LocalAws
from local.function import LocalFunction, PackageImage, runtime_python
from local.lambda_service import Invocation, LocalLambda, ModelClock
from local.postgres import EmbeddedPostgres
from local.provider import ProviderRetry
from local.s3_events import DEPLOYER, OPERATOR, BucketEvents, Principal, Put
from local.stack import Resource, SynthesizedStack

__all__ = ["Delivered", "LocalDeploy", "NoNotificationError", "runnable_package"]

LOCAL_BUCKET_SUFFIX = "local"
MIGRATION_ROLE = "dbmigrate_migrator"
LOCAL_ACCOUNT = "123456789012"
# AWS's minutes played in milliseconds: an async retry after "1 minute" waits 60 ms.
MODEL_CLOCK = ModelClock(scale=0.001)


class NoNotificationError(RuntimeError):
    """The bucket's notification configuration does not send this object's event."""


@dataclass(frozen=True)
class Delivered:
    """An out-of-band put, and every run its event made (retries included), in order."""

    put: Put
    attempts: tuple[Invocation, ...]

    @property
    def failed(self) -> bool:
        """Whether the last run failed: after Lambda's retries, the event is in the dead-letter queue."""
        return bool(self.attempts) and self.attempts[-1].error is not None

    @property
    def result(self) -> Any:
        """The last run's result; its FunctionError if the event failed for good."""
        last = self.attempts[-1]
        if last.error is not None:
            raise last.error
        return last.result


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
    clock: ModelClock = MODEL_CLOCK
    deployer: Principal = DEPLOYER
    previous_input: Any = None
    previous_triggers: dict[str, Any] = field(default_factory=dict)
    object_state: dict[str, str] = field(default_factory=dict)
    """The content hash of every object uploaded so far, by address (Terraform's state of them)."""
    applies: int = 0
    image: PackageImage | None = None
    bucket: str = ""
    topic_arn: str = ""
    note: str = ""
    provider: ProviderRetry = field(init=False)
    events: BucketEvents = field(init=False)
    _service: LocalLambda | None = field(default=None, repr=False)
    _own_image: bool = False

    def __post_init__(self) -> None:
        self.provider = ProviderRetry(self.clock)

    # -- stand-ins ------------------------------------------------------------------------
    def provision(self) -> None:
        """Create what the objects and the function refer to: bucket, database user, secret, topic,
        queues; stand in for the deploying caller and the function's ARN."""
        bucket = self.stack.one("aws_s3_bucket")
        self.bucket = bucket.args.get("bucket") or f"{bucket.args.get('bucket_prefix', 'bucket-')}{LOCAL_BUCKET_SUFFIX}"
        self.aws.bucket(self.bucket)
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
        for queue in self.stack.resources("aws_sqs_queue"):
            url = self.aws.sqs.create_queue(QueueName=queue.args["name"])["QueueUrl"]
            arn = self.aws.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
            for attribute, value in (("arn", arn["QueueArn"]), ("url", url), ("id", url), ("name", queue.args["name"])):
                self.stack.stand_in(queue, attribute, value)
        for caller in self.stack.data_sources("aws_caller_identity"):
            self.stack.stand_in(caller, "user_id", self.deployer.user_id)
            self.stack.stand_in(caller, "account_id", LOCAL_ACCOUNT)
        function = self.stack.one("aws_lambda_function")
        name = function.args["function_name"]
        self.stack.stand_in(function, "function_name", name)
        self.stack.stand_in(function, "arn", f"arn:aws:lambda:{self.aws.region}:{LOCAL_ACCOUNT}:function:{name}")
        self.events = BucketEvents(self.stack, self.aws.s3, self.bucket, self._deliver, self.aws.region)

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
    def apply(self, *, upload: bool = True) -> Any:
        """Upload the objects (as the deployer) and run the invocation; its result or FunctionError.

        As Terraform would: an object is put only when it is new or its ``source_hash``
        changed; the invocation is created on the first apply, replaced (delete, then
        create: ``triggers`` force a new resource) when a trigger changed, which a
        ``timestamp()`` trigger does on every apply, updated when only its input changed,
        and left alone otherwise (``result`` is then None). ``invokes`` lists the
        envelopes sent; ``attempts`` counts their attempts (more than one each when
        throttled).
        """
        objects = self.stack.resources("aws_s3_object") if upload else []
        written = [obj for obj in objects if "content" in obj.args]  # from the others' attributes: after them
        ordered = [obj for obj in objects if "content" not in obj.args] + written
        for obj in ordered:
            if obj.address in self.object_state:
                self._refresh_object(obj)
        uploaded = [self._upload_object(obj) for obj in ordered if self._object_changed(obj)]
        invocation = self.stack.one("aws_lambda_invocation")
        triggers = _resolved_triggers(invocation.args.get("triggers", {}))
        if self.applies == 0:
            actions = ["create"]
        elif triggers != self.previous_triggers:
            actions = ["delete", "create"]
        elif json.loads(invocation.args["input"]) != self.previous_input:
            actions = ["update"]
        else:
            actions = []
        result, attempts = None, 0
        for action in actions:
            result = self._invoke(action)
            attempts += self.provider.attempts
        self.previous_triggers = triggers
        self.applies += 1
        return {"uploaded": len(uploaded), "result": result, "invokes": actions, "attempts": attempts}

    def _object_changed(self, obj: Resource) -> bool:
        """Whether Terraform would put the object: new, or its content hash (or its content) changed."""
        if "content" in obj.args:
            digest = hashlib.sha256(str(self.stack.resolve(obj.args["content"])).encode()).hexdigest()
        else:
            digest = str(obj.args.get("source_hash") or obj.args.get("etag") or obj.args["source"])
        changed = self.object_state.get(obj.address) != digest
        self.object_state[obj.address] = digest
        return changed

    def destroy(self) -> Any:
        """What ``terraform destroy`` sends the function (CRUD scope): the delete envelope."""
        return self._invoke("delete")

    def _invoke(self, action: str) -> Any:
        invocation = self.stack.one("aws_lambda_invocation")
        payload = json.loads(invocation.args["input"])
        event = dict(payload)
        if invocation.args.get("lifecycle_scope") == "CRUD":
            event[invocation.args.get("terraform_key", "tf")] = {"action": action, "prev_input": self.previous_input}
        service = self.service
        result = self.provider.call(lambda: service.invoke(event))
        self.previous_input = payload
        return result

    def _refresh_object(self, obj: Resource) -> None:
        """Terraform's refresh of an object put before: its ETag and checksum as S3 now has them (HeadObject).

        An object written since by someone else keeps its ``source_hash`` (and is not put
        again), but these are what its state now says.
        """
        key = self.stack.resolve(obj.args["key"])
        head = self.aws.s3.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        self.stack.stand_in(obj, "etag", str(head.get("ETag", "")).strip('"'))
        self.stack.stand_in(obj, "checksum_sha256", str(head.get("ChecksumSHA256", "")))

    def _upload_object(self, obj: Resource) -> Put:
        args = self.stack.resolve({name: obj.args[name] for name in ("bucket", "key") if name in obj.args})
        if args["bucket"] != self.bucket:
            raise ValueError(f"{obj.address} uploads to {args['bucket']}, not the stack's bucket {self.bucket}")
        if "content" in obj.args:
            body = str(self.stack.resolve(obj.args["content"])).encode()
        else:
            body = self.stack.path(obj.args["source"]).read_bytes()
        extra = {"ContentType": obj.args["content_type"]} if "content_type" in obj.args else {}
        if "checksum_algorithm" in obj.args:
            extra["ChecksumAlgorithm"] = obj.args["checksum_algorithm"]
        put = self.events.put(args["key"], body, self.deployer, **extra)
        self.stack.stand_in(obj, "etag", put.etag)
        self.stack.stand_in(obj, "checksum_sha256", put.checksum_sha256)
        return put

    @property
    def service(self) -> LocalLambda:
        """The Lambda service in front of the function (started on first use)."""
        if self._service is None:
            function = self.stack.one("aws_lambda_function")
            reserved = function.args.get("reserved_concurrent_executions")
            dead_letter = self.stack.resolve(function.args.get("dead_letter_config", {}).get("target_arn"))
            self._service = LocalLambda(
                self.another_function,
                name=function.args["function_name"],
                reserved_concurrency=None if reserved is None or int(reserved) < 0 else int(reserved),
                clock=self.clock,
                sqs=self.aws.sqs,
                dead_letter_url=self._queue_url(dead_letter) if dead_letter else None,
            )
        return self._service

    def _queue_url(self, arn: str) -> str:
        url: str = self.aws.sqs.get_queue_url(QueueName=arn.rsplit(":", 1)[-1])["QueueUrl"]
        return url

    def _deliver(self, function_arn: str, event: Any) -> str:
        """SNS invoking a subscribed function: asynchronously, through the Lambda service."""
        expected = self.stack.resolve(f"${{{self.stack.one('aws_lambda_function').address}.arn}}")
        if function_arn != expected:
            raise ValueError(f"the topic invokes {function_arn}, which the local deploy does not run")
        return self.service.invoke_async(event)

    def settle(self) -> None:
        """Wait until every asynchronous event so far is done (run, retried, or dead-lettered)."""
        if self._service is not None:
            self._service.wait()

    def another_function(self) -> LocalFunction:
        """A further instance of the function (Lambda runs concurrent invocations in separate ones)."""
        resource = self.stack.one("aws_lambda_function")
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
    def upload(self, relative_key: str, body: bytes, *, principal: Principal = OPERATOR) -> Delivered:
        """Put a file under the stack's prefix as ``principal`` (someone other than the deployer,
        by default) and wait for what its event's asynchronous delivery did."""
        prefix = self._function_env().get("MIGRATIONS_PREFIX", "")
        put = self.events.put(f"{prefix}{relative_key}", body, principal)
        if not put.deliveries:
            raise NoNotificationError(f"the bucket's notifications send no event for {put.key}")
        attempts: list[Invocation] = []
        for request_id in put.deliveries:
            self.service.wait(request_id)
            attempts += self.service.attempts(request_id)
        return Delivered(put, tuple(attempts))

    def _function_env(self) -> dict[str, str]:
        resource = self.stack.one("aws_lambda_function")
        variables: dict[str, str] = resource.args.get("environment", {}).get("variables", {})
        return variables

    def close(self) -> None:
        """Stop the function's instances; remove the package image if this deploy prepared it."""
        if self._service is not None:
            self._service.close()
            self._service = None
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


def _resolved_triggers(triggers: dict[str, Any]) -> dict[str, Any]:
    """The invocation's triggers as a plan sees them: ``timestamp()`` is new on every apply."""
    return {name: secrets.token_hex(8) if value == "${timestamp()}" else value for name, value in triggers.items()}
