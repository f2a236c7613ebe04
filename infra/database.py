"""The example's database: RDS PostgreSQL, private, encrypted, TLS forced, RDS-managed password."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cdktf_cdktf_provider_aws.cloudwatch_log_group import CloudwatchLogGroup
from cdktf_cdktf_provider_aws.db_instance import DbInstance
from cdktf_cdktf_provider_aws.db_parameter_group import DbParameterGroup, DbParameterGroupParameter
from cdktf_cdktf_provider_aws.db_subnet_group import DbSubnetGroup
from cdktf_cdktf_provider_aws.iam_role import IamRole
from cdktf_cdktf_provider_aws.iam_role_policy_attachment import IamRolePolicyAttachment
from cdktf_cdktf_provider_aws.security_group import SecurityGroup
from constructs import Construct

from . import policies
from .encryption import Account

__all__ = ["Database", "DatabaseSettings"]

PORT = 5432
LOG_EXPORTS = ("postgresql", "upgrade")


@dataclass(frozen=True)
class DatabaseSettings:
    """The instance's size and safety settings (see StackConfig for the defaults)."""

    engine_version: str
    instance_class: str
    allocated_storage_gb: int
    max_allocated_storage_gb: int
    multi_az: bool
    deletion_protection: bool
    backup_retention_days: int
    monitoring_interval_s: int
    master_username: str
    log_retention_days: int = 365


class Database(Construct):
    """One PostgreSQL instance in the given private subnets.

    The master password is managed by RDS in Secrets Manager (encrypted with our key);
    the function reads it from there. Its security group starts with no ingress: whoever
    needs the database adds a rule (the migrations construct does). Its log exports go to
    log groups created before it, encrypted with our key and kept ``log_retention_days``.

    Attributes: ``host``, ``port``, ``secret_arn``, ``security_group_id``.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        name: str,
        vpc_id: str,
        subnet_ids: Sequence[str],
        kms_key_arn: str,
        account: Account,
        settings: DatabaseSettings,
    ) -> None:
        super().__init__(scope, id)
        major = settings.engine_version.split(".")[0]
        subnets = DbSubnetGroup(self, "subnets", name=f"{name}-db", subnet_ids=list(subnet_ids))
        security_group = SecurityGroup(
            self,
            "sg",
            name=f"{name}-db",
            description="PostgreSQL: ingress only from the clients given rules",
            vpc_id=vpc_id,
        )
        parameters = DbParameterGroup(
            self,
            "parameters",
            name=f"{name}-postgres{major}",
            family=f"postgres{major}",
            description="TLS only; DDL and slow statements logged",
            parameter=[
                DbParameterGroupParameter(name="rds.force_ssl", value="1", apply_method="pending-reboot"),
                DbParameterGroupParameter(name="log_statement", value="ddl"),
                DbParameterGroupParameter(name="log_min_duration_statement", value="1000"),
            ],
        )
        monitoring_role = IamRole(
            self,
            "monitoring-role",
            name=f"{name}-rds-monitoring",
            assume_role_policy=policies.assume_role("monitoring.rds.amazonaws.com", account_id=account.account_id),
        )
        IamRolePolicyAttachment(
            self,
            "monitoring-policy",
            role=monitoring_role.name,
            policy_arn=f"arn:{account.partition}:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole",
        )
        # RDS would create the export log groups itself, unencrypted and kept forever: create them first.
        identifier = f"{name}-db"
        log_groups = [
            CloudwatchLogGroup(
                self,
                f"logs-{export}",
                name=f"/aws/rds/instance/{identifier}/{export}",
                retention_in_days=settings.log_retention_days,
                kms_key_id=kms_key_arn,
            )
            for export in LOG_EXPORTS
        ]
        instance = DbInstance(
            self,
            "instance",
            identifier=identifier,
            engine="postgres",
            engine_version=settings.engine_version,
            instance_class=settings.instance_class,
            allocated_storage=settings.allocated_storage_gb,
            max_allocated_storage=settings.max_allocated_storage_gb,
            storage_type="gp3",
            storage_encrypted=True,
            kms_key_id=kms_key_arn,
            username=settings.master_username,
            manage_master_user_password=True,
            master_user_secret_kms_key_id=kms_key_arn,
            port=PORT,
            db_subnet_group_name=subnets.name,
            vpc_security_group_ids=[security_group.id],
            parameter_group_name=parameters.name,
            publicly_accessible=False,
            multi_az=settings.multi_az,
            deletion_protection=settings.deletion_protection,
            skip_final_snapshot=False,
            final_snapshot_identifier=f"{name}-db-final",
            backup_retention_period=settings.backup_retention_days,
            copy_tags_to_snapshot=True,
            auto_minor_version_upgrade=True,
            iam_database_authentication_enabled=True,
            performance_insights_enabled=True,
            performance_insights_kms_key_id=kms_key_arn,
            performance_insights_retention_period=7,
            monitoring_interval=settings.monitoring_interval_s,
            monitoring_role_arn=monitoring_role.arn if settings.monitoring_interval_s else None,
            enabled_cloudwatch_logs_exports=list(LOG_EXPORTS),
            depends_on=log_groups,
        )
        self.host = instance.address
        self.port = PORT
        self.secret_arn = instance.master_user_secret.get(0).secret_arn
        self.security_group_id = security_group.id
