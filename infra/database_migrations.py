"""DatabaseMigrations: the reusable construct ("the plugin") for your own cdktf stack.

    from infra.database_migrations import DatabaseMigrations, DatabaseMigrationsProps, DatabaseTarget

    migrations = DatabaseMigrations(stack, "migrations", DatabaseMigrationsProps(
        name="shop", vpc_id=vpc.id, subnet_ids=private_subnet_ids,
        database=DatabaseTarget(host=db.address, port=5432, secret_arn=secret_arn,
                                security_group_id=db_sg.id),
        migrations_dir=Path(__file__).parent / "migrations",
        package=build_package(),  # infra.packaging: the zip, its sha256 and its entries
    ))

Given the network and the database, it adds the bucket and one object per migration
file, the function with its role, security group (and the ingress rule on the
database's group), log group, dead-letter queue and alarm, the S3 -> SNS -> Lambda
path, and the invocation that migrates on apply, ordered after the bucket, the objects,
the function with its policies and rules, and whatever ``run_after`` lists (your route
table associations, VPC endpoints and their security group rules). It creates no network
and no database. The subnets need a route to S3 (a gateway endpoint) and to Secrets
Manager (an interface endpoint or NAT).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cdktf import AssetType, ITerraformDependable, TerraformAsset, TerraformResource
from constructs import Construct

from .bucket import MigrationObjects, MigrationsBucket, migration_files
from .config import ConfigError
from .encryption import Account, EncryptionKey
from .fleet import LogLevel, MigrationFleet, MigrationFleetProps, state_machine_arn
from .fleet_plan import FleetTarget, Rollout
from .function import DatabaseTarget, FunctionSettings, MigrationFunction, function_environment
from .invocation import MigrationInvocation, RunMode, content_hash
from .names import name_problems
from .notifications import UploadNotifications
from .packaging import BuildResult

__all__ = ["DatabaseMigrations", "DatabaseMigrationsProps", "DatabaseTarget", "FleetSettings"]


@dataclass(frozen=True)
class FleetSettings:
    """A fleet for the construct (README: "Fleets"): its targets, the servers they are on, the rollout.

    The function may reach every server of ``servers`` (its security group and port) and read
    its secret, as it does the construct's own ``database``; every target's secret must be one of
    those. The deploy-time run then runs the whole fleet in its stages (``infra/fleet.py``) and an
    upload the targets it concerns.
    """

    targets: Sequence[FleetTarget]
    servers: Sequence[DatabaseTarget] = ()
    """The targets' servers besides the construct's ``database``."""
    rollout: Rollout = field(default_factory=Rollout)
    log_level: LogLevel = "ERROR"


@dataclass(frozen=True)
class DatabaseMigrationsProps:
    """What the construct needs; see the module docstring for an example."""

    name: str
    vpc_id: str
    subnet_ids: Sequence[str]
    database: DatabaseTarget
    migrations_dir: Path
    package: BuildResult
    prefix: str = "migrations/"
    run_mode: RunMode = "every-apply"
    function: FunctionSettings = field(default_factory=FunctionSettings)
    kms_key_arn: str | None = None
    """Key for the bucket, topic, queue, logs and environment; ``None`` creates one."""
    account: Account | None = None
    https_egress_cidrs: Sequence[str] = ("0.0.0.0/0",)
    """Where the function may open HTTPS connections (Secrets Manager, S3 without a prefix list)."""
    https_egress_prefix_lists: Sequence[str] = ()
    run_after: Sequence[ITerraformDependable] = ()
    """Resources the deploy-time run waits for besides its own: everything on the function's
    network path that it does not create (route table associations, VPC endpoints and the rules
    of their security groups, the database's other security group rules)."""
    uploaders: Sequence[str] = ()
    """IAM role or user ARNs that may write under the prefix besides the deploying principal;
    the bucket policy denies writes and deletes there to everyone else."""
    deployer_arn: str | None = None
    """The role (or user) that runs ``terraform apply``; ``None``: whoever runs the plan."""
    deploy_principal: str | None = None
    """Whose uploads are the deploy's own and start no run; ``None``: the apply's caller."""
    fleet: FleetSettings | None = None
    """Many servers and tenant databases in stages; ``None``: the deploy-time run migrates ``database``."""

    def __post_init__(self) -> None:
        problems = list(name_problems(self.name, parts=("migrations", *(("fleet",) if self.fleet else ()))))
        if self.fleet is not None:
            known = {server.secret_arn for server in self.servers}
            problems += [
                f"fleet target {target.name!r}: its secret is not one of the servers' (database, fleet.servers). "
                "Fix: list its server in fleet.servers, so that the function may reach it and read the secret"
                for target in self.fleet.targets
                if target.secret_arn not in known
            ]
            reserved, needed = self.function.reserved_concurrency, self.fleet.rollout.concurrency_needed
            if reserved is not None and reserved < needed:
                problems.append(
                    f"function.reserved_concurrency {reserved} throttles the fleet: it runs "
                    f"rollout.max_concurrency ({needed - 1}) targets at once while the deploy-time invocation "
                    f"waits for them. Fix: reserve at least {needed}, or none"
                )
        if problems:
            raise ConfigError("DatabaseMigrationsProps: " + "; ".join(problems))

    @property
    def servers(self) -> list[DatabaseTarget]:
        """Every server the function migrates: the construct's database, then the fleet's others."""
        return [self.database, *(self.fleet.servers if self.fleet else ())]


def resources_of(*scopes: Construct) -> list[TerraformResource]:
    """Every Terraform resource defined inside the given constructs, in definition order."""
    return [item for scope in scopes for item in scope.node.find_all() if isinstance(item, TerraformResource)]


class DatabaseMigrations(Construct):
    """Migrations stored in S3 and applied by a Lambda in the VPC on every apply.

    Attributes: ``function_name``, ``function_arn``, ``bucket_name``, ``bucket_arn``,
    ``topic_arn``, ``security_group_id``, ``dead_letter_queue_arn``, ``alarm_name``,
    ``invocation_result`` (the run's JSON result), ``files`` (what was uploaded), ``fleet``
    (the MigrationFleet, or None).
    """

    def __init__(self, scope: Construct, id: str, props: DatabaseMigrationsProps) -> None:
        super().__init__(scope, id)
        account = props.account or Account(self, "account")
        own_key = None if props.kms_key_arn else EncryptionKey(self, "key", name=props.name, account=account)
        key_arn = own_key.arn if own_key else str(props.kms_key_arn)
        files = migration_files(props.migrations_dir)
        if props.function.ca_bundle and props.function.ca_bundle not in props.package.entries:
            raise ConfigError(
                f"the package {props.package.path} has no {props.function.ca_bundle}: build it with the CA bundle "
                "(build_package(ca_bundle=...); the stack's db_ca_bundle setting)"
            )
        package_sha256 = props.package.sha256
        package = TerraformAsset(
            self, "package", path=str(props.package.path), type=AssetType.FILE, asset_hash=package_sha256[:32]
        )

        bucket = MigrationsBucket(
            self,
            "bucket",
            name=props.name,
            kms_key_arn=key_arn,
            prefix=props.prefix,
            writers=[props.deployer_arn or account.deployer_arn, *props.uploaders],
        )
        if own_key is not None:
            own_key.allow_bucket_notifications(bucket.arn)
        target = props.database
        fleet_arn = state_machine_arn(props.name, account) if props.fleet else None
        function = MigrationFunction(
            self,
            "function",
            name=props.name,
            package_path=package.path,
            package_hash=props.package.source_code_hash,
            vpc_id=props.vpc_id,
            subnet_ids=props.subnet_ids,
            environment=function_environment(
                bucket=bucket.name,
                prefix=props.prefix,
                secret_arn=target.secret_arn,
                host=target.host,
                port=target.port,
                settings=props.function,
                deploy_principal=props.deploy_principal or account.user_id,
                fleet_state_machine_arn=fleet_arn,
            ),
            bucket_arn=bucket.arn,
            prefix=props.prefix,
            databases=props.servers,
            kms_key_arns=list(
                dict.fromkeys([key_arn, *(s.secret_kms_key_arn for s in props.servers if s.secret_kms_key_arn)])
            ),
            region=account.region,
            https_egress_cidrs=props.https_egress_cidrs,
            https_egress_prefix_lists=props.https_egress_prefix_lists,
            settings=props.function,
            fleet_state_machine_arn=fleet_arn,
        )
        fleet = self._fleet(props, function.arn, key_arn, account)
        if fleet is not None and own_key is not None:
            own_key.allow_state_machine_log_delivery()
        objects = MigrationObjects(
            self,
            "objects",
            folder=props.migrations_dir,
            bucket_name=bucket.name,
            prefix=props.prefix,
            kms_key_arn=key_arn,
            files=files,
            # The deploy's own uploads start no run only if the function already knows who deploys.
            after=[bucket.policy, function.function],
        )
        notifications = UploadNotifications(
            self,
            "uploads",
            name=props.name,
            bucket_name=bucket.name,
            bucket_arn=bucket.arn,
            prefix=props.prefix,
            function_arn=function.arn,
            account_id=account.account_id,
            kms_key_arn=key_arn,
        )
        invocation = MigrationInvocation(
            self,
            "run",
            function_name=function.name,
            run_mode=props.run_mode,
            content=content_hash(files, package_sha256, props.prefix),
            # The whole bucket, its objects and the function with its role, policies and
            # security group rules: a run that starts before one of them fails or hangs.
            after=[*resources_of(bucket, objects, function, *([fleet] if fleet else [])), *props.run_after],
            fleet=fleet is not None,
        )

        self.function_name = function.name
        self.function_arn = function.arn
        self.bucket_name = bucket.name
        self.bucket_arn = bucket.arn
        self.topic_arn = notifications.topic_arn
        self.security_group_id = function.security_group_id
        self.dead_letter_queue_arn = function.dead_letter_queue_arn
        self.alarm_name = function.alarm_name
        self.invocation_result = invocation.result
        self.files = files
        self.fleet = fleet

    def _fleet(
        self, props: DatabaseMigrationsProps, function_arn: str, key_arn: str, account: Account
    ) -> MigrationFleet | None:
        if props.fleet is None:
            return None
        return MigrationFleet(
            self,
            "fleet",
            MigrationFleetProps(
                name=props.name,
                targets=props.fleet.targets,
                rollout=props.fleet.rollout,
                function_arn=function_arn,
                kms_key_arn=key_arn,
                account=account,
                log_retention_days=props.function.log_retention_days,
                log_level=props.fleet.log_level,
                alarm_actions=props.function.alarm_actions,
            ),
        )
