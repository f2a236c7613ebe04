"""The example stack with a fleet (``fleet_servers = eu,us``): two servers, the construct's state machine
(encrypted with the stack's key), the function that starts it at deploy time and reaches both servers, and
nothing of it in the default stack."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from infra.accepted_findings import ACCEPTED_FINDINGS
from infra.config import ConfigError, StackConfig
from infra.database_migrations import DatabaseMigrationsProps, DatabaseTarget, FleetSettings
from infra.fleet_plan import FleetTarget, Rollout
from infra.function import FunctionSettings
from infra.packaging import BuildResult

from .conftest import Synth
from .iam_policies import Request, decide, resolve
from .terraform_json import dependency_closure, only, resources, unresolved
from .test_checkov import findings

ACCOUNT = "123456789012"
REGION = "eu-west-1"
MACHINE = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:dbmigrate-fleet"
KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1111-2222"
OTHER_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/3333-4444"
REFERENCE = re.compile(r"\$\{([^}]+)\}")


def instance(stack: dict[str, Any], server: str) -> str:
    (name,) = [name for name in resources(stack, "aws_db_instance") if name.startswith(f"database-{server}_")]
    return name


def test_each_server_is_a_database_of_its_own_and_a_target_of_the_fleet(fleet_example: dict[str, Any]) -> None:
    instances = resources(fleet_example, "aws_db_instance")
    assert sorted(item["identifier"] for item in instances.values()) == ["dbmigrate-eu-db", "dbmigrate-us-db"]
    _, machine = only(fleet_example, "aws_sfn_state_machine")
    definition = json.loads(machine["definition"])
    staged = [
        state["Result"] for state in definition["States"].values() if state.get("Comment", "").startswith("The targets")
    ]
    assert [[target["name"] for target in stage] for stage in staged] == [["eu"], ["us"]]  # the canary, one wave
    for stage, server in zip(staged, ("eu", "us"), strict=True):
        (target,) = stage
        name = instance(fleet_example, server)
        assert target["host"] == f"${{aws_db_instance.{name}.address}}"
        assert target["secret_arn"] == f"${{aws_db_instance.{name}.master_user_secret[0].secret_arn}}"
        assert "databases" not in target, "every database of the layout"


def test_the_deploy_time_run_starts_the_fleet_after_the_state_machine_and_its_endpoint(
    fleet_example: dict[str, Any],
) -> None:
    address, invocation = only(fleet_example, "aws_lambda_invocation")
    assert json.loads(invocation["input"]) == {"action": "fleet"}
    waits_for = dependency_closure(fleet_example, f"aws_lambda_invocation.{address}")
    (machine, _) = only(fleet_example, "aws_sfn_state_machine")
    states_endpoint = next(name for name in resources(fleet_example, "aws_vpc_endpoint") if "states" in name)
    assert f"aws_sfn_state_machine.{machine}" in waits_for
    assert f"aws_vpc_endpoint.{states_endpoint}" in waits_for
    endpoint = resources(fleet_example, "aws_vpc_endpoint")[states_endpoint]
    assert endpoint["vpc_endpoint_type"] == "Interface" and endpoint["private_dns_enabled"] is True
    assert endpoint["service_name"].endswith(".states")


def test_the_function_names_the_state_machine_it_starts(fleet_example: dict[str, Any]) -> None:
    _, function = only(fleet_example, "aws_lambda_function")
    arn = function["environment"]["variables"]["FLEET_STATE_MACHINE_ARN"]
    _, machine = only(fleet_example, "aws_sfn_state_machine")
    assert arn.endswith(f":stateMachine:{machine['name']}")
    assert REFERENCE.sub("x", arn) == "arn:x:states:x:x:stateMachine:dbmigrate-fleet"


def concrete(policy: str) -> dict[str, Any]:
    """``policy`` with the values AWS decides at apply time in place of its references."""
    values = {reference: f"stand-in-{index}" for index, reference in enumerate(REFERENCE.findall(policy))}
    for reference in values:
        if reference.endswith(".partition"):
            values[reference] = "aws"
        elif reference.endswith(".region"):
            values[reference] = REGION
        elif reference.endswith(".account_id"):
            values[reference] = ACCOUNT
        elif reference.startswith("aws_kms_key.") and reference.endswith(".arn"):
            values[reference] = KEY
        elif "master_user_secret" in reference:
            server = "eu" if "database-eu" in reference else "us"
            values[reference] = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:rds!{server}-AbCdEf"
    return resolve(policy, values)


def function_policy(stack: dict[str, Any]) -> dict[str, Any]:
    (policy,) = [item for name, item in resources(stack, "aws_iam_role_policy").items() if "function" in name]
    return concrete(policy["policy"])


def key_policy(stack: dict[str, Any]) -> dict[str, Any]:
    _, key = only(stack, "aws_kms_key")
    return concrete(key["policy"])


def test_the_function_may_read_both_secrets_and_start_and_follow_only_its_fleet(fleet_example: dict[str, Any]) -> None:
    policy = function_policy(fleet_example)
    secret = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:rds!"
    execution = f"arn:aws:states:{REGION}:{ACCOUNT}:execution:dbmigrate-fleet:deploy-1"
    other_machine = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:other-fleet"
    cases = {
        ("secretsmanager:GetSecretValue", f"{secret}eu-AbCdEf"): "Allowed",
        ("secretsmanager:GetSecretValue", f"{secret}us-AbCdEf"): "Allowed",
        ("secretsmanager:GetSecretValue", f"{secret}ap-AbCdEf"): "ImplicitlyDenied",
        ("states:StartExecution", MACHINE): "Allowed",
        ("states:ListExecutions", MACHINE): "Allowed",
        ("states:DescribeStateMachine", MACHINE): "Allowed",
        ("states:DescribeExecution", execution): "Allowed",
        ("states:StartExecution", other_machine): "ImplicitlyDenied",
        ("states:DescribeExecution", f"arn:aws:states:{REGION}:{ACCOUNT}:execution:other-fleet:x"): "ImplicitlyDenied",
        ("states:StopExecution", execution): "ImplicitlyDenied",
        ("states:UpdateStateMachine", MACHINE): "ImplicitlyDenied",
        ("states:DeleteStateMachine", MACHINE): "ImplicitlyDenied",
    }
    role = f"arn:aws:iam::{ACCOUNT}:role/dbmigrate-migrate"
    requests = [
        Request(principal=role, action=action, resource=resource, context={}, identity_policies=[policy])
        for action, resource in cases
    ]
    assert dict(zip(cases, decide(requests), strict=True)) == cases


def test_the_state_machine_is_encrypted_with_the_stacks_key(fleet_example: dict[str, Any]) -> None:
    key_name, _ = only(fleet_example, "aws_kms_key")
    _, machine = only(fleet_example, "aws_sfn_state_machine")

    assert machine["encryption_configuration"] == {
        "type": "CUSTOMER_MANAGED_KMS_KEY",
        "kms_key_id": f"${{aws_kms_key.{key_name}.arn}}",
        "kms_data_key_reuse_period_seconds": 300,
    }


def test_the_function_uses_the_key_for_its_fleets_data_and_no_other_state_machines(
    fleet_example: dict[str, Any],
) -> None:
    """StartExecution encrypts (GenerateDataKey) and decrypts, DescribeExecution and DescribeStateMachine
    decrypt, each with the caller's permissions and the state machine's ARN as the encryption context."""
    # Both keys delegate to IAM as the stack's does (the other key is given the same policy).
    policy, key = function_policy(fleet_example), key_policy(fleet_example)
    role = f"arn:aws:iam::{ACCOUNT}:role/dbmigrate-migrate"
    other_machine = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:other-fleet"
    cases = {
        ("kms:GenerateDataKey", KEY, MACHINE): "Allowed",
        ("kms:Decrypt", KEY, MACHINE): "Allowed",
        ("kms:GenerateDataKey", KEY, other_machine): "ImplicitlyDenied",
        ("kms:Decrypt", KEY, other_machine): "ImplicitlyDenied",
        ("kms:Decrypt", KEY, None): "ImplicitlyDenied",
        ("kms:Decrypt", OTHER_KEY, MACHINE): "ImplicitlyDenied",
        ("kms:GenerateDataKey", OTHER_KEY, MACHINE): "ImplicitlyDenied",
        ("kms:Encrypt", KEY, MACHINE): "ImplicitlyDenied",
    }
    requests = [
        Request(
            principal=role,
            action=action,
            resource=resource,
            context={
                "aws:PrincipalArn": role,
                **({"kms:EncryptionContext:aws:states:stateMachineArn": machine} if machine else {}),
            },
            identity_policies=[policy],
            resource_policy=key,
        )
        for action, resource, machine in cases
    ]
    assert dict(zip(cases, decide(requests), strict=True)) == cases


def test_only_the_fleet_stacks_key_lets_log_delivery_decrypt(
    fleet_example: dict[str, Any], stack: dict[str, Any]
) -> None:
    def delivery(policy: dict[str, Any]) -> Request:
        return Request(
            principal="delivery.logs.amazonaws.com",
            action="kms:Decrypt",
            resource=KEY,
            context={"kms:EncryptionContext:SourceArn": f"arn:aws:logs:{REGION}:{ACCOUNT}:*"},
            resource_policy=policy,
        )

    assert decide([delivery(key_policy(fleet_example)), delivery(key_policy(stack))]) == [
        "Allowed",
        "ImplicitlyDenied",
    ]


def test_the_function_reaches_both_servers_and_each_server_only_the_function(fleet_example: dict[str, Any]) -> None:
    egress = resources(fleet_example, "aws_vpc_security_group_egress_rule")
    ingress = resources(fleet_example, "aws_vpc_security_group_ingress_rule")
    groups = {name: rule for name, rule in resources(fleet_example, "aws_security_group").items()}
    database_groups = {name for name, group in groups.items() if name.startswith("database-")}
    assert len(database_groups) == 2
    to_databases = {rule["referenced_security_group_id"] for rule in egress.values() if rule["from_port"] == 5432}
    assert to_databases == {f"${{aws_security_group.{name}.id}}" for name in database_groups}
    from_function = [rule for rule in ingress.values() if rule.get("from_port") == 5432]
    assert {rule["security_group_id"] for rule in from_function} == to_databases
    assert all("migrations_function_sg" in rule["referenced_security_group_id"] for rule in from_function)


def test_an_execution_that_does_not_succeed_raises_the_alarm(fleet_example: dict[str, Any]) -> None:
    (alarm,) = [
        item
        for item in resources(fleet_example, "aws_cloudwatch_metric_alarm").values()
        if "fleet" in item["alarm_name"]
    ]
    metrics = {query["metric"]["metric_name"] for query in alarm["metric_query"] if "metric" in query}
    assert metrics == {"ExecutionsFailed", "ExecutionsTimedOut", "ExecutionsAborted"}
    (total,) = [query for query in alarm["metric_query"] if query.get("return_data")]
    assert (alarm["comparison_operator"], alarm["threshold"]) == ("GreaterThanThreshold", 0)
    assert set(total["expression"].split(" + ")) == {"executionsfailed", "executionstimedout", "executionsaborted"}


def test_the_fleet_stack_resolves_every_reference_and_checkov_fails_nothing_not_accepted(
    fleet_example_synth: Synth,
) -> None:
    assert unresolved(fleet_example_synth.stack) == set()
    failed, passed = findings(fleet_example_synth)
    assert [finding for finding in failed if finding not in ACCEPTED_FINDINGS] == []
    assert passed > 100


def test_the_default_stack_has_no_fleet(stack: dict[str, Any]) -> None:
    assert "aws_sfn_state_machine" not in stack["resource"]
    assert not any("states" in name for name in resources(stack, "aws_vpc_endpoint"))
    _, function = only(stack, "aws_lambda_function")
    assert "FLEET_STATE_MACHINE_ARN" not in function["environment"]["variables"]
    _, invocation = only(stack, "aws_lambda_invocation")
    assert json.loads(invocation["input"]) == {"action": "migrate"}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"fleet_servers": ("eu", "EU")}, "'EU' must be 1-10 lower-case letters and digits"),
        ({"fleet_servers": ("eu", "eu")}, "a name is given twice"),
        ({"fleet_servers": ("eu", "us"), "fleet_canary": 3}, "fleet_canary 3 must be 0 to the number"),
        ({"fleet_servers": ("eu",), "fleet_max_concurrency": 0}, "fleet_max_concurrency must be at least 1"),
        (
            {"fleet_servers": ("eu",), "migration_secret_arn": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:m"},
            "the DatabaseMigrations construct's fleet prop",
        ),
        (
            {"fleet_servers": ("eu", "us"), "fleet_max_concurrency": 2, "reserved_concurrency": 2},
            "reserved_concurrency 2 throttles the fleet: fleet_max_concurrency (2) servers run at once while the "
            "deploy-time run waits for them; reserve at least 3, or none",
        ),
        (
            {"fleet_servers": ("eu",), "reserved_concurrency": 1},
            "reserved_concurrency 1 throttles the fleet: fleet_max_concurrency (4)",
        ),
    ],
)
def test_a_fleet_setting_that_cannot_work_is_refused_naming_it(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        StackConfig.from_sources(settings, {})


def test_the_fleets_servers_come_from_the_environment_too() -> None:
    config = StackConfig.from_sources({}, {"DBMIGRATE_FLEET_SERVERS": "eu, us", "DBMIGRATE_FLEET_CANARY": "0"})
    assert (config.fleet_servers, config.fleet_canary) == (("eu", "us"), 0)


def test_a_fleet_reservation_with_room_for_the_targets_and_the_waiting_run_is_accepted() -> None:
    settings = {"fleet_servers": ("eu", "us"), "fleet_max_concurrency": 2, "reserved_concurrency": 3}
    assert StackConfig.from_sources(settings, {}).reserved_concurrency == 3


def props(fleet: FleetSettings, *, reserved: int | None = None) -> DatabaseMigrationsProps:
    return DatabaseMigrationsProps(
        name="acme",
        vpc_id="vpc-1",
        subnet_ids=["subnet-1"],
        database=DatabaseTarget("eu.internal", SECRETS["eu"], "sg-eu"),
        migrations_dir=Path("migrations"),
        package=BuildResult(Path("lambda.zip"), "0" * 64, 1, ()),
        function=FunctionSettings(reserved_concurrency=reserved),
        fleet=fleet,
    )


SECRETS = {name: f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{name}" for name in ("eu", "us", "ap")}


@pytest.mark.parametrize(
    ("fleet", "reserved", "message"),
    [
        (
            FleetSettings([FleetTarget("ap", "ap.internal", SECRETS["ap"])]),
            None,
            "fleet target 'ap': its secret is not one of the servers' (database, fleet.servers)",
        ),
        (
            FleetSettings(
                [FleetTarget("eu", "eu.internal", SECRETS["eu"]), FleetTarget("us", "us.internal", SECRETS["us"])],
                servers=[DatabaseTarget("us.internal", SECRETS["us"], "sg-us")],
                rollout=Rollout(max_concurrency=2),
            ),
            2,
            "function.reserved_concurrency 2 throttles the fleet: it runs rollout.max_concurrency (2) targets "
            "at once while the deploy-time invocation waits for them. Fix: reserve at least 3, or none",
        ),
    ],
)
def test_a_fleet_prop_that_cannot_work_is_refused_naming_it(
    fleet: FleetSettings, reserved: int | None, message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        props(fleet, reserved=reserved)
    assert props(FleetSettings([FleetTarget("eu", "eu.internal", SECRETS["eu"])]), reserved=5).fleet is not None
