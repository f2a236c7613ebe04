"""The fleet's state machine (infra/fleet_definition.py) run in moto's ASL interpreter.

Its ``lambda:invoke`` tasks are answered in-process (``local.stepfunctions``) by a stand-in that
answers per target as the fleet contract says (``{"target", "done", "applied", "error"}``), or
raises as the function or Lambda would.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from infra.fleet_definition import FleetTarget, Retry, Rollout, TenantGroup, Tolerance, fleet_definition
from local.aws import LocalAws
from local.function import FunctionError
from local.lambda_service import TooManyRequestsError
from local.stepfunctions import Execution, LocalStepFunctions

FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:shop-migrate"
SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:shop-AbCdEf"
FAST_RETRY = Retry(interval_s=1, max_attempts=3, backoff_rate=1.0, max_delay_s=1)
ADD_WIDGETS_ERROR = {
    "error": "MigrationStatementError",
    "message": "tenant_3: 202401020900_add_widgets.up.sql line 3: syntax error at or near 'TABEL'",
    "database": "tenant_3",
    "file": "tenant_3/202401020900_add_widgets.up.sql",
    "line": 3,
}

Behaviour = Callable[[int], Any]
"""``attempt -> answer`` for one target (raise to fail the call)."""


def applied(target: str, *versions: str) -> dict[str, Any]:
    return {
        "target": target,
        "done": True,
        "applied": [{"database": target, "versions": list(versions)}],
        "error": None,
    }


def answers_error(target: str, error: dict[str, Any]) -> Behaviour:
    return lambda attempt: {"target": target, "done": True, "applied": [], "error": error}


def raises(error_type: str, message: str) -> Behaviour:
    def behave(attempt: int) -> Any:
        raise FunctionError(error_type, message)

    return behave


@dataclass
class Function:
    """The migration function's stand-in: answers per target, counts calls and how many ran at once."""

    behaviours: dict[str, Behaviour] = field(default_factory=dict)
    seconds: float = 0.0
    calls: list[dict[str, Any]] = field(default_factory=list)
    running: int = 0
    peak: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, name: str, event: Any) -> Any:
        target = event["target"]["name"]
        with self.lock:
            self.calls.append(event)
            attempt = self.calls_of(target)
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            time.sleep(self.seconds)
            behave = self.behaviours.get(target)
            return behave(attempt) if behave else applied(target, "202401010100")
        finally:
            with self.lock:
                self.running -= 1

    def calls_of(self, target: str) -> int:
        return sum(1 for event in self.calls if event["target"]["name"] == target)

    def targets_called(self) -> set[str]:
        return {event["target"]["name"] for event in self.calls}


class Fleets:
    """A local Step Functions whose Lambda calls go to the test's function stand-in."""

    sfn: LocalStepFunctions

    def __init__(self) -> None:
        self.function = Function()
        self._count = 0

    def invoke(self, name: str, event: Any) -> Any:
        assert name == "shop-migrate"
        return self.function(name, event)

    def run(self, targets: list[FleetTarget], rollout: Rollout, execution_input: Any = None) -> Execution:
        self._count += 1
        definition = fleet_definition(targets, rollout, function_arn=FUNCTION_ARN)
        arn = self.sfn.create_state_machine(f"fleet-{self._count}", definition)
        return self.sfn.run(arn, execution_input or {}, timeout_s=120)


@pytest.fixture(scope="module")
def local_fleets() -> Iterator[Fleets]:
    with LocalAws("us-east-1") as aws:
        fleets = Fleets()
        with LocalStepFunctions(aws.endpoint, aws.region, fleets.invoke) as fleets.sfn:
            yield fleets


@pytest.fixture
def fleets(local_fleets: Fleets) -> Fleets:
    local_fleets.function = Function()
    return local_fleets


def tenants(count: int) -> list[FleetTarget]:
    return [
        FleetTarget(
            name=f"tenant_{index}", host=f"db{index % 2}.internal", secret_arn=SECRET, databases=(f"tenant_{index}",)
        )
        for index in range(count)
    ]


def rollout(**settings: Any) -> Rollout:
    return Rollout(**{"retry": FAST_RETRY, **settings})


def cause_of(done: Execution) -> dict[str, Any]:
    assert done.cause is not None
    cause: dict[str, Any] = json.loads(done.cause)
    return cause


def by_target(done: Execution) -> dict[str, dict[str, Any]]:
    return {outcome["target"]: outcome for outcome in done.output["outcomes"]}


# -- every target succeeds ---------------------------------------------------------------------------
def test_a_fleet_that_succeeds_reports_every_target_with_what_it_applied(fleets: Fleets) -> None:
    targets = tenants(5)

    done = fleets.run(targets, rollout(canary=1, wave_size=2, max_concurrency=2))

    assert done.succeeded, done.cause
    report = done.output
    assert (report["status"], report["targets"], report["failed"], report["tolerated"]) == ("succeeded", 5, 0, 0)
    assert [(outcome["target"], outcome["stage"]) for outcome in report["outcomes"]] == [
        ("tenant_0", "canary"),
        ("tenant_1", "wave_1"),
        ("tenant_2", "wave_1"),
        ("tenant_3", "wave_2"),
        ("tenant_4", "wave_2"),
    ]
    first = report["outcomes"][0]
    assert first == {
        "target": "tenant_0",
        "stage": "canary",
        "status": "succeeded",
        "error": None,
        "invocations": 1,
        "runs": [applied("tenant_0", "202401010100")],
    }


def test_each_invocation_carries_the_action_and_the_whole_target(fleets: Fleets) -> None:
    target = FleetTarget(
        name="eu", host="eu.internal", port=6432, secret_arn=SECRET, tenant_group=TenantGroup("tenants", "^tenant_")
    )

    done = fleets.run([target], rollout(canary=0))

    assert done.succeeded, done.cause
    assert fleets.function.calls == [
        {
            "action": "migrate",
            "folders": None,
            "target": {
                "name": "eu",
                "host": "eu.internal",
                "port": 6432,
                "secret_arn": SECRET,
                "tenant_group": {"name": "tenants", "match": "^tenant_"},
            },
        }
    ]


def test_named_canary_targets_run_first_and_alone(fleets: Fleets) -> None:
    done = fleets.run(tenants(4), rollout(canary=("tenant_2",), max_concurrency=4))

    assert done.succeeded, done.cause
    assert fleets.function.calls[0]["target"]["name"] == "tenant_2"
    assert by_target(done)["tenant_2"]["stage"] == "canary"
    assert {outcome["stage"] for name, outcome in by_target(done).items() if name != "tenant_2"} == {"wave_1"}


# -- the canary ----------------------------------------------------------------------------------------
def test_a_failed_canary_fails_the_fleet_and_no_wave_runs(fleets: Fleets) -> None:
    fleets.function.behaviours["tenant_0"] = answers_error("tenant_0", ADD_WIDGETS_ERROR)

    done = fleets.run(tenants(5), rollout(canary=1, tolerance=Tolerance(count=3)))

    assert (done.status, done.error) == ("FAILED", "FleetCanaryFailed")
    assert fleets.function.targets_called() == {"tenant_0"}
    cause = cause_of(done)
    assert cause["message"].startswith("1 of 1 canary targets failed; the waves did not run (4 targets). Fix: ")
    assert [(failed["target"], failed["error"]) for failed in cause["failed"]] == [("tenant_0", ADD_WIDGETS_ERROR)]
    assert cause["not_run"] == ["tenant_1", "tenant_2", "tenant_3", "tenant_4"]


# -- the tolerance -------------------------------------------------------------------------------------
def test_a_failure_within_the_tolerance_lets_the_others_run_and_is_named_with_file_and_line(fleets: Fleets) -> None:
    fleets.function.behaviours["tenant_3"] = answers_error("tenant_3", ADD_WIDGETS_ERROR)

    done = fleets.run(tenants(6), rollout(canary=1, tolerance=Tolerance(count=1)))

    assert done.succeeded, done.cause
    assert fleets.function.targets_called() == {f"tenant_{index}" for index in range(6)}
    report = done.output
    assert (report["failed"], report["tolerated"]) == (1, 1)
    failed = by_target(done)["tenant_3"]
    assert (failed["status"], failed["error"]["file"], failed["error"]["line"]) == (
        "failed",
        "tenant_3/202401020900_add_widgets.up.sql",
        3,
    )
    assert [outcome["status"] for name, outcome in by_target(done).items() if name != "tenant_3"] == ["succeeded"] * 5


def test_failures_past_a_count_fail_the_fleet_naming_them_and_later_waves_do_not_run(fleets: Fleets) -> None:
    for name in ("tenant_1", "tenant_3"):
        fleets.function.behaviours[name] = answers_error(name, {**ADD_WIDGETS_ERROR, "database": name})

    done = fleets.run(tenants(7), rollout(canary=1, wave_size=3, tolerance=Tolerance(count=1)))

    assert (done.status, done.error) == ("FAILED", "FleetToleranceExceeded")
    assert fleets.function.targets_called() == {"tenant_0", "tenant_1", "tenant_2", "tenant_3"}
    cause = cause_of(done)
    assert cause["message"].startswith(
        "2 wave targets failed, more than the 1 tolerated (a count of 1); targets not run: 3. Fix: "
    )
    assert sorted(failed["target"] for failed in cause["failed"]) == ["tenant_1", "tenant_3"]
    assert cause["not_run"] == ["tenant_4", "tenant_5", "tenant_6"]


def test_failures_add_up_across_waves_and_the_wave_that_passes_the_tolerance_stops_the_fleet(fleets: Fleets) -> None:
    for name in ("tenant_1", "tenant_4"):
        fleets.function.behaviours[name] = answers_error(name, {**ADD_WIDGETS_ERROR, "database": name})

    done = fleets.run(tenants(7), rollout(canary=0, wave_size=3, tolerance=Tolerance(count=1)))

    assert (done.status, done.error) == ("FAILED", "FleetToleranceExceeded")
    assert fleets.function.targets_called() == {f"tenant_{index}" for index in range(6)}
    cause = cause_of(done)
    assert cause["message"].startswith(
        "2 wave targets failed, more than the 1 tolerated (a count of 1); targets not run: 1. "
    )
    assert [(failed["target"], failed["stage"]) for failed in cause["failed"]] == [
        ("tenant_1", "wave_1"),
        ("tenant_4", "wave_2"),
    ]
    assert cause["not_run"] == ["tenant_6"]


@pytest.mark.parametrize(
    ("percent", "tolerated", "succeeds"),
    [(20.0, 1, False), (40.0, 2, True), (39.9, 1, False), (0.0, 0, False), (100.0, 5, True)],
)
def test_a_percentage_tolerates_that_share_of_the_wave_targets_rounded_down(
    fleets: Fleets, percent: float, tolerated: int, succeeds: bool
) -> None:
    for name in ("tenant_2", "tenant_4"):
        fleets.function.behaviours[name] = raises("MigrationStatementError", f"{name}: 0002_add.up.sql line 1: boom")

    done = fleets.run(tenants(6), rollout(canary=1, tolerance=Tolerance(percent=percent)))

    assert len(fleets.function.calls) == 6
    if succeeds:
        assert done.succeeded, done.cause
        assert (done.output["failed"], done.output["tolerated"]) == (2, tolerated)
    else:
        assert (done.status, done.error) == ("FAILED", "FleetToleranceExceeded")
        assert f"more than the {tolerated} tolerated ({percent:g}% of 5)" in cause_of(done)["message"]


def test_a_raised_error_is_caught_and_reported_with_its_type_and_message(fleets: Fleets) -> None:
    fleets.function.behaviours["tenant_1"] = raises("MigrationStatementError", "tenant_1: 0002_add.up.sql line 4: boom")

    done = fleets.run(tenants(3), rollout(canary=1, tolerance=Tolerance(count=1)))

    assert done.succeeded, done.cause
    failed = by_target(done)["tenant_1"]
    assert (failed["status"], failed["error"]["error"], failed["invocations"], failed["runs"]) == (
        "failed",
        "MigrationStatementError",
        1,
        [],
    )
    assert "0002_add.up.sql line 4: boom" in failed["error"]["message"]


def test_an_answer_that_is_not_the_contract_is_a_failed_target_naming_the_contract(fleets: Fleets) -> None:
    fleets.function.behaviours["tenant_0"] = lambda attempt: {"action": "migrate", "databases": []}

    done = fleets.run(tenants(1), rollout(canary=0))

    assert (done.status, done.error) == ("FAILED", "FleetToleranceExceeded")
    (failed,) = cause_of(done)["failed"]
    assert failed["error"]["error"] == "FleetContractError"
    assert "has no boolean done" in failed["error"]["message"]


# -- longer than one invocation, throttling, concurrency ----------------------------------------------
def test_a_target_not_done_is_invoked_again_until_it_is_and_every_run_is_reported(fleets: Fleets) -> None:
    def three_parts(attempt: int) -> Any:
        return {**applied("tenant_1", f"000{attempt}"), "done": attempt == 3}

    fleets.function.behaviours["tenant_1"] = three_parts

    done = fleets.run(tenants(2), rollout(canary=0))

    assert done.succeeded, done.cause
    assert (fleets.function.calls_of("tenant_1"), fleets.function.calls_of("tenant_0")) == (3, 1)
    outcome = by_target(done)["tenant_1"]
    assert (outcome["status"], outcome["invocations"]) == ("succeeded", 3)
    assert [run["applied"][0]["versions"] for run in outcome["runs"]] == [["0001"], ["0002"], ["0003"]]
    assert [run["done"] for run in outcome["runs"]] == [False, False, True]


def test_a_target_still_not_done_after_the_last_invocation_is_reported_unfinished(fleets: Fleets) -> None:
    fleets.function.behaviours["tenant_0"] = lambda attempt: {**applied("tenant_0", str(attempt)), "done": False}

    done = fleets.run(tenants(2), rollout(canary=0, max_invocations=2, tolerance=Tolerance(count=1)))

    assert done.succeeded, done.cause
    assert fleets.function.calls_of("tenant_0") == 2
    outcome = by_target(done)["tenant_0"]
    assert (outcome["status"], outcome["error"]["error"], outcome["invocations"]) == (
        "failed",
        "FleetUnfinishedError",
        2,
    )
    assert "not done after 2 invocations" in outcome["error"]["message"]


def test_a_throttled_invoke_is_retried_and_the_target_succeeds(fleets: Fleets) -> None:
    def throttled_once(attempt: int) -> Any:
        if attempt == 1:
            raise TooManyRequestsError("shop-migrate", 1)
        return applied("tenant_0", "0001")

    fleets.function.behaviours["tenant_0"] = throttled_once

    done = fleets.run(tenants(1), rollout(canary=1))

    assert done.succeeded, done.cause
    assert fleets.function.calls_of("tenant_0") == 2
    assert [event["taskFailedEventDetails"]["error"] for event in done.events_of("TaskFailed")] == [
        "Lambda.TooManyRequestsException"
    ]
    assert by_target(done)["tenant_0"]["invocations"] == 1


def test_a_throttle_that_outlasts_the_retries_is_a_failed_target(fleets: Fleets) -> None:
    def throttled(attempt: int) -> Any:
        raise TooManyRequestsError("shop-migrate", 1)

    fleets.function.behaviours["tenant_0"] = throttled

    done = fleets.run(tenants(1), rollout(canary=1, retry=Retry(interval_s=1, max_attempts=1, max_delay_s=1)))

    assert (done.status, done.error) == ("FAILED", "FleetCanaryFailed")
    assert fleets.function.calls_of("tenant_0") == 2
    assert cause_of(done)["failed"][0]["error"]["error"] == "Lambda.TooManyRequestsException"


def test_no_more_targets_run_at_once_than_max_concurrency(fleets: Fleets) -> None:
    fleets.function.seconds = 0.3

    done = fleets.run(tenants(8), rollout(canary=0, max_concurrency=3))

    assert done.succeeded, done.cause
    assert len(fleets.function.calls) == 8
    assert fleets.function.peak == 3


@pytest.mark.parametrize(
    ("execution_input", "folders"),
    [({}, None), ({"folders": None}, None), ({"folders": ["tenant", "postgres"]}, ["tenant", "postgres"])],
)
def test_the_executions_folders_reach_every_invocation(
    fleets: Fleets, execution_input: dict[str, Any], folders: list[str] | None
) -> None:
    fleets.function.behaviours["tenant_1"] = lambda attempt: {**applied("tenant_1"), "done": attempt > 1}

    done = fleets.run(tenants(3), rollout(canary=1), execution_input)

    assert done.succeeded, done.cause
    assert len(fleets.function.calls) == 4  # tenant_1 twice: the second invocation carries them too
    assert all(call["folders"] == folders for call in fleets.function.calls)


def test_a_target_that_answers_skipped_is_reported_skipped_and_not_failed(fleets: Fleets) -> None:
    reason = "the upload changed tenant; this target runs projectdb"
    fleets.function.behaviours["tenant_0"] = lambda attempt: {**applied("tenant_0"), "applied": [], "skipped": reason}
    fleets.function.behaviours["tenant_2"] = answers_error("tenant_2", ADD_WIDGETS_ERROR)

    done = fleets.run(tenants(3), rollout(canary=1, tolerance=Tolerance(count=1)), {"folders": ["tenant"]})

    assert done.succeeded, done.cause
    statuses = {outcome["target"]: outcome["status"] for outcome in done.output["outcomes"]}
    assert statuses == {"tenant_0": "skipped", "tenant_1": "succeeded", "tenant_2": "failed"}
    assert done.output["failed"] == 1
    (skipped,) = [outcome for outcome in done.output["outcomes"] if outcome["status"] == "skipped"]
    assert skipped["runs"][0]["skipped"] == reason
