"""Orchestration overhead of the local Step Functions (moto's ASL interpreter) per Map target.

A state machine of one inline Map over N targets whose task is a ``lambda:invoke`` answered
in-process (``local.stepfunctions``): a no-op, or a fixed sleep standing in for work. Wall time is
from StartExecution to the end seen by DescribeExecution (polled every 10 ms); *overhead per
target* is ``(wall - N x work / concurrency) / N``, what the interpreter adds to each target.
``python -m bench.sfn_overhead [--append]`` prints a Markdown section (``--append`` adds it to
bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from bench.report import publish
from local.aws import LocalAws
from local.stepfunctions import Execution, LocalStepFunctions

FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:dbmigrate"


def definition(concurrency: int) -> dict[str, Any]:
    task = {
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": FUNCTION_ARN, "Payload.$": "$"},
        "OutputPath": "$.Payload",
        "Retry": [{"ErrorEquals": ["Lambda.TooManyRequestsException"], "IntervalSeconds": 1, "MaxAttempts": 3}],
        "End": True,
    }
    return {
        "StartAt": "Targets",
        "States": {
            "Targets": {
                "Type": "Map",
                "ItemsPath": "$.targets",
                "MaxConcurrency": concurrency,
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "INLINE"},
                    "StartAt": "Migrate",
                    "States": {"Migrate": task},
                },
                "End": True,
            }
        },
    }


def measure(sfn: LocalStepFunctions, targets: int, concurrency: int) -> tuple[float, Execution]:
    arn = sfn.create_state_machine(f"bench-{concurrency}-{time.monotonic_ns()}", definition(concurrency))
    started = time.perf_counter()
    done = sfn.wait(sfn.start_execution(arn, {"targets": [{"target": f"t{i}"} for i in range(targets)]}), timeout_s=600)
    wall = time.perf_counter() - started
    if not done.succeeded:
        raise RuntimeError(f"benchmark execution failed: {done.error}: {done.cause}")
    return wall, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=60)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--append", action="store_true", help="append the section to bench/RESULTS.md")
    args = parser.parse_args()
    work = [0.0]

    def invoke(name: str, event: Any) -> Any:
        if work[0]:
            time.sleep(work[0])
        return event

    rows = []
    with LocalAws("us-east-1") as aws, LocalStepFunctions(aws.endpoint, aws.region, invoke) as sfn:
        for work_s in (0.0, 0.05):
            work[0] = work_s
            for concurrency in (1, 4):
                walls, events = [], 0
                for _ in range(args.runs):
                    wall, done = measure(sfn, args.targets, concurrency)
                    walls.append(wall)
                    events = len(done.events)
                wall = statistics.median(walls)
                overhead = (wall - args.targets * work_s / concurrency) / args.targets
                rows.append(
                    f"| {work_s * 1000:.0f} | {concurrency} | {wall:.3f} ({min(walls):.3f}-{max(walls):.3f}) "
                    f"| {overhead * 1000:.1f} | {events} |"
                )
    section = "\n".join(
        [
            "",
            "## Step Functions locally: orchestration overhead per target (issue 16)",
            "",
            f"`python -m bench.sfn_overhead`: one inline Map over {args.targets} targets, its task a "
            "`lambda:invoke` answered in-process (no function process), moto's ASL interpreter "
            f"(`local/stepfunctions.py`); median of {args.runs} runs (min-max), on this 2-core machine "
            "shared with other work. *overhead / target*: (wall - targets x work / concurrency) / targets.",
            "",
            "| work per task (ms) | MaxConcurrency | wall (s) | overhead / target (ms) | history events |",
            "|---|---|---|---|---|",
            *rows,
            "",
        ]
    )
    publish(section, append=args.append)


if __name__ == "__main__":
    main()
