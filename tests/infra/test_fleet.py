"""The fleet construct (infra/fleet.py), synthesized once per session in a stack of its own: the state
machine, its role and the key's policy (decided by a real IAM evaluator), its encryption, its log group,
logging and tracing, checkov."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cdktf import App, TerraformStack
from cdktf_cdktf_provider_aws.provider import AwsProvider

from infra.accepted_findings import ACCEPTED_FINDINGS
from infra.config import ConfigError
from infra.database_migrations import DatabaseMigrations, DatabaseMigrationsProps, DatabaseTarget, FleetSettings
from infra.encryption import Account, EncryptionKey
from infra.fleet import MigrationFleet, MigrationFleetProps
from infra.fleet_definition import FleetTarget, Rollout, Tolerance, fleet_definition
from infra.packaging import BuildResult
from local.aws import LocalAws
from local.stepfunctions import LocalStepFunctions

from .conftest import Synth
from .iam_policies import Request, decide, resolve
from .terraform_json import only, ref, resources, unresolved
from .test_checkov import resource_types, run_checkov

ACCOUNT = "123456789012"
REGION = "eu-west-1"
KEY_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1111-2222"
OTHER_KEY_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/3333-4444"
MACHINE_ARN = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:shop-fleet"
OTHER_MACHINE_ARN = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:shop-fleet-other"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/shop-fleet"
FUNCTION_ARN = f"arn:aws:lambda:eu-west-1:{ACCOUNT}:function:shop-migrate"
TARGETS = [
    FleetTarget(
        name=name, host=f"{name}.db.internal", secret_arn=f"arn:aws:secretsmanager:eu-west-1:{ACCOUNT}:secret:{name}"
    )
    for name in ("eu", "us", "ap")
]
ROLLOUT = Rollout(canary=1, max_concurrency=2, tolerance=Tolerance(percent=50.0))


@pytest.fixture(scope="session")
def fleet_synth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synth]:
    outdir = tmp_path_factory.mktemp("synth-fleet")
    app = App(outdir=str(outdir), stack_traces=False)
    stack = TerraformStack(app, "fleet")
    AwsProvider(stack, "aws", region="eu-west-1")
    account = Account(stack, "account")
    key = EncryptionKey(stack, "key", name="shop", account=account)
    key.allow_state_machine_log_delivery()
    MigrationFleet(
        stack,
        "fleet",
        MigrationFleetProps(
            name="shop",
            targets=TARGETS,
            rollout=ROLLOUT,
            function_arn=FUNCTION_ARN,
            kms_key_arn=key.arn,
            account=account,
        ),
    )
    app.synth()
    stack_file = Path(outdir) / "stacks" / "fleet" / "cdk.tf.json"
    yield Synth(json.loads(stack_file.read_text(encoding="utf-8")), stack_file.parent, 0.0)


@pytest.fixture(scope="session")
def fleet_stack(fleet_synth: Synth) -> dict[str, Any]:
    return fleet_synth.stack


def concrete(stack: dict[str, Any]) -> dict[str, str]:
    """What AWS decides at apply time for the references the role's and the key's policies hold."""
    data = stack["data"]
    key_name, _ = only(stack, "aws_kms_key")
    return {
        f"data.aws_caller_identity.{next(iter(data['aws_caller_identity']))}.account_id": ACCOUNT,
        f"data.aws_partition.{next(iter(data['aws_partition']))}.partition": "aws",
        f"data.aws_region.{next(iter(data['aws_region']))}.region": REGION,
        f"aws_kms_key.{key_name}.arn": KEY_ARN,
    }


def role_policy(stack: dict[str, Any]) -> dict[str, Any]:
    _, found = only(stack, "aws_iam_role_policy")
    return resolve(found["policy"], concrete(stack))


def key_policy(stack: dict[str, Any]) -> dict[str, Any]:
    _, key = only(stack, "aws_kms_key")
    return resolve(key["policy"], concrete(stack))


def test_the_state_machine_is_standard_with_the_fleets_definition_and_its_role(fleet_stack: dict[str, Any]) -> None:
    _, machine = only(fleet_stack, "aws_sfn_state_machine")
    role_name, _ = only(fleet_stack, "aws_iam_role")

    assert (machine["name"], machine["type"]) == ("shop-fleet", "STANDARD")
    assert machine["role_arn"] == ref("aws_iam_role", role_name, "arn")
    assert json.loads(machine["definition"]) == fleet_definition(TARGETS, ROLLOUT, function_arn=FUNCTION_ARN)
    policy_name, _ = only(fleet_stack, "aws_iam_role_policy")
    assert machine["depends_on"] == [f"aws_iam_role_policy.{policy_name}"]


def test_the_synthesized_definition_runs_in_the_asl_interpreter_and_reports_every_target(
    fleet_stack: dict[str, Any],
) -> None:
    _, machine = only(fleet_stack, "aws_sfn_state_machine")
    seen: list[dict[str, Any]] = []

    def function(name: str, event: Any) -> Any:
        seen.append(event)
        return {"target": event["target"]["name"], "done": True, "applied": [], "error": None}

    with LocalAws("eu-west-1") as aws, LocalStepFunctions(aws.endpoint, aws.region, function) as sfn:
        done = sfn.run(sfn.create_state_machine("shop-fleet", machine["definition"]), {})

    assert done.succeeded, done.cause
    assert [(outcome["target"], outcome["status"]) for outcome in done.output["outcomes"]] == [
        ("eu", "succeeded"),
        ("us", "succeeded"),
        ("ap", "succeeded"),
    ]
    assert seen[0] == {"action": "migrate", "target": TARGETS[0].payload(), "folders": None}


def test_it_logs_to_its_own_encrypted_log_group_with_execution_data_and_traces(fleet_stack: dict[str, Any]) -> None:
    _, machine = only(fleet_stack, "aws_sfn_state_machine")
    group_name, group = only(fleet_stack, "aws_cloudwatch_log_group")
    key_name, _ = only(fleet_stack, "aws_kms_key")

    assert machine["logging_configuration"] == {
        "include_execution_data": True,
        "level": "ERROR",
        "log_destination": ref("aws_cloudwatch_log_group", group_name, "arn") + ":*",
    }
    assert machine["tracing_configuration"] == {"enabled": True}
    assert (group["name"], group["retention_in_days"]) == ("/aws/vendedlogs/states/shop-fleet", 365)
    assert group["kms_key_id"] == ref("aws_kms_key", key_name, "arn")


def test_only_step_functions_of_this_account_assume_the_role(fleet_stack: dict[str, Any]) -> None:
    _, role = only(fleet_stack, "aws_iam_role")
    (statement,) = json.loads(role["assume_role_policy"])["Statement"]

    assert statement["Principal"] == {"Service": "states.amazonaws.com"}
    assert statement["Action"] == "sts:AssumeRole"
    (caller,) = fleet_stack["data"]["aws_caller_identity"]
    account_id = "${data.aws_caller_identity." + caller + ".account_id}"
    assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": account_id}}


def test_the_role_invokes_only_the_migration_function_and_its_versions(fleet_stack: dict[str, Any]) -> None:
    policy = role_policy(fleet_stack)
    other = f"arn:aws:lambda:eu-west-1:{ACCOUNT}:function:shop-migrate-other"
    cases = {
        ("lambda:InvokeFunction", FUNCTION_ARN): "Allowed",
        ("lambda:InvokeFunction", f"{FUNCTION_ARN}:7"): "Allowed",
        ("lambda:InvokeFunction", f"{FUNCTION_ARN}:live"): "Allowed",
        ("lambda:InvokeFunction", other): "ImplicitlyDenied",
        ("lambda:UpdateFunctionCode", FUNCTION_ARN): "ImplicitlyDenied",
        ("secretsmanager:GetSecretValue", TARGETS[0].secret_arn): "ImplicitlyDenied",
        ("logs:CreateLogDelivery", "*"): "Allowed",
        ("logs:DeleteLogGroup", f"arn:aws:logs:eu-west-1:{ACCOUNT}:log-group:/aws/vendedlogs/states/shop-fleet"): (
            "ImplicitlyDenied"
        ),
    }
    requests = [
        Request(principal=ROLE_ARN, action=action, resource=resource, context={}, identity_policies=[policy])
        for action, resource in cases
    ]

    assert dict(zip(cases, decide(requests), strict=True)) == cases
    actions = [statement["Action"] for statement in policy["Statement"]]
    granted = {action for listed in actions for action in ([listed] if isinstance(listed, str) else listed)}
    assert {action for action in granted if not action.startswith(("logs:", "xray:", "kms:"))} == {
        "lambda:InvokeFunction"
    }


def test_the_definition_and_execution_history_are_encrypted_with_the_given_key(fleet_stack: dict[str, Any]) -> None:
    _, machine = only(fleet_stack, "aws_sfn_state_machine")
    key_name, _ = only(fleet_stack, "aws_kms_key")

    assert machine["encryption_configuration"] == {
        "type": "CUSTOMER_MANAGED_KMS_KEY",
        "kms_key_id": ref("aws_kms_key", key_name, "arn"),
        "kms_data_key_reuse_period_seconds": 300,
    }


def test_the_role_uses_the_key_only_for_this_state_machines_data_and_its_log_deliveries(
    fleet_stack: dict[str, Any],
) -> None:
    # Both keys delegate to IAM as the stack's does (the other key is given the same policy).
    policy, key = role_policy(fleet_stack), key_policy(fleet_stack)
    own = {"kms:EncryptionContext:aws:states:stateMachineArn": MACHINE_ARN}
    another = {"kms:EncryptionContext:aws:states:stateMachineArn": OTHER_MACHINE_ARN}
    logs = {"kms:EncryptionContext:SourceArn": f"arn:aws:logs:{REGION}:{ACCOUNT}:*"}
    other_logs = {"kms:EncryptionContext:SourceArn": f"arn:aws:logs:{REGION}:999999999999:*"}
    cases: dict[tuple[str, str, str], str] = {
        ("kms:Decrypt", KEY_ARN, "own"): "Allowed",
        ("kms:GenerateDataKey", KEY_ARN, "own"): "Allowed",
        ("kms:Decrypt", KEY_ARN, "another"): "ImplicitlyDenied",
        ("kms:GenerateDataKey", KEY_ARN, "another"): "ImplicitlyDenied",
        ("kms:Decrypt", KEY_ARN, "none"): "ImplicitlyDenied",
        ("kms:Decrypt", OTHER_KEY_ARN, "own"): "ImplicitlyDenied",
        ("kms:GenerateDataKey", OTHER_KEY_ARN, "own"): "ImplicitlyDenied",
        ("kms:GenerateDataKey", KEY_ARN, "logs"): "Allowed",
        ("kms:Decrypt", KEY_ARN, "logs"): "ImplicitlyDenied",
        ("kms:GenerateDataKey", KEY_ARN, "other_logs"): "ImplicitlyDenied",
        ("kms:GenerateDataKey", OTHER_KEY_ARN, "logs"): "ImplicitlyDenied",
        ("kms:Encrypt", KEY_ARN, "own"): "ImplicitlyDenied",
        ("kms:ReEncryptFrom", KEY_ARN, "own"): "ImplicitlyDenied",
    }
    contexts = {"own": own, "another": another, "logs": logs, "other_logs": other_logs, "none": {}}
    requests = [
        Request(
            principal=ROLE_ARN,
            action=action,
            resource=resource,
            context={"aws:PrincipalArn": ROLE_ARN, **contexts[context]},
            identity_policies=[policy],
            resource_policy=key,
        )
        for action, resource, context in cases
    ]

    assert dict(zip(cases, decide(requests), strict=True)) == cases


def test_log_delivery_may_decrypt_only_what_was_encrypted_for_this_accounts_logs(fleet_stack: dict[str, Any]) -> None:
    key = key_policy(fleet_stack)

    def delivery(action: str, source_arn: str | None) -> Request:
        context = {"kms:EncryptionContext:SourceArn": source_arn} if source_arn else {}
        return Request(
            principal="delivery.logs.amazonaws.com",
            action=action,
            resource=KEY_ARN,
            context=context,
            resource_policy=key,
        )

    requests = [
        delivery("kms:Decrypt", f"arn:aws:logs:{REGION}:{ACCOUNT}:*"),
        delivery("kms:Decrypt", f"arn:aws:logs:{REGION}:999999999999:*"),
        delivery("kms:Decrypt", f"arn:aws:logs:us-east-1:{ACCOUNT}:*"),
        delivery("kms:Decrypt", None),
        delivery("kms:GenerateDataKey", f"arn:aws:logs:{REGION}:{ACCOUNT}:*"),
        delivery("kms:Decrypt", MACHINE_ARN),
    ]
    assert decide(requests) == ["Allowed"] + ["ImplicitlyDenied"] * 5


def test_every_reference_in_the_fleet_stack_resolves(fleet_stack: dict[str, Any]) -> None:
    assert unresolved(fleet_stack) == set()


def test_checkov_finds_nothing_in_the_fleet_stack(fleet_synth: Synth) -> None:
    results = run_checkov(fleet_synth.stack_dir)
    types = resource_types(fleet_synth.stack)
    failed = [
        (str(item["check_id"]), types[str(item["resource"]).rsplit(".", 1)[-1]])
        for item in results.get("failed_checks", [])
    ]
    passed = {str(item["check_id"]) for item in results.get("passed_checks", [])}

    assert [finding for finding in failed if finding not in ACCEPTED_FINDINGS] == []
    assert {"CKV_AWS_284", "CKV_AWS_285", "CKV_AWS_158", "CKV_AWS_338"} <= passed


def test_the_construct_with_a_key_of_its_own_encrypts_its_fleet_with_it_and_lets_log_delivery_decrypt(
    package: BuildResult, migrations_folder: Path, tmp_path: Path
) -> None:
    app = App(outdir=str(tmp_path), stack_traces=False)
    stack = TerraformStack(app, "own-key")
    AwsProvider(stack, "aws", region=REGION)
    servers = [
        DatabaseTarget(host=target.host, secret_arn=target.secret_arn, security_group_id=f"sg-{target.name}")
        for target in TARGETS
    ]
    DatabaseMigrations(
        stack,
        "migrations",
        DatabaseMigrationsProps(
            name="shop",
            vpc_id="vpc-0123456789abcdef0",
            subnet_ids=["subnet-0aaaaaaaaaaaaaaaa"],
            database=servers[0],
            migrations_dir=migrations_folder,
            package=package,
            fleet=FleetSettings(targets=TARGETS, servers=servers[1:], rollout=ROLLOUT),
        ),
    )
    app.synth()
    synthesized = json.loads((tmp_path / "stacks" / "own-key" / "cdk.tf.json").read_text(encoding="utf-8"))

    key_name, key = only(synthesized, "aws_kms_key")
    _, machine = only(synthesized, "aws_sfn_state_machine")
    assert machine["encryption_configuration"]["kms_key_id"] == ref("aws_kms_key", key_name, "arn")
    statements = {statement["Sid"] for statement in json.loads(key["policy"])["Statement"]}
    assert {"LogDeliveryDecryptsStateMachineLogs", "S3PublishesToEncryptedTopic"} <= statements  # one keeps the other
    policies = {
        name: json.loads(item["policy"]) for name, item in resources(synthesized, "aws_iam_role_policy").items()
    }
    for name in ("function", "fleet"):
        (policy,) = [policy for found, policy in policies.items() if name in found]
        (use,) = [item for item in policy["Statement"] if item["Sid"] in ("FleetData", "OwnData")]
        assert use["Resource"] == ref("aws_kms_key", key_name, "arn"), name


def test_a_fleet_name_too_long_for_its_state_machine_is_refused_naming_the_limit() -> None:
    with pytest.raises(ConfigError, match=r"MigrationFleetProps: .*fleet state machine name.*AWS limit 80"):
        MigrationFleetProps(name="a" * 75, targets=TARGETS, function_arn=FUNCTION_ARN, kms_key_arn="arn:key")


def test_a_log_level_step_functions_does_not_know_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"log_level 'OFF' must be ALL, ERROR or FATAL"):
        MigrationFleetProps(
            name="shop",
            targets=TARGETS,
            function_arn=FUNCTION_ARN,
            kms_key_arn="arn:key",
            log_level="OFF",  # type: ignore[arg-type]
        )
