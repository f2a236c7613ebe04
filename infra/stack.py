"""The example stack: provider, state, key, network, database and the migrations construct.

Wiring only: every resource lives in the construct of its concern. With
``existing_vpc_id`` (and the ``existing_db_*`` settings) the stack creates no network
(and no database) and runs the construct on what exists.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from cdktf import App, LocalBackend, S3Backend, TerraformOutput, TerraformStack
from cdktf_cdktf_provider_aws.provider import AwsProvider, AwsProviderDefaultTags
from constructs import Construct

from dbmigrate.config import Options, options

from .alerting import AlarmTopic
from .config import StackConfig
from .database import Database, DatabaseSettings
from .database_migrations import DatabaseMigrations, DatabaseMigrationsProps, DatabaseTarget, FleetSettings
from .encryption import Account, EncryptionKey
from .fleet_plan import FleetTarget, Rollout, Tolerance
from .function import FunctionSettings
from .network import Network
from .packaging import CA_BUNDLE_ENTRY, BuildResult

__all__ = ["MigrationsStack", "synthesize"]


class MigrationsStack(TerraformStack):
    """Everything ``main.py`` deploys, from one StackConfig and one built package."""

    def __init__(self, scope: Construct, id: str, *, config: StackConfig, package: BuildResult) -> None:
        super().__init__(scope, id)
        AwsProvider(
            self,
            "aws",
            region=config.region,
            default_tags=[AwsProviderDefaultTags(tags={"project": config.name, "managed-by": "cdktf", **config.tags})],
        )
        if config.state_bucket:
            S3Backend(self, bucket=config.state_bucket, key=config.state_key, region=config.region, encrypt=True)
            self.add_override("terraform.backend.s3.use_lockfile", True)  # S3-native state locking
        else:
            # Relative, so the synthesized JSON does not depend on where the repository lives.
            LocalBackend(self, path="terraform.tfstate")

        account = Account(self, "account")
        key = EncryptionKey(self, "key", name=config.name, account=account)

        if config.creates_network:
            network = Network(
                self,
                "network",
                name=config.name,
                cidr=config.vpc_cidr,
                region=config.region,
                account=account,
                kms_key_arn=key.arn,
                log_retention_days=config.log_retention_days,
                step_functions=bool(config.fleet_servers),
            )
            vpc_id, subnet_ids = network.vpc_id, network.subnet_ids
            https_cidrs, prefix_lists = [network.cidr], [network.s3_prefix_list_id]
            run_after = list(network.run_dependencies)
        else:
            assert config.existing_vpc_id is not None
            vpc_id, subnet_ids = config.existing_vpc_id, list(config.existing_subnet_ids)
            https_cidrs, prefix_lists, run_after = ["0.0.0.0/0"], [], []

        fleet: FleetSettings | None = None
        if config.fleet_servers:
            servers = [
                _database(self, config, account, key.arn, vpc_id, subnet_ids, server) for server in config.fleet_servers
            ]
            target = servers[0]
            fleet = FleetSettings(
                targets=[
                    FleetTarget(name=server, host=found.host, secret_arn=found.secret_arn, port=found.port)
                    for server, found in zip(config.fleet_servers, servers, strict=True)
                ],
                servers=servers[1:],
                rollout=Rollout(
                    canary=config.fleet_canary,
                    max_concurrency=config.fleet_max_concurrency,
                    tolerance=Tolerance(count=config.fleet_tolerated_failures),
                ),
            )
        elif config.creates_database:
            database = _database(self, config, account, key.arn, vpc_id, subnet_ids)
            # The function connects as the migration role when one is given (README: "Who may change a schema").
            target = replace(
                database,
                secret_arn=config.migration_secret_arn or database.secret_arn,
                secret_kms_key_arn=config.migration_secret_kms_key_arn,
            )
        else:
            assert config.existing_db_host and config.existing_db_secret_arn and config.existing_db_security_group_id
            target = DatabaseTarget(
                host=config.existing_db_host,
                port=config.existing_db_port,
                secret_arn=config.migration_secret_arn or config.existing_db_secret_arn,
                security_group_id=config.existing_db_security_group_id,
                secret_kms_key_arn=(
                    config.migration_secret_kms_key_arn
                    if config.migration_secret_arn
                    else config.existing_db_secret_kms_key_arn
                ),
            )

        alarm_actions = list(config.alarm_actions)
        if config.alarm_email:
            alarm_actions.append(
                AlarmTopic(self, "alarms", name=config.name, email=config.alarm_email, kms_key_arn=key.arn).arn
            )

        migrations = DatabaseMigrations(
            self,
            "migrations",
            DatabaseMigrationsProps(
                name=config.name,
                vpc_id=vpc_id,
                subnet_ids=subnet_ids,
                database=target,
                migrations_dir=config.migrations_dir,
                package=package,
                prefix=config.migrations_prefix,
                run_mode=config.run_mode,
                function=FunctionSettings(
                    architecture=config.architecture,
                    timeout_s=config.function_timeout_s,
                    memory_mb=config.function_memory_mb,
                    reserved_concurrency=config.reserved_concurrency,
                    engine=Options(**{option.name: getattr(config, option.name) for option in options()}),
                    upload_settle_s=config.upload_settle_s,
                    log_level=config.log_level,
                    log_retention_days=config.log_retention_days,
                    alarm_actions=alarm_actions,
                    allow_down=config.allow_down,
                    ca_bundle=CA_BUNDLE_ENTRY if config.db_ca_bundle else None,
                ),
                kms_key_arn=key.arn,
                account=account,
                https_egress_cidrs=https_cidrs,
                https_egress_prefix_lists=prefix_lists,
                run_after=run_after,
                uploaders=config.migration_uploaders,
                deployer_arn=config.deployer_arn,
                deploy_principal=config.deploy_principal,
                fleet=fleet,
            ),
        )
        key.allow_bucket_notifications(migrations.bucket_arn)
        if migrations.fleet is not None:
            key.allow_state_machine_log_delivery()

        TerraformOutput(self, "function_name", value=migrations.function_name, description="The migration Lambda")
        TerraformOutput(self, "bucket", value=migrations.bucket_name, description="Where the migration files live")
        TerraformOutput(self, "topic_arn", value=migrations.topic_arn, description="S3 upload notifications")
        TerraformOutput(
            self,
            "migration_result",
            value=migrations.invocation_result,
            description="The deploy-time run's result (JSON): applied and pending versions per database",
        )
        if config.creates_database:
            TerraformOutput(self, "db_host", value=target.host, description="The database endpoint")
        if migrations.fleet is not None:
            TerraformOutput(
                self,
                "fleet_state_machine",
                value=migrations.fleet.state_machine_arn,
                description="The fleet's state machine: the deploy-time run and uploads start it",
            )


def _database(  # noqa: PLR0913  the stack's pieces a new server is made of, named at the call
    stack: Construct,
    config: StackConfig,
    account: Account,
    kms_key_arn: str,
    vpc_id: str,
    subnet_ids: list[str],
    server: str | None = None,
) -> DatabaseTarget:
    """A new RDS server (``server``: one of the fleet's, named after it), as the function reaches it."""
    database = Database(
        stack,
        f"database-{server}" if server else "database",
        name=f"{config.name}-{server}" if server else config.name,
        vpc_id=vpc_id,
        subnet_ids=subnet_ids,
        kms_key_arn=kms_key_arn,
        account=account,
        settings=DatabaseSettings(
            engine_version=config.db_engine_version,
            instance_class=config.db_instance_class,
            allocated_storage_gb=config.db_allocated_storage_gb,
            max_allocated_storage_gb=config.db_max_allocated_storage_gb,
            multi_az=config.db_multi_az,
            deletion_protection=config.db_deletion_protection,
            backup_retention_days=config.db_backup_retention_days,
            monitoring_interval_s=config.db_monitoring_interval_s,
            master_username=config.db_master_username,
            apply_immediately=config.db_apply_immediately,
            log_retention_days=config.log_retention_days,
        ),
    )
    return DatabaseTarget(
        host=database.host,
        port=database.port,
        secret_arn=database.secret_arn,
        security_group_id=database.security_group_id,
    )


def synthesize(config: StackConfig, *, package: BuildResult, outdir: Path) -> Path:
    """Synthesize the stack into ``outdir``; returns the stack's ``cdk.tf.json``."""
    app = App(outdir=str(outdir), stack_traces=False)
    MigrationsStack(app, config.name, config=config, package=package)
    app.synth()
    return outdir / "stacks" / config.name / "cdk.tf.json"
