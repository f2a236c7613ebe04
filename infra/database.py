"""The example's database: RDS PostgreSQL, private, encrypted, TLS forced, RDS-managed password.

Day 2: the parameter group is named from a prefix and its family (``postgres16``) follows
the engine version, created before the old one is destroyed, so a major upgrade (a new
family) replaces it in the same apply. The final snapshot taken on destroy is named with
the instance's creation time, kept in a ``terraform_data`` resource (built into Terraform,
no provider): a stack destroyed, deployed again and destroyed again takes a second snapshot
instead of colliding with the first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cdktf import DataResource, Fn, TerraformResourceLifecycle
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
from .names import parameter_group_prefix, postgres_family

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
    apply_immediately: bool = False
    """Apply changes (a major upgrade included) now rather than in the next maintenance window."""
    log_retention_days: int = 365


class Database(Construct):
    """One PostgreSQL instance in the given private subnets.

    The master password is managed by RDS in Secrets Manager (encrypted with our key);
    the function reads it from there. Its security group starts with no ingress: whoever
    needs the database adds a rule (the migrations construct does). Its log exports go to
    log groups created before it, encrypted with our key and kept ``log_retention_days``.

    Attributes: ``host``, ``port``, ``secret_arn``, ``security_group_id``.
    """

    def __init__(  # noqa: PLR0913  a cdktf construct: (scope, id), then keyword-only props, as the provider's resources take theirs
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
        family = postgres_family(settings.engine_version)
        identifier = f"{name}-db"
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
            name_prefix=parameter_group_prefix(name, family),
            family=family,
            description="TLS only; DDL and slow statements logged",
            parameter=[
                DbParameterGroupParameter(name="rds.force_ssl", value="1", apply_method="pending-reboot"),
                DbParameterGroupParameter(name="log_statement", value="ddl"),
                DbParameterGroupParameter(name="log_min_duration_statement", value="1000"),
            ],
            # A new family is a new group: create it and move the instance before the old one goes.
            lifecycle=TerraformResourceLifecycle(create_before_destroy=True),
        )
        monitoring_role = IamRole(
            self,
            "monitoring-role",
            name=f"{name}-rds-monitoring",
            assume_role_policy=policies.assume_role("monitoring.rds.amazonaws.com", account_id=account.account_id),
        )
        monitoring_policy = IamRolePolicyAttachment(
            self,
            "monitoring-policy",
            role=monitoring_role.name,
            policy_arn=f"arn:{account.partition}:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole",
        )
        # Set once when the instance is first created (and again when it is replaced): the
        # final snapshot's name is unique per instance and does not change between plans.
        lifetime = DataResource(
            self,
            "lifetime",
            input={"created_at": Fn.timestamp()},
            triggers_replace={
                "identifier": identifier,
                "kms_key_id": kms_key_arn,
                "username": settings.master_username,
            },
            lifecycle=TerraformResourceLifecycle(ignore_changes=["input"]),
        )
        created_at = Fn.formatdate("YYYYMMDDhhmmss", lifetime.get_string_attribute("output.created_at"))
        # RDS would create the export log groups itself, unencrypted and kept forever: create them first.
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
            final_snapshot_identifier=f"{identifier}-final-{created_at}",
            backup_retention_period=settings.backup_retention_days,
            copy_tags_to_snapshot=True,
            auto_minor_version_upgrade=True,
            # A new engine_version with a new major is the upgrade; RDS refuses it without this.
            allow_major_version_upgrade=True,
            apply_immediately=settings.apply_immediately,
            iam_database_authentication_enabled=True,
            performance_insights_enabled=True,
            performance_insights_kms_key_id=kms_key_arn,
            performance_insights_retention_period=7,
            monitoring_interval=settings.monitoring_interval_s,
            monitoring_role_arn=monitoring_role.arn if settings.monitoring_interval_s else None,
            enabled_cloudwatch_logs_exports=list(LOG_EXPORTS),
            # RDS checks the monitoring role's permissions when it creates the instance.
            depends_on=[monitoring_policy, *log_groups],
        )
        self.host = instance.address
        self.port = PORT
        self.secret_arn = instance.master_user_secret.get(0).secret_arn
        self.security_group_id = security_group.id
