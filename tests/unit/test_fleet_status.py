"""Reading the fleet's targets back from its synthesized definition, and the look's documents."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dbmigrate.errors import ConfigError, DatabaseConnectError
from fleet_status import fleet_document, target_document, targets_of
from infra.fleet_definition import FleetTarget, Rollout, TenantGroup, fleet_definition
from infra.fleet_plan import stages as fleet_stages

ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:acme-fleet"
SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:fleet-eu-AbCdEf"
FUNCTION = "arn:aws:lambda:us-east-1:123456789012:function:acme-dbmigrate"


def fleet(count: int) -> list[FleetTarget]:
    targets = [FleetTarget(f"t{n}", f"db{n}.internal", SECRET, 5432 + n, ("postgres", f"app{n}")) for n in range(count)]
    targets[1] = FleetTarget("tenants", "db1.internal", SECRET, 5433, tenant_group=TenantGroup("tenant", "tenant_%"))
    return targets


@pytest.mark.parametrize(
    ("rollout", "stages"),
    [
        (Rollout(canary=1), ["canary"] + ["wave_1"] * 6),
        (Rollout(canary=0, wave_size=3), ["wave_1"] * 3 + ["wave_2"] * 3 + ["wave_3"]),
        (Rollout(canary=("t4", "t6"), wave_size=2), ["canary"] * 2 + ["wave_1"] * 2 + ["wave_2"] * 2 + ["wave_3"]),
    ],
)
def test_every_target_is_read_back_in_the_order_its_stages_run(rollout: Rollout, stages: list[str]) -> None:
    targets = fleet(7)
    definition = json.loads(json.dumps(fleet_definition(targets, rollout, function_arn=FUNCTION)))  # as AWS returns it

    staged = targets_of(definition, ARN)

    assert [item.stage for item in staged] == stages
    keys = [stage.key for stage in fleet_stages(targets, rollout) for _ in stage.targets]
    assert keys == stages, "as the fleet report names the stages"
    by_name = {item.target.name: item.target for item in staged}
    assert set(by_name) == {target.name for target in targets}
    assert by_name["t3"].databases == ("postgres", "app3") and by_name["t3"].port == 5435
    group = by_name["tenants"].tenant_group
    assert group is not None and (group.folder, group.match) == ("tenant", "tenant_%")
    if isinstance(rollout.canary, tuple):
        assert [item.target.name for item in staged[:2]] == ["t4", "t6"]


@pytest.mark.parametrize(
    "definition",
    [{}, {"States": []}, {"States": {"Start": {"Type": "Pass", "End": True}}}, {"States": {"x targets": "no"}}],
)
def test_a_state_machine_without_targets_is_refused_naming_it(definition: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="acme-fleet holds no fleet targets"):
        targets_of(definition, ARN)


def test_a_garbled_target_in_the_definition_is_refused_naming_the_field() -> None:
    definition = {"States": {"Canary targets": {"Type": "Pass", "Result": [{"name": "eu", "host": "db", "port": 0}]}}}
    with pytest.raises(ConfigError, match="port 0"):
        targets_of(definition, ARN)


def test_a_status_is_summed_up_per_database_and_every_problem_names_its_target() -> None:
    staged = targets_of(fleet_definition(fleet(2), Rollout(canary=1), function_arn=FUNCTION), ARN)
    database = {
        "name": "app0",
        "exists": True,
        "current_version": 2,
        "applied": [1, 2],
        "pending": [3],
        "changed": [1],
        "unfinished": [{"version": 4, "status": "partial"}],
        "history": [{"version": 1}, {"version": 2}],
    }
    report = {"databases": [database], "problems": [{"error": "ChecksumMismatchError", "message": "1 changed"}]}
    unreachable = DatabaseConnectError("cannot connect to db1.internal:5433")
    documents = [
        target_document(staged[0], "status", [report], []),
        target_document(staged[1], "status", [], [unreachable]),
    ]

    result = fleet_document("status", ARN, documents)

    summary = result["targets"][0]["databases"][0]
    assert summary == {
        "name": "app0",
        "exists": True,
        "current_version": 2,
        "pending": [3],
        "changed": [1],
        "applied": 2,
        "unfinished": [4],
    }
    assert [(p["target"], p["message"]) for p in result["problems"]] == [
        ("t0", "t0: 1 changed"),
        ("tenants", "tenants: cannot connect to db1.internal:5433"),
    ]
    assert result["targets"][1]["server"] == "db1.internal:5433"
    assert target_document(staged[0], "plan", [report], [])["databases"] == [database], "a plan is whole"
