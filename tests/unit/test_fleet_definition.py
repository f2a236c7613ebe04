"""The fleet's definition as data (infra/fleet_definition.py): stages, tolerance, refusals, and the
rules AWS checks when it creates a state machine. Running it is tests/integration/test_fleet_definition.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from dbmigrate.errors import ConfigError
from infra.fleet_definition import FleetTarget, Rollout, TenantGroup, Tolerance, fleet_definition, stages

FUNCTION_ARN = "arn:aws:lambda:eu-west-1:123456789012:function:shop-migrate"
SECRET = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:shop-AbCdEf"
DEFINITION_LIMIT = 1_048_576
"""Step Functions refuses a definition larger than 1 MB."""


def targets(count: int) -> list[FleetTarget]:
    return [FleetTarget(name=f"t{index}", host="db.internal", secret_arn=SECRET) for index in range(count)]


def all_states(states: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """Every state with the states of its scope (a Map's processor is a scope of its own)."""
    for name, state in states.items():
        yield name, state, states
        if state["Type"] == "Map":
            yield from all_states(state["ItemProcessor"]["States"])


def transitions(state: dict[str, Any]) -> list[str]:
    found = [state[key] for key in ("Next", "Default") if key in state]
    found += [choice["Next"] for choice in state.get("Choices", [])]
    return found + [catch["Next"] for catch in state.get("Catch", [])]


@pytest.mark.parametrize(
    ("rollout", "expected"),
    [
        (Rollout(canary=1), [("canary", ["t0"]), ("wave_1", ["t1", "t2", "t3", "t4"])]),
        (Rollout(canary=0, wave_size=2), [("wave_1", ["t0", "t1"]), ("wave_2", ["t2", "t3"]), ("wave_3", ["t4"])]),
        (
            Rollout(canary=("t3", "t1"), wave_size=2),
            [("canary", ["t1", "t3"]), ("wave_1", ["t0", "t2"]), ("wave_2", ["t4"])],
        ),
        (Rollout(canary=5), [("canary", ["t0", "t1", "t2", "t3", "t4"])]),
    ],
)
def test_the_canary_comes_first_then_the_rest_in_waves_in_fleet_order(
    rollout: Rollout, expected: list[tuple[str, list[str]]]
) -> None:
    found = [(stage.key, [target.name for target in stage.targets]) for stage in stages(targets(5), rollout)]
    assert found == expected


@pytest.mark.parametrize(
    ("tolerance", "wave_targets", "tolerated"),
    [
        (Tolerance(count=2), 10, 2),
        (Tolerance(percent=10.0), 9, 0),
        (Tolerance(percent=10.0), 10, 1),
        (Tolerance(percent=33.3), 3, 0),
        (Tolerance(percent=100.0), 7, 7),
        (Tolerance(percent=0.1), 1000, 1),
    ],
)
def test_a_percentage_becomes_a_count_rounded_down(tolerance: Tolerance, wave_targets: int, tolerated: int) -> None:
    assert tolerance.tolerated(wave_targets) == tolerated


def test_the_tolerance_is_fixed_in_the_definition_from_the_wave_targets() -> None:
    definition = fleet_definition(
        targets(11), Rollout(canary=1, tolerance=Tolerance(percent=20.0)), function_arn=FUNCTION_ARN
    )
    choice = definition["States"]["Wave 1 tolerated"]
    assert choice["Choices"][0]["NumericGreaterThan"] == 2
    assert definition["States"]["Report"]["Parameters"]["tolerated"] == 2


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"targets": []}, "the fleet has no targets"),
        ({"targets": targets(2) + targets(1)}, r"fleet target names \['t0'\] are used twice"),
        ({"rollout": Rollout(canary=4)}, "canary of 4 targets, but the fleet has 3"),
        ({"rollout": Rollout(canary=("t9",))}, r"canary targets \['t9'\] are not in the fleet"),
        (
            {"targets": [FleetTarget(name="eu west", host="h", secret_arn=SECRET)]},
            "fleet target name 'eu west' must be",
        ),
        (
            {"targets": [FleetTarget(name="eu", host="h", secret_arn=SECRET, databases=("Shop",))]},
            r"database names \['Shop'\] do not match",
        ),
        (
            {
                "targets": [
                    FleetTarget(
                        name="eu", host="h", secret_arn=SECRET, databases=("a",), tenant_group=TenantGroup("t", "x")
                    )
                ]
            },
            "lists databases and a tenant group. Fix: give one of the two",
        ),
    ],
)
def test_a_fleet_that_cannot_run_is_refused_naming_why(given: dict[str, Any], message: str) -> None:
    settings: dict[str, Any] = {"targets": targets(3), "rollout": Rollout(), **given}
    with pytest.raises(ConfigError, match=message):
        fleet_definition(settings["targets"], settings["rollout"], function_arn=FUNCTION_ARN)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"max_concurrency": 0}, "max_concurrency 0 must be at least 1"),
        ({"wave_size": 0}, "wave_size 0 must be at least 1"),
        ({"max_invocations": 0}, "max_invocations 0 must be 1-50"),
        ({"max_invocations": 51}, "max_invocations 51 must be 1-50"),
        ({"canary": -1}, "canary -1 must be 0 or more"),
    ],
)
def test_a_rollout_out_of_range_is_refused(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Rollout(**settings)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({}, "give a count or a percent, not both and not neither"),
        ({"count": 1, "percent": 5.0}, "give a count or a percent"),
        ({"count": -1}, "count -1 is negative"),
        ({"percent": 100.5}, "percent 100.5 is outside 0-100"),
    ],
)
def test_a_tolerance_must_be_one_count_or_one_percentage(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Tolerance(**settings)


def test_every_transition_names_a_state_of_its_scope_and_every_state_name_is_unique_and_short() -> None:
    definition = fleet_definition(targets(7), Rollout(canary=2, wave_size=2), function_arn=FUNCTION_ARN)
    names = [name for name, _, _ in all_states(definition["States"])]

    assert len(names) == len(set(names)), "AWS wants state names unique across the whole state machine"
    assert max(len(name) for name in names) <= 80
    for name, state, scope in all_states(definition["States"]):
        assert set(transitions(state)) <= set(scope), name
        if state["Type"] == "Map":
            assert state["ItemProcessor"]["StartAt"] in state["ItemProcessor"]["States"]
    assert definition["StartAt"] in definition["States"]


def test_every_task_invokes_the_function_with_the_action_and_the_target_and_retries_throttling() -> None:
    definition = fleet_definition(targets(3), Rollout(max_invocations=3), function_arn=FUNCTION_ARN)
    tasks = [state for _, state, _ in all_states(definition["States"]) if state["Type"] == "Task"]

    assert len(tasks) == 2 * 3  # canary and one wave, three invocations each
    for task in tasks:
        assert task["Resource"] == "arn:aws:states:::lambda:invoke"
        assert task["Parameters"] == {
            "FunctionName": FUNCTION_ARN,
            "Payload": {"action": "migrate", "target.$": "$.target", "folders.$": "$.folders"},
        }
        (retry,) = task["Retry"]
        assert "Lambda.TooManyRequestsException" in retry["ErrorEquals"]
        assert "Lambda.ServiceException" in retry["ErrorEquals"]
        assert retry["BackoffRate"] > 1
        assert [catch["ErrorEquals"] for catch in task["Catch"]] == [["States.ALL"]]


def test_a_fleet_of_a_thousand_targets_fits_the_definition_limit_and_holds_no_terraform_interpolation() -> None:
    fleet = [
        FleetTarget(name=f"tenant-{index:04}", host="db.internal", secret_arn=SECRET, databases=(f"tenant_{index:04}",))
        for index in range(1000)
    ]
    text = json.dumps(fleet_definition(fleet, Rollout(canary=10, wave_size=100), function_arn=FUNCTION_ARN))

    assert len(text) < DEFINITION_LIMIT / 2
    assert "${" not in text
