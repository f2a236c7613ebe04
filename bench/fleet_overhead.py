"""The fleet's state machine (infra/fleet_definition.py) in the local Step Functions: overhead per target.

The synthesized definition over N targets (a canary of one, then one wave), its ``lambda:invoke``
tasks answered in-process (``local.stepfunctions``) with the fleet contract's answer after a fixed
sleep standing in for work; ``--parts K`` makes every target answer ``done=false`` K-1 times.
Wall time is from StartExecution to the end seen by DescribeExecution (polled every 10 ms);
*overhead per target* is ``(wall - work on the critical path) / N``. *events / target* is the
execution's history length over N: a STANDARD execution holds at most 25,000 events; *report
bytes / target* the output's size over N: a state's data holds at most 256 KB. Both bound how
many targets one execution can carry. ``python -m bench.fleet_overhead [--append]`` prints a
Markdown section (``--append`` adds it to bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from typing import Any

from bench.report import publish
from infra.fleet_definition import FleetTarget, Rollout, fleet_definition
from local.aws import LocalAws
from local.stepfunctions import LocalStepFunctions

FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:dbmigrate"
SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:fleet"
HISTORY_LIMIT = 25_000
PAYLOAD_LIMIT = 256 * 1024
"""Step Functions' limit on one state's input or output, which the fleet report (the output) must fit."""


class Work:
    """The function's stand-in: sleeps, then answers done once a target has had ``parts`` invocations."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.parts = 1
        self.seen: dict[str, int] = {}

    def __call__(self, name: str, event: Any) -> Any:
        target = event["target"]["name"]
        self.seen[target] = self.seen.get(target, 0) + 1
        time.sleep(self.seconds)
        done = self.seen[target] >= self.parts
        return {"target": target, "done": done, "applied": [{"database": target, "versions": ["1"]}], "error": None}


def measure(sfn: LocalStepFunctions, work: Work, targets: int, concurrency: int) -> tuple[float, int, int]:
    fleet = [FleetTarget(name=f"t{index}", host="db", secret_arn=SECRET) for index in range(targets)]
    definition = fleet_definition(fleet, Rollout(canary=1, max_concurrency=concurrency), function_arn=FUNCTION_ARN)
    arn = sfn.create_state_machine(f"fleet-bench-{time.monotonic_ns()}", definition)
    work.seen = {}
    started = time.perf_counter()
    done = sfn.wait(sfn.start_execution(arn, {}), timeout_s=600)
    wall = time.perf_counter() - started
    if not done.succeeded:
        raise RuntimeError(f"benchmark execution failed: {done.error}: {done.cause}")
    return wall, len(done.events), len(json.dumps(done.output, separators=(",", ":")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=60)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--append", action="store_true", help="append the section to bench/RESULTS.md")
    args = parser.parse_args()
    work = Work()
    rows = []
    with LocalAws("us-east-1") as aws, LocalStepFunctions(aws.endpoint, aws.region, work) as sfn:
        measure(sfn, work, args.targets, 4)  # warm-up: the interpreter's first execution is slower
        for work_s, parts in ((0.0, 1), (0.05, 1), (0.0, 3)):
            work.seconds, work.parts = work_s, parts
            for concurrency in (1, 4):
                walls, events, size = [], 0, 0
                for _ in range(args.runs):
                    wall, events, size = measure(sfn, work, args.targets, concurrency)
                    walls.append(wall)
                wall = statistics.median(walls)
                # The canary runs alone, then the wave in ceil((N-1)/concurrency) rounds.
                rounds = 1 + math.ceil((args.targets - 1) / concurrency)
                overhead = (wall - rounds * parts * work_s) / args.targets
                per_target, bytes_per_target = events / args.targets, size / args.targets
                rows.append(
                    f"| {work_s * 1000:.0f} | {parts} | {concurrency} | {wall:.3f} ({min(walls):.3f}-{max(walls):.3f}) "
                    f"| {overhead * 1000:.1f} | {per_target:.1f} | {int(HISTORY_LIMIT // per_target)} "
                    f"| {bytes_per_target:.0f} | {int(PAYLOAD_LIMIT // bytes_per_target)} |"
                )
    section = "\n".join(
        [
            "",
            "## The fleet's state machine locally: overhead and history per target (issue 16)",
            "",
            f"`python -m bench.fleet_overhead`: `infra/fleet_definition.py` over {args.targets} targets (a canary "
            "of one, then one wave at MaxConcurrency), its tasks answered in-process with the fleet contract's "
            "answer (no function process, no database), moto's ASL interpreter; *invocations* is how many times "
            f"each target is invoked (done=false before the last); median of {args.runs} runs (min-max), on this "
            "2-core machine shared with other work. *overhead / target*: (wall - work on the critical path) / "
            f"targets. *targets / execution*: how many fit the {HISTORY_LIMIT:,} history events of one STANDARD "
            "execution at that rate; *report bytes / target*: the output's compact JSON over the targets (each "
            "answer applies one version), and how many targets fit the 256 KB a state's data may hold.",
            "",
            "| work per invocation (ms) | invocations | MaxConcurrency | wall (s) | overhead / target (ms) "
            "| events / target | targets / execution | report bytes / target | targets / 256 KB |",
            "|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
        ]
    )
    publish(section, append=args.append)


if __name__ == "__main__":
    main()
