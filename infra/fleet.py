"""MigrationFleet: the Step Functions state machine that migrates a fleet of targets in stages.

    from infra.fleet import MigrationFleet, MigrationFleetProps
    from infra.fleet_plan import FleetTarget, Rollout, Tolerance

    fleet = MigrationFleet(stack, "fleet", MigrationFleetProps(
        name="shop",
        targets=[FleetTarget(name="eu", host=eu_db.address, secret_arn=eu_secret_arn, databases=("app",)),
                 FleetTarget(name="us", host=us_db.address, secret_arn=us_secret_arn, databases=("app",))],
        rollout=Rollout(canary=1, max_concurrency=4, tolerance=Tolerance(count=0)),
        function_arn=migrations.function_arn,
        kms_key_arn=key.arn,
    ))

It adds the state machine (STANDARD; its definition from ``infra.fleet_definition``), its role
(it may invoke the migration function and its versions, use the key for this state machine's
data, deliver its logs, send traces, and nothing else), and its log group (retention, the
stack's key). The definition and the execution history (the targets' payloads and answers:
hosts, secret ARNs, versions and errors, never a secret's value) are encrypted with
``kms_key_arn``. Logging is at ``ERROR`` by default with the execution data included; tracing
is on. The function must reach every target's server, may read every target's secret, and
needs the key for this state machine's data to start and follow it: that is the function's
configuration (``policies.fleet_starter``), not this construct's. The key's policy must let log
delivery decrypt the state machine's logs (``EncryptionKey.allow_state_machine_log_delivery``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from cdktf_cdktf_provider_aws.cloudwatch_log_group import CloudwatchLogGroup
from cdktf_cdktf_provider_aws.cloudwatch_metric_alarm import (
    CloudwatchMetricAlarm,
    CloudwatchMetricAlarmMetricQuery,
    CloudwatchMetricAlarmMetricQueryMetric,
)
from cdktf_cdktf_provider_aws.iam_role import IamRole
from cdktf_cdktf_provider_aws.iam_role_policy import IamRolePolicy
from cdktf_cdktf_provider_aws.sfn_state_machine import (
    SfnStateMachine,
    SfnStateMachineEncryptionConfiguration,
    SfnStateMachineLoggingConfiguration,
    SfnStateMachineTracingConfiguration,
)
from constructs import Construct

from . import policies
from .config import ConfigError
from .encryption import Account
from .fleet_definition import fleet_definition
from .fleet_plan import FleetTarget, Rollout
from .names import name_problems

__all__ = ["MigrationFleet", "MigrationFleetProps", "state_machine_arn"]

LogLevel = Literal["ALL", "ERROR", "FATAL"]
# How long Step Functions may reuse a data key before it asks KMS for a new one (60-900 s; 300, the
# default AWS CDK documents): a compromise between KMS calls (and their cost) and a data key's life.
DATA_KEY_REUSE_SECONDS = 300
ENDINGS_THAT_FAIL = ("ExecutionsFailed", "ExecutionsTimedOut", "ExecutionsAborted")


@dataclass(frozen=True)
class MigrationFleetProps:
    """What the fleet needs; see the module docstring for an example."""

    name: str
    targets: Sequence[FleetTarget]
    function_arn: str
    """The migration function (unqualified ARN); the role may invoke it and its versions and aliases."""
    kms_key_arn: str
    """The key that encrypts the state machine (definition, execution history) and its log group;
    its policy must let CloudWatch Logs use it, and log delivery decrypt (``infra/encryption.py``)."""
    rollout: Rollout = field(default_factory=Rollout)
    account: Account | None = None
    log_retention_days: int = 365
    log_level: LogLevel = "ERROR"
    """``ALL`` logs every state of every target (cost grows with the fleet); ``ERROR`` the failures."""
    alarm_actions: Sequence[str] = ()
    """Notified when an execution fails, times out or is aborted (an upload's run has no apply to fail)."""

    def __post_init__(self) -> None:
        problems = list(name_problems(self.name, parts=("fleet",)))
        if self.log_level not in ("ALL", "ERROR", "FATAL"):
            problems.append(f"log_level {self.log_level!r} must be ALL, ERROR or FATAL")
        if problems:
            raise ConfigError("MigrationFleetProps: " + "; ".join(problems))


def state_machine_name(name: str) -> str:
    """The fleet's state machine (and its role) for the stack or construct ``name``."""
    return f"{name}-fleet"


def state_machine_arn(name: str, account: Account) -> str:
    """The ARN the fleet's state machine will have: known before it exists, so the function's
    environment and role can name it while the state machine's definition names the function."""
    machine = state_machine_name(name)
    return f"arn:{account.partition}:states:{account.region}:{account.account_id}:stateMachine:{machine}"


class MigrationFleet(Construct):
    """The fleet's state machine, role and log group.

    Attributes: ``state_machine_arn``, ``state_machine_name``, ``role_arn``, ``log_group_name``,
    ``alarm_name``, ``definition`` (the ASL document, as a dict), ``state_machine`` and
    ``role_policy`` (what a run that starts it waits for).
    """

    def __init__(self, scope: Construct, id: str, props: MigrationFleetProps) -> None:
        super().__init__(scope, id)
        account = props.account or Account(self, "account")
        name = state_machine_name(props.name)
        arn = state_machine_arn(props.name, account)
        definition = fleet_definition(props.targets, props.rollout, function_arn=props.function_arn)

        log_group = CloudwatchLogGroup(
            self,
            "logs",
            name=f"/aws/vendedlogs/states/{name}",
            retention_in_days=props.log_retention_days,
            kms_key_id=props.kms_key_arn,
        )
        role = IamRole(
            self,
            "role",
            name=name,
            assume_role_policy=policies.assume_role("states.amazonaws.com", account_id=account.account_id),
        )
        role_policy = IamRolePolicy(
            self,
            "permissions",
            role=role.id,
            policy=policies.fleet_permissions(
                function_arn=props.function_arn,
                state_machine_arn=arn,
                kms_key_arn=props.kms_key_arn,
                log_source_arn=policies.state_machine_log_source(
                    partition=account.partition, region=account.region, account_id=account.account_id
                ),
            ),
        )
        state_machine = SfnStateMachine(
            self,
            "state-machine",
            name=name,
            type="STANDARD",
            role_arn=role.arn,
            definition=json.dumps(definition),
            logging_configuration=SfnStateMachineLoggingConfiguration(
                log_destination=f"{log_group.arn}:*",
                include_execution_data=True,
                level=props.log_level,
            ),
            tracing_configuration=SfnStateMachineTracingConfiguration(enabled=True),
            encryption_configuration=SfnStateMachineEncryptionConfiguration(
                type="CUSTOMER_MANAGED_KMS_KEY",
                kms_key_id=props.kms_key_arn,
                kms_data_key_reuse_period_seconds=DATA_KEY_REUSE_SECONDS,
            ),
            # Step Functions checks the role's log delivery permissions when it creates the machine.
            depends_on=[role_policy],
        )

        alarm = CloudwatchMetricAlarm(
            self,
            "failed-executions",
            alarm_name=f"{name}-failed-executions",
            alarm_description=f"An execution of {name} failed, timed out or was aborted: targets were left unmigrated",
            metric_query=[
                CloudwatchMetricAlarmMetricQuery(
                    id=metric.lower(),
                    return_data=False,
                    metric=CloudwatchMetricAlarmMetricQueryMetric(
                        namespace="AWS/States",
                        metric_name=metric,
                        dimensions={"StateMachineArn": state_machine.arn},
                        period=300,
                        stat="Sum",
                    ),
                )
                for metric in ENDINGS_THAT_FAIL
            ]
            + [
                CloudwatchMetricAlarmMetricQuery(
                    id="ended_badly",
                    expression=" + ".join(metric.lower() for metric in ENDINGS_THAT_FAIL),
                    label="Executions that did not succeed",
                    return_data=True,
                )
            ],
            evaluation_periods=1,
            threshold=0,
            comparison_operator="GreaterThanThreshold",
            treat_missing_data="notBreaching",
            alarm_actions=list(props.alarm_actions),
        )

        self.state_machine_arn = state_machine.arn
        self.state_machine = state_machine
        self.role_policy = role_policy
        self.alarm_name = alarm.alarm_name
        self.state_machine_name = state_machine.name
        self.role_arn = role.arn
        self.log_group_name = log_group.name
        self.definition: dict[str, Any] = definition
