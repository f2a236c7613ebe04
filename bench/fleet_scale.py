"""A fleet of 60 tenant databases x 20 files: the state machine at MaxConcurrency 1, 2, 4, 8 against one CLI run.

One PostgreSQL server (the test server's settings) holds 60 tenant databases. The fleet runs in
two shapes, each in one wave: 60 targets of one tenant each (a tenant group matching that one
database), and ``--slices`` targets of a contiguous slice of the tenants each (the tenants are
named ``tenant_<slice>_<n>``, a slice's group matches ``tenant_<slice>_%``). The state machine
(``infra/fleet_definition.py``) runs in moto's ASL interpreter and delivers each ``lambda:invoke``
to the packaged function through the local Lambda service (one function process per concurrent
invocation, as Lambda runs them).

Two baselines, both sequential over the 60 databases: one ``dbmigrate up`` (a folder per tenant,
files read from disk), and one invocation of the packaged function over a single target whose
group matches every tenant (the same S3 reads as any fleet target, then the databases one after
another): the first against the second is what S3 and moto cost, the second against a fleet is
what parallelism buys. Every measurement starts from freshly created tenant databases.
*overhead / target* (concurrency 1): (fleet wall - the function's own time summed over
invocations) / targets. Each execution's CPU is counted three ways: this process (moto and
the ASL interpreter run in it), the function's processes, PostgreSQL; against the wall time
it says how many of the machine's cores the fleet kept busy.

    .venv/bin/python -m bench.fleet_scale [--tenants 60] [--files 20] [--slices 6] [--append]

Prints a Markdown section (``--append`` writes it into bench/RESULTS.md in place of the one
before); nothing asserts on a time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2

from bench.report import load_average, publish
from bench.sets import small_set
from infra.fleet_definition import FleetTarget, Rollout, TenantGroup, Tolerance, fleet_definition
from infra.packaging import build_package
from local.aws import LocalAws
from local.function import LocalFunction, PackageImage, runtime_python
from local.lambda_service import LocalLambda, ModelClock
from local.postgres import EmbeddedPostgres
from local.stepfunctions import LocalStepFunctions

BUCKET = "fleet-bench"
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:fleet-bench"
CONCURRENCY = (1, 2, 4, 8)
POLL_S = 0.1
"""How often the execution's status is asked for: each DescribeExecution costs this process and moto CPU
that the fleet would otherwise have (every 10 ms, the default, took a third of this process's CPU in the
slice shape)."""
GOAL = 1.8
"""Issue 16: a fleet at MaxConcurrency 4 at least this many times faster than the sequential CLI run."""


def tenant_names(count: int, slices: int) -> list[str]:
    """``tenant_<slice>_<n>``: tenant n in slice n * slices // count, so each slice is contiguous."""
    return [f"tenant_{n * slices // count:02d}_{n:02d}" for n in range(count)]


def recreate(server: EmbeddedPostgres, tenants: list[str]) -> None:
    """Fresh tenant databases; returns once the postmaster has reaped the backend, so that the CPU
    this cost is counted before a measurement starts, not in it."""
    conn = psycopg2.connect(server.dsn("postgres"))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        [(backend,)] = cur.fetchall()
        for name in tenants:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            cur.execute(f"CREATE DATABASE {name}")
    conn.close()
    while Path(f"/proc/{backend}").exists():
        time.sleep(0.01)


def sequential(
    server: EmbeddedPostgres, tenants: list[str], files: dict[str, str], work: Path
) -> tuple[float, tuple[float, ...]]:
    """One ``dbmigrate up`` over a folder per tenant, the databases one after another: its wall time and
    CPU (none here / the CLI's process / PostgreSQL)."""
    for tenant in tenants:
        for key, sql in files.items():
            path = work / "cli" / tenant / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(sql)
    recreate(server, tenants)
    command = [sys.executable, "-m", "dbmigrate", "up", "--dir", str(work / "cli"), "--database-url", server.url()]
    cpu_before = cpu_seconds(server)
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    wall = time.perf_counter() - started
    time.sleep(0.5)  # the postmaster reaps the CLI's backends
    return wall, tuple(after - before for after, before in zip(cpu_seconds(server), cpu_before, strict=True))


class Timed:
    """The function behind the local Lambda service, its own time summed (the work on the critical path)."""

    def __init__(self, service: LocalLambda) -> None:
        self.service, self.seconds, self.invocations, self.lock = service, 0.0, 0, threading.Lock()

    def __call__(self, _name: str, event: Any) -> Any:
        started = time.perf_counter()
        try:
            return self.service.invoke(event)
        finally:
            with self.lock:
                self.seconds += time.perf_counter() - started
                self.invocations += 1


def cpu_seconds(server: EmbeddedPostgres) -> tuple[float, float, float]:
    """CPU seconds so far of this process (moto and the ASL interpreter), of its ended children (the
    function's processes) and of PostgreSQL (the postmaster and the backends it has reaped)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    postmaster = int((server.data_dir / "postmaster.pid").read_text().split()[0])
    fields = Path(f"/proc/{postmaster}/stat").read_text().rsplit(")", 1)[1].split()
    postgres = sum(int(ticks) for ticks in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # utime stime cutime cstime
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime, postgres


@dataclass(frozen=True)
class Measured:
    """One execution of the fleet: its wall time, the function's time summed over its invocations, and
    the CPU seconds it cost (this process with moto, the function's processes, PostgreSQL)."""

    targets: int
    concurrency: int
    wall: float
    function_s: float
    invocations: int
    cpu: tuple[float, float, float]


class Bench:
    """The server, the local AWS and the packaged function: runs one fleet execution on fresh databases."""

    def __init__(self, server: EmbeddedPostgres, aws: LocalAws, start: Callable[[], LocalFunction], tenants: list[str]):
        self.server, self.aws, self.start, self.tenants = server, aws, start, tenants

    def run(self, targets: Sequence[FleetTarget], concurrency: int) -> Measured:
        service = LocalLambda(self.start, name="fleet-bench", reserved_concurrency=None, clock=ModelClock())
        timed = Timed(service)
        rollout = Rollout(canary=0, max_concurrency=concurrency, tolerance=Tolerance(count=0))
        try:
            with LocalStepFunctions(self.aws.endpoint, self.aws.region, timed) as sfn:
                machine = sfn.create_state_machine(
                    f"fleet-{len(targets)}-{concurrency}", fleet_definition(targets, rollout, function_arn=FUNCTION_ARN)
                )
                recreate(self.server, self.tenants)
                cpu_before = cpu_seconds(self.server)
                started = time.perf_counter()
                done = sfn.wait(sfn.start_execution(machine, {}), timeout_s=1800, poll_s=POLL_S)
                wall = time.perf_counter() - started
        finally:
            service.close()
        cpu = tuple(after - before for after, before in zip(cpu_seconds(self.server), cpu_before, strict=True))
        if done.status != "SUCCEEDED" or done.output["failed"]:
            raise SystemExit(f"{len(targets)} targets at concurrency {concurrency}: {done.status} {done.cause}")
        return Measured(len(targets), concurrency, wall, timed.seconds, timed.invocations, (cpu[0], cpu[1], cpu[2]))


def shape_table(runs: list[Measured], cli: float, alone: float) -> list[str]:
    """One shape's rows: each concurrency against both baselines."""
    rows = [
        "| MaxConcurrency | fleet wall (s) | vs sequential CLI | vs one invocation | function time / target (ms) "
        "| overhead / target (ms) | CPU (s): moto + ASL / function / PostgreSQL | cores busy |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        overhead = f"{(run.wall - run.function_s) / run.targets * 1000:.0f}" if run.concurrency == 1 else "-"
        rows.append(
            f"| {run.concurrency} | {run.wall:.2f} | {cli / run.wall:.2f}x | {alone / run.wall:.2f}x "
            f"| {run.function_s / run.targets * 1000:.0f} | {overhead} "
            f"| {' / '.join(f'{seconds:.1f}' for seconds in run.cpu)} | {sum(run.cpu) / run.wall:.2f} |"
        )
    return rows


def verdict(runs: list[Measured], cli: float) -> str:
    at_four = next(run for run in runs if run.concurrency == 4)
    ratio = cli / at_four.wall
    return f"{'met' if ratio >= GOAL else 'MISSED'} ({ratio:.2f}x)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=60)
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--slices", type=int, default=6, help="tenant-group targets of the second shape")
    parser.add_argument("--append", action="store_true", help="write the section into bench/RESULTS.md")
    args = parser.parse_args()
    if not 1 <= args.slices <= args.tenants <= 100:
        parser.error("need 1 <= --slices <= --tenants <= 100")
    load_start = load_average()
    tenants = tenant_names(args.tenants, args.slices)
    migrations = small_set(args.files).migrations
    files = {f"{m.version}_{m.description}.up.sql": m.sql for m in migrations}
    with tempfile.TemporaryDirectory(prefix="dbmigrate-fleet-scale-") as folder, EmbeddedPostgres() as server:
        work = Path(folder)
        cli, cli_cpu = sequential(server, tenants, files, work)
        package = build_package(work / "lambda.zip").path
        image = PackageImage(package)
        with LocalAws("us-east-1") as aws:
            aws.s3.create_bucket(Bucket=BUCKET)
            aws.upload(BUCKET, {f"tenant/{key}": sql for key, sql in files.items()}, "fleet/")
            secret = json.dumps({"username": server.user, "password": server.password})
            arn = aws.secretsmanager.create_secret(Name="fleet-bench", SecretString=secret)["ARN"]
            environment = {
                **aws.environ,
                "MIGRATIONS_BUCKET": BUCKET,
                "MIGRATIONS_PREFIX": "fleet",
                "DB_SECRET_ARN": arn,
                "LOG_LEVEL": "WARNING",
            }
            python = runtime_python()[0]

            def start() -> LocalFunction:
                return LocalFunction(
                    image,
                    handler="handler.handler",
                    environment=environment,
                    timeout_s=900,
                    name="fleet-bench",
                    python=python,
                    logs=open(os.devnull, "w"),
                )

            def target(name: str, match: str) -> FleetTarget:
                return FleetTarget(name, server.host, arn, server.port, tenant_group=TenantGroup("tenant", match))

            bench = Bench(server, aws, start, tenants)
            alone = bench.run([target("all-tenants", "tenant_%")], 1)
            one_each = [target(name, name) for name in tenants]
            slices = [target(f"slice-{s:02d}", f"tenant_{s:02d}_%") for s in range(args.slices)]
            shapes = {
                f"{len(one_each)} targets of one tenant each": [bench.run(one_each, c) for c in CONCURRENCY],
                f"{len(slices)} targets of {args.tenants // args.slices} tenants each (a slice)": [
                    bench.run(slices, c) for c in CONCURRENCY
                ],
            }
        image.remove()
    tables = []
    for title, runs in shapes.items():
        tables += ["", f"{title}:", "", *shape_table(runs, cli, alone.function_s)]
    goal = "; ".join(f"{title.split(' (')[0]}: {verdict(runs, cli)}" for title, runs in shapes.items())
    section = "\n".join(
        [
            "",
            f"## A fleet of {args.tenants} tenant databases x {args.files} files (issue 16)",
            "",
            f"`python -m bench.fleet_scale --slices {args.slices}`: one server, {args.tenants} tenant databases, "
            "the fleet in one wave in two shapes (targets of one tenant each; targets of a contiguous slice of the "
            "tenants each, a tenant group matching `tenant_<slice>_%`), the packaged function behind the local "
            "Lambda service (one process per concurrent invocation), moto's ASL interpreter and S3; fresh tenant "
            f"databases each time; one run each on this 2-core machine shared with other work (load average "
            f"{load_start} at start, {load_average()} at end). Baselines, both sequential over the same databases: "
            f"one `dbmigrate up` from a folder, **{cli:.2f} s** (CPU: the CLI {cli_cpu[1]:.1f} s, PostgreSQL "
            f"{cli_cpu[2]:.1f} s); one invocation of the function over a single "
            f"target matching all {args.tenants} tenants (its {args.files} files read from S3 once, then the databases "
            f"one after another), **{alone.function_s:.2f} s** ({alone.wall:.2f} s as the state machine's "
            f"execution; CPU {' / '.join(f'{seconds:.1f}' for seconds in alone.cpu)} s, split as in the tables). "
            "*function time / target*: the invocation as the state machine waits for it (a cold "
            "start for each new process included); *overhead / target* (concurrency 1): (wall - function "
            "time) / targets. *CPU*: seconds the execution cost this process (moto's S3 and Step Functions, "
            "the ASL interpreter), the function's processes and PostgreSQL; *cores busy*: their sum over the "
            "wall time, of the 2 cores (other work on the machine not counted).",
            *tables,
            "",
            f"Goal at MaxConcurrency 4, at least {GOAL}x faster than the sequential CLI run: {goal}.",
            "",
        ]
    )
    publish(section, append=args.append)


if __name__ == "__main__":
    main()
