"""The migration function: Lambda in the VPC, its role, security group, log group,
dead-letter queue and the alarm on failed asynchronous runs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from cdktf import TerraformResource
from cdktf_cdktf_provider_aws.cloudwatch_log_group import CloudwatchLogGroup
from cdktf_cdktf_provider_aws.cloudwatch_metric_alarm import CloudwatchMetricAlarm
from cdktf_cdktf_provider_aws.iam_role import IamRole
from cdktf_cdktf_provider_aws.iam_role_policy import IamRolePolicy
from cdktf_cdktf_provider_aws.lambda_function import (
    LambdaFunction,
    LambdaFunctionDeadLetterConfig,
    LambdaFunctionEnvironment,
    LambdaFunctionLoggingConfig,
    LambdaFunctionTracingConfig,
    LambdaFunctionVpcConfig,
)
from cdktf_cdktf_provider_aws.security_group import SecurityGroup
from cdktf_cdktf_provider_aws.sqs_queue import SqsQueue
from cdktf_cdktf_provider_aws.vpc_security_group_egress_rule import VpcSecurityGroupEgressRule
from cdktf_cdktf_provider_aws.vpc_security_group_ingress_rule import VpcSecurityGroupIngressRule
from constructs import Construct

from dbmigrate.config import Options, options

from . import policies

__all__ = ["DatabaseTarget", "FunctionSettings", "MigrationFunction", "function_environment"]

HANDLER = "handler.handler"
DEAD_LETTER_RETENTION_S = 14 * 24 * 3600


@dataclass(frozen=True)
class FunctionSettings:
    """How the function runs; the engine's timeouts become its environment (seconds)."""

    runtime: str = "python3.12"
    architecture: str = "x86_64"
    timeout_s: int = 300
    memory_mb: int = 512
    reserved_concurrency: int | None = None
    """None: no reservation (see StackConfig.reserved_concurrency for why)."""
    engine: Options = field(default_factory=Options)
    """The engine's settings: each one set (not None) becomes its variable (``LOCK_WAIT_S``)."""
    upload_settle_s: float = 5.0
    log_level: str = "INFO"
    log_retention_days: int = 365
    alarm_actions: Sequence[str] = field(default_factory=tuple)
    """Where the failed-runs alarm sends notifications (SNS topic ARNs); empty: it notifies no one."""
    allow_down: bool = False
    """Whether the function runs ``down`` when invoked with it; off, it refuses."""
    ca_bundle: str | None = None
    """Path inside the package of the database's CA bundle: the function then verifies the
    server's certificate and host name (``verify-full``) instead of only requiring TLS."""


def function_environment(  # noqa: PLR0913  keyword-only: one per variable source, named at the call
    *,
    bucket: str,
    prefix: str,
    secret_arn: str,
    host: str,
    port: int | str,
    settings: FunctionSettings,
    deploy_principal: str = "",
    fleet_state_machine_arn: str | None = None,
) -> dict[str, str]:
    """The variables the handler reads (lambda_src/environment.py).

    ``deploy_principal``: whose uploads start no run (the deploy's own, which its
    invocation applies); the caller's ``user_id`` at apply time.
    """
    return {
        "MIGRATIONS_BUCKET": bucket,
        "MIGRATIONS_PREFIX": prefix,
        "DB_SECRET_ARN": secret_arn,
        "DB_HOST": host,
        "DB_PORT": str(port),
        # The database forces TLS; require it here too so that nothing can downgrade, and
        # verify the server against the CA bundle when the package carries one.
        "DB_SSLMODE": "verify-full" if settings.ca_bundle else "require",
        **({"DB_SSLROOTCERT": settings.ca_bundle} if settings.ca_bundle else {}),
        "ALLOW_DOWN": _text(settings.allow_down),
        "UPLOAD_SETTLE_S": _text(settings.upload_settle_s),
        **engine_environment(settings.engine),
        "LOG_LEVEL": settings.log_level.upper(),
        "DEPLOY_PRINCIPAL": deploy_principal,
        **({"FLEET_STATE_MACHINE_ARN": fleet_state_machine_arn} if fleet_state_machine_arn else {}),
    }


def engine_environment(engine: Options) -> dict[str, str]:
    """The engine's settings as the function reads them; one left unset (None) is left out."""
    values = {option.variable: getattr(engine, option.name) for option in options()}
    return {name: _text(value) for name, value in values.items() if value is not None}


def _text(value: bool | float | str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"{value:g}" if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class DatabaseTarget:
    """A PostgreSQL server the function migrates.

    ``secret_arn`` is the Secrets Manager secret of the role the function connects as, in
    the RDS-managed format (JSON with ``username`` and ``password``): a migration role's
    (README: "Who may change a schema"), or the RDS master user's. The function may read that
    secret and no other. ``secret_kms_key_arn`` is the key that encrypts it, when that is
    a customer-managed key other than the construct's own.
    """

    host: str
    secret_arn: str
    security_group_id: str
    port: int = 5432
    secret_kms_key_arn: str | None = None


class MigrationFunction(Construct):
    """The Lambda that runs migrations, attached to the given subnets.

    Its security group allows egress only to the database (whose group gets the
    matching ingress rule) and HTTPS to the given CIDRs and prefix lists (the S3 and
    Secrets Manager endpoints). Asynchronous runs (S3 -> SNS) that still fail after
    Lambda's retries land in the dead-letter queue, and the alarm fires on the first.

    Attributes: ``function``, ``name``, ``arn``, ``role_policy`` and ``network_rules`` (ordering),
    ``security_group_id``, ``dead_letter_queue_arn``, ``alarm_name``.
    """

    def __init__(  # noqa: PLR0913  a cdktf construct: (scope, id), then keyword-only props, as the provider's resources take theirs
        self,
        scope: Construct,
        id: str,
        *,
        name: str,
        package_path: str,
        package_hash: str,
        vpc_id: str,
        subnet_ids: Sequence[str],
        environment: Mapping[str, str],
        bucket_arn: str,
        prefix: str,
        databases: Sequence[DatabaseTarget],
        kms_key_arns: Sequence[str],
        region: str,
        https_egress_cidrs: Sequence[str],
        https_egress_prefix_lists: Sequence[str],
        settings: FunctionSettings,
        fleet_state_machine_arn: str | None = None,
    ) -> None:
        super().__init__(scope, id)
        function_name = f"{name}-migrate"
        key_arn = kms_key_arns[0]

        security_group = SecurityGroup(
            self,
            "sg",
            name=function_name,
            description="Migration function: PostgreSQL to the database, HTTPS to the AWS endpoints",
            vpc_id=vpc_id,
        )
        rules: list[TerraformResource] = []
        reached = dict.fromkeys((database.security_group_id, database.port) for database in databases)
        for index, (database_group, port) in enumerate(reached):
            suffix = f"-{index}" if index else ""  # the first server's rules keep their addresses
            to_database = VpcSecurityGroupEgressRule(
                self,
                f"to-database{suffix}",
                security_group_id=security_group.id,
                description="PostgreSQL to the database",
                referenced_security_group_id=database_group,
                ip_protocol="tcp",
                from_port=port,
                to_port=port,
            )
            from_function = VpcSecurityGroupIngressRule(
                self,
                f"database-from-function{suffix}",
                security_group_id=database_group,
                description=f"PostgreSQL from {function_name}",
                referenced_security_group_id=security_group.id,
                ip_protocol="tcp",
                from_port=port,
                to_port=port,
            )
            rules += [to_database, from_function]
        for index, cidr in enumerate(https_egress_cidrs):
            https = VpcSecurityGroupEgressRule(
                self,
                f"https-{index}",
                security_group_id=security_group.id,
                description="HTTPS to the AWS APIs (interface endpoints)",
                cidr_ipv4=cidr,
                ip_protocol="tcp",
                from_port=443,
                to_port=443,
            )
            rules.append(https)
        for index, prefix_list in enumerate(https_egress_prefix_lists):
            s3_https = VpcSecurityGroupEgressRule(
                self,
                f"https-prefix-list-{index}",
                security_group_id=security_group.id,
                description="HTTPS to S3 through the gateway endpoint",
                prefix_list_id=prefix_list,
                ip_protocol="tcp",
                from_port=443,
                to_port=443,
            )
            rules.append(s3_https)

        log_group = CloudwatchLogGroup(
            self,
            "logs",
            name=f"/aws/lambda/{function_name}",
            retention_in_days=settings.log_retention_days,
            kms_key_id=key_arn,
        )
        dead_letters = SqsQueue(
            self,
            "dead-letters",
            name=f"{function_name}-failed",
            kms_master_key_id=key_arn,
            kms_data_key_reuse_period_seconds=3600,
            message_retention_seconds=DEAD_LETTER_RETENTION_S,
        )
        role = IamRole(
            self,
            "role",
            name=function_name,
            assume_role_policy=policies.assume_role("lambda.amazonaws.com"),
        )
        role_policy = IamRolePolicy(
            self,
            "permissions",
            role=role.id,
            policy=policies.function_permissions(
                bucket_arn=bucket_arn,
                prefix=prefix,
                secret_arns=[database.secret_arn for database in databases],
                kms_key_arns=kms_key_arns,
                region=region,
                log_group_arn=log_group.arn,
                dead_letter_queue_arn=dead_letters.arn,
                fleet_state_machine_arn=fleet_state_machine_arn,
                fleet_kms_key_arn=key_arn if fleet_state_machine_arn else None,
            ),
        )
        function = LambdaFunction(
            self,
            "function",
            function_name=function_name,
            description="Applies the PostgreSQL migrations stored in S3",
            role=role.arn,
            runtime=settings.runtime,
            architectures=[settings.architecture],
            handler=HANDLER,
            filename=package_path,
            source_code_hash=package_hash,
            timeout=settings.timeout_s,
            memory_size=settings.memory_mb,
            reserved_concurrent_executions=settings.reserved_concurrency,
            environment=LambdaFunctionEnvironment(variables=dict(environment)),
            kms_key_arn=key_arn,
            vpc_config=LambdaFunctionVpcConfig(subnet_ids=list(subnet_ids), security_group_ids=[security_group.id]),
            dead_letter_config=LambdaFunctionDeadLetterConfig(target_arn=dead_letters.arn),
            logging_config=LambdaFunctionLoggingConfig(log_format="Text", log_group=log_group.name),
            tracing_config=LambdaFunctionTracingConfig(mode="Active"),
            # Lambda checks the role's network-interface permissions when it creates the function.
            depends_on=[role_policy],
        )
        alarm = CloudwatchMetricAlarm(
            self,
            "failed-runs",
            alarm_name=f"{function_name}-failed-async-runs",
            alarm_description=(
                f"An S3-triggered migration run failed after Lambda's retries; the event is in {function_name}-failed"
            ),
            namespace="AWS/SQS",
            metric_name="ApproximateNumberOfMessagesVisible",
            dimensions={"QueueName": dead_letters.name},
            statistic="Maximum",
            period=300,
            evaluation_periods=1,
            threshold=0,
            comparison_operator="GreaterThanThreshold",
            treat_missing_data="notBreaching",
            alarm_actions=list(settings.alarm_actions),
        )
        self.function = function
        self.name = function.function_name
        self.arn = function.arn
        self.role_policy: TerraformResource = role_policy
        self.network_rules = rules
        self.security_group_id = security_group.id
        self.dead_letter_queue_arn = dead_letters.arn
        self.alarm_name = alarm.alarm_name
