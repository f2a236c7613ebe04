"""The fleet's state machine as Amazon States Language: a pure function of the fleet's description.

``fleet_definition(targets, rollout, function_arn=...)`` returns the definition (a dict, JSONPath
query language) of a STANDARD state machine that migrates every target of the fleet (the targets
and the rollout are described in ``infra.fleet_plan``) with the migration function, in stages:

1. the **canary** (the first N targets, or the ones named): an inline Map; any failed canary
   target fails the execution (``FleetCanaryFailed``) and no wave runs;
2. the **waves**: the other targets, ``wave_size`` at a time (all of them in one wave when
   ``None``), each wave an inline Map of at most ``max_concurrency`` targets at once. After each
   wave the failed targets of all waves so far are counted against the tolerance, fixed here
   from a count or a percentage of the wave targets; past it the execution fails
   (``FleetToleranceExceeded``) and the later waves do not run. Within the tolerance, the
   execution succeeds.

moto's interpreter ignores a Map's ``ToleratedFailure*`` (tests/integration/
test_stepfunctions_local.py), and AWS honours them only in a distributed Map, so failures are
caught in each target's iteration and counted after the Map: the definition behaves the same
on AWS and locally. Paths that may match nothing (a filter without a match, a wildcard over an
empty list) are a ``States.Runtime`` error on the interpreter, so the definition only filters
once it knows a failure exists, and never flattens lists that may be empty.

The execution's input: ``{"folders": null}`` (or ``{}``) runs every target, as the deploy-time
run does; ``{"folders": ["tenant", ...]}``, as an upload sends, passes the layout's folders that
changed to every target, and the function answers ``skipped`` for a target none of them concerns.

The task's payload (the function's event), one per invocation::

    {"action": "migrate", "folders": null,
     "target": {"name": "eu-tenants", "host": "...", "port": 5432,
                "secret_arn": "arn:...", "databases": ["tenant_1", ...]}}

``target`` is ``FleetTarget.payload()``: ``databases`` (the databases to migrate) or
``tenant_group`` (``{"name": ..., "match": ...}``, databases found on the server), or neither
(every database of the layout). The function's result (its answer), one per invocation::

    {"target": "eu-tenants", "done": true,
     "applied": [{"database": "tenant_1", "versions": ["202401010100", ...]}, ...],
     "error": null}

- ``done``: false when the run stopped at a file boundary because the invocation's time ran
  short; the state machine invokes again with the same payload (the history says what is left),
  at most ``max_invocations`` times.
- ``applied``: what this invocation applied; versions as strings (they may be wider than the
  64-bit integers a JSON number safely carries).
- ``skipped``: absent or null; else why the target had nothing to do (the outcome's status is then
  ``skipped``, neither a success nor a failure).
- ``error``: null, or the first error that stopped the target (``MigrationError.to_dict()``:
  ``error``, ``message``, ``database``, ``file``, ``line``, ...). A migration error is answered,
  not raised: a raised error (or a timeout, or throttling past the retries) is caught and
  reported too, but only with the error's name and cause.

The execution's output, the fleet report::

    {"status": "succeeded", "targets": 6, "failed": 1, "tolerated": 1,
     "outcomes": [{"target": "eu-tenants", "stage": "canary", "status": "succeeded",
                   "error": null, "invocations": 2, "runs": [<answer>, <answer>]}, ...]}

A failed execution's cause is JSON: ``message`` (how many failed, the tolerance, the fix),
``failed`` (the failed targets' outcomes, each with its error) and ``not_run`` (the targets of
the stages that did not start).

Limits: a definition holds at most 1 MB (a thousand targets in waves of a hundred take about
400 kB), and one STANDARD execution at most 25,000 history events; ``python -m
bench.fleet_overhead`` measures the events each target adds, which bounds the targets one
execution can carry (a larger fleet needs a distributed Map, whose iterations are child
executions).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .fleet_plan import FleetTarget, Retry, Rollout, Stage, TenantGroup, Tolerance, stages

__all__ = [
    "FleetTarget",
    "Retry",
    "Rollout",
    "Stage",
    "TenantGroup",
    "Tolerance",
    "fleet_definition",
    "stages",
]

RETRIED_ERRORS = (
    "Lambda.TooManyRequestsException",
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
)
"""What Lambda answers when the call, not the migration, failed: worth another attempt."""
FAILED = "failed"
SUCCEEDED = "succeeded"
SKIPPED = "skipped"
FIX_FAILED = (
    "Fix: read the error of each failed target, fix the migration file or the server it names, and start "
    "the fleet again (applied files are never applied twice)"
)

State = dict[str, Any]


def fleet_definition(targets: Sequence[FleetTarget], rollout: Rollout, *, function_arn: str) -> dict[str, Any]:
    """The state machine's definition (see the module docstring for what it does and answers)."""
    plan = stages(targets, rollout)
    wave_targets = sum(len(stage.targets) for stage in plan if not stage.is_canary)
    tolerated = rollout.tolerance.tolerated(wave_targets)
    states: dict[str, State] = {
        "Fleet": {
            "Type": "Choice",
            "Comment": "folders: the layout's folders an upload changed (null or absent: run every target)",
            "Choices": [{"Variable": "$.folders", "IsPresent": True, "Next": "Folders given"}],
            "Default": "Every folder",
        },
        "Every folder": {"Type": "Pass", "Result": None, "ResultPath": "$.folders", "Next": "Folders given"},
        "Folders given": {
            "Type": "Pass",
            "Parameters": {"outcomes": {}, "folders.$": "$.folders"},
            "Next": f"{plan[0].title} targets",
        },
    }
    for index, stage in enumerate(plan):
        later = plan[index + 1 :]
        after = f"{later[0].title} targets" if later else "No failures"
        # Only the running stage's targets are in the state: an execution's data holds at most 256 KB.
        states[f"{stage.title} targets"] = {
            "Type": "Pass",
            "Comment": "The targets of this stage, fixed when the state machine was synthesized",
            "Result": [target.payload() for target in stage.targets],
            "ResultPath": "$.targets",
            "Next": stage.title,
        }
        states[stage.title] = stage_map(stage, rollout, function_arn, next_state=f"{stage.title} checked")
        states |= checkpoint(
            stage,
            tolerated=0 if stage.is_canary else tolerated,
            tolerance=rollout.tolerance.describe(wave_targets),
            not_run=[target.name for stage in later for target in stage.targets],
            next_state=after,
            within=after if later else "Report",
        )
    states |= {
        "No failures": {
            "Type": "Pass",
            "Result": {"count": 0, "failed": []},
            "ResultPath": "$.check",
            "Next": "Report",
        },
        "Report": {
            "Type": "Pass",
            "Parameters": {
                "status": SUCCEEDED,
                "targets": len(targets),
                "failed.$": "$.check.count",
                "tolerated": tolerated,
                "outcomes.$": "$.outcomes[*][*]",
            },
            "End": True,
        },
    }
    return {
        "Comment": f"dbmigrate fleet: {len(targets)} targets in {len(plan)} stages",
        "StartAt": "Fleet",
        "States": states,
    }


def stage_map(stage: Stage, rollout: Rollout, function_arn: str, *, next_state: str) -> State:
    """One stage: an inline Map over its targets, each iteration's outcome caught, never failing the Map."""
    return {
        "Type": "Map",
        "ItemsPath": "$.targets",
        "ItemSelector": {"target.$": "$$.Map.Item.Value", "folders.$": "$.folders", "stage": stage.key, "runs": []},
        "MaxConcurrency": rollout.max_concurrency,
        "ItemProcessor": {
            "ProcessorConfig": {"Mode": "INLINE"},
            "StartAt": f"{stage.title} invoke 1",
            "States": iteration(stage.title, rollout, function_arn),
        },
        "ResultPath": f"$.outcomes.{stage.key}",
        "Next": next_state,
    }


def iteration(title: str, rollout: Rollout, function_arn: str) -> dict[str, State]:
    """One target: invoke, keep the answer, invoke again while it is not done (unrolled: the count is static).

    Each invocation's answer is appended to ``$.runs`` by listing the earlier runs by index
    (their number is known in each state), so no path ever flattens a list that may be empty.
    """
    states: dict[str, State] = {}
    last = rollout.max_invocations
    for number in range(1, last + 1):
        earlier = [f"$.runs[{index}]" for index in range(number - 1)]
        states[f"{title} invoke {number}"] = invoke(
            function_arn, rollout.retry, next_state=f"{title} answer {number}", on_error=f"{title} raised"
        )
        states[f"{title} answer {number}"] = {
            "Type": "Pass",
            "Parameters": {
                "target.$": "$.target",
                "folders.$": "$.folders",
                "stage.$": "$.stage",
                "last.$": "$.last.answer",
                "runs.$": f"States.Array({', '.join([*earlier, '$.last.answer'])})",
            },
            "Next": f"{title} done {number}",
        }
        again = f"{title} invoke {number + 1}" if number < last else f"{title} unfinished"
        states[f"{title} done {number}"] = answered(title, again=again)
    return states | outcomes(title, rollout.max_invocations)


def invoke(function_arn: str, retry: Retry, *, next_state: str, on_error: str) -> State:
    """The ``lambda:invoke`` task: retried when Lambda refused the call, any other failure caught."""
    return {
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {
            "FunctionName": function_arn,
            "Payload": {"action": "migrate", "target.$": "$.target", "folders.$": "$.folders"},
        },
        "ResultSelector": {"answer.$": "$.Payload"},
        "ResultPath": "$.last",
        "Retry": [
            {
                "ErrorEquals": list(RETRIED_ERRORS),
                "IntervalSeconds": retry.interval_s,
                "MaxAttempts": retry.max_attempts,
                "BackoffRate": retry.backoff_rate,
                "MaxDelaySeconds": retry.max_delay_s,
                "JitterStrategy": "FULL",
            }
        ],
        "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure", "Next": on_error}],
        "Next": next_state,
    }


def answered(title: str, *, again: str) -> State:
    """Which outcome the last answer leads to: not the contract, an error, not done (again), done."""
    done = "$.last.done"
    return {
        "Type": "Choice",
        "Choices": [
            {
                "Not": {"And": [{"Variable": done, "IsPresent": True}, {"Variable": done, "IsBoolean": True}]},
                "Next": f"{title} not answered",
            },
            {
                "And": [
                    {"Variable": "$.last.error", "IsPresent": True},
                    {"Not": {"Variable": "$.last.error", "IsNull": True}},
                ],
                "Next": f"{title} failed",
            },
            {"Variable": done, "BooleanEquals": False, "Next": again},
            {
                "And": [
                    {"Variable": "$.last.skipped", "IsPresent": True},
                    {"Not": {"Variable": "$.last.skipped", "IsNull": True}},
                ],
                "Next": f"{title} skipped",
            },
        ],
        "Default": f"{title} succeeded",
    }


def outcomes(title: str, max_invocations: int) -> dict[str, State]:
    """The iteration's last states: one outcome object each, ``status`` succeeded or failed."""

    def outcome(status: str, error: Any, *, invocations: str = "States.ArrayLength($.runs)") -> State:
        parameters = {"target.$": "$.target.name", "stage.$": "$.stage", "status": status}
        parameters |= {"error.$": error} if isinstance(error, str) else {"error": error}
        return {
            "Type": "Pass",
            "Parameters": {**parameters, "invocations.$": invocations, "runs.$": "$.runs"},
            "End": True,
        }

    return {
        f"{title} succeeded": outcome(SUCCEEDED, None),
        f"{title} skipped": outcome(SKIPPED, None),
        f"{title} failed": outcome(FAILED, "$.last.error"),
        f"{title} raised": outcome(
            FAILED,
            {"error.$": "$.failure.Error", "message.$": "$.failure.Cause"},
            invocations="States.MathAdd(States.ArrayLength($.runs), 1)",
        ),
        f"{title} not answered": outcome(
            FAILED,
            {
                "error": "FleetContractError",
                "message": (
                    "the function's answer has no boolean done: it does not answer the fleet's migrate payload. "
                    "Fix: deploy a function that does (infra/fleet_definition.py describes the contract)"
                ),
            },
        ),
        f"{title} unfinished": outcome(
            FAILED,
            {
                "error": "FleetUnfinishedError",
                "message": (
                    f"not done after {max_invocations} invocations. Fix: raise the rollout's max_invocations or "
                    "the function's timeout; the next run continues where this one stopped"
                ),
            },
        ),
    }


def _check_literal(text: str) -> None:
    """An intrinsic function's string literal: quotes, braces and backslashes would need escapes."""
    if set(text.replace("{}", "")) & set("'{}\\"):
        raise ValueError(f"the message {text!r} holds a quote, brace or backslash: write it without")


def checkpoint(  # noqa: PLR0913  keyword-only: what the stage's check compares and where it leads
    stage: Stage,
    *,
    tolerated: int,
    tolerance: str,
    not_run: list[str],
    next_state: str,
    within: str,
) -> dict[str, State]:
    """After a stage: any failure so far? how many? past the tolerance, fail naming them and what did not run."""
    title = stage.title
    if stage.is_canary:
        message = (
            f"{{}} of {len(stage.targets)} canary targets failed; the waves did not run "
            f"({len(not_run)} targets). {FIX_FAILED}"
        )
        error = "FleetCanaryFailed"
    else:
        message = (
            f"{{}} wave targets failed, more than the {tolerated} tolerated ({tolerance}); "
            f"targets not run: {len(not_run)}. {FIX_FAILED}"
        )
        error = "FleetToleranceExceeded"
    _check_literal(message)
    check = "$.check"
    return {
        f"{title} checked": {
            "Type": "Pass",
            "Parameters": {"statuses.$": "$.outcomes[*][*].status"},
            "ResultPath": check,
            "Next": f"{title} any failed",
        },
        f"{title} any failed": {
            "Type": "Pass",
            "Parameters": {"any.$": f"States.ArrayContains($.check.statuses, '{FAILED}')"},
            "ResultPath": check,
            "Next": f"{title} failures",
        },
        f"{title} failures": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.check.any", "BooleanEquals": True, "Next": f"{title} count failures"}],
            "Default": next_state,
        },
        f"{title} count failures": {
            "Type": "Pass",
            "Parameters": {"failed.$": f"$.outcomes[*][?(@.status == '{FAILED}')]"},
            "ResultPath": check,
            "Next": f"{title} counted",
        },
        f"{title} counted": {
            "Type": "Pass",
            "Parameters": {"failed.$": "$.check.failed", "count.$": "States.ArrayLength($.check.failed)"},
            "ResultPath": check,
            "Next": f"{title} tolerated",
        },
        f"{title} tolerated": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.check.count", "NumericGreaterThan": tolerated, "Next": f"{title} stop"}],
            "Default": within,
        },
        f"{title} stop": {
            "Type": "Pass",
            "Parameters": {
                "message.$": f"States.Format('{message}', $.check.count)",
                "failed.$": "$.check.failed",
                "not_run": not_run,
            },
            "ResultPath": "$.stop",
            "Next": f"{title} cause",
        },
        f"{title} cause": {
            "Type": "Pass",
            "Parameters": {"cause.$": "States.JsonToString($.stop)"},
            "ResultPath": "$.stop",
            "Next": f"{title} fleet failed",
        },
        f"{title} fleet failed": {"Type": "Fail", "Error": error, "CausePath": "$.stop.cause"},
    }
