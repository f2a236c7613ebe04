"""A fleet of 60 tenant databases x 20 files: the state machine at MaxConcurrency 1, 2, 4, 8 against one CLI run.

One PostgreSQL server (the test server's settings) holds 60 tenant databases. The fleet is
60 targets, one per tenant (a tenant group matching that one database), in one wave; the
state machine (``infra/fleet_definition.py``) runs in moto's ASL interpreter and delivers each
``lambda:invoke`` to the packaged function through the local Lambda service (one function
process per concurrent invocation, as Lambda runs them). The sequential baseline is one
``dbmigrate up`` over the same 60 databases (a folder per tenant). Every measurement starts
from freshly created tenant databases. *overhead / target* (concurrency 1): (fleet wall -
the function's own time summed over invocations) / targets.

    .venv/bin/python -m bench.fleet_scale [--tenants 60] [--files 20] [--append]

Prints a Markdown section (``--append`` adds it to bench/RESULTS.md); nothing asserts on a time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psycopg2

from bench.report import publish
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


def recreate(server: EmbeddedPostgres, tenants: list[str]) -> None:
    conn = psycopg2.connect(server.dsn("postgres"))
    conn.autocommit = True
    with conn.cursor() as cur:
        for name in tenants:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            cur.execute(f"CREATE DATABASE {name}")
    conn.close()


def sequential(server: EmbeddedPostgres, tenants: list[str], files: dict[str, str], work: Path) -> float:
    """One ``dbmigrate up`` over a folder per tenant: the databases one after another."""
    for tenant in tenants:
        for key, sql in files.items():
            path = work / "cli" / tenant / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(sql)
    recreate(server, tenants)
    command = [sys.executable, "-m", "dbmigrate", "up", "--dir", str(work / "cli"), "--database-url", server.url()]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started


class Timed:
    """The function behind the local Lambda service, its own time summed (the work on the critical path)."""

    def __init__(self, service: LocalLambda) -> None:
        self.service, self.seconds, self.lock = service, 0.0, threading.Lock()

    def __call__(self, _name: str, event: Any) -> Any:
        started = time.perf_counter()
        try:
            return self.service.invoke(event)
        finally:
            with self.lock:
                self.seconds += time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=60)
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--append", action="store_true", help="append the section to bench/RESULTS.md")
    args = parser.parse_args()
    tenants = [f"tenant_{n:02d}" for n in range(1, args.tenants + 1)]
    migrations = small_set(args.files).migrations
    files = {f"{m.version}_{m.description}.up.sql": m.sql for m in migrations}
    rows = []
    with tempfile.TemporaryDirectory(prefix="dbmigrate-fleet-scale-") as folder, EmbeddedPostgres() as server:
        work = Path(folder)
        baseline = sequential(server, tenants, files, work)
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

            targets = [
                FleetTarget(name, server.host, arn, server.port, tenant_group=TenantGroup("tenant", name))
                for name in tenants
            ]
            for concurrency in (1, 2, 4, 8):
                service = LocalLambda(start, name="fleet-bench", reserved_concurrency=None, clock=ModelClock())
                timed = Timed(service)
                rollout = Rollout(canary=0, max_concurrency=concurrency, tolerance=Tolerance(count=0))
                with LocalStepFunctions(aws.endpoint, aws.region, timed) as sfn:
                    machine = sfn.create_state_machine(
                        f"fleet-{concurrency}", fleet_definition(targets, rollout, function_arn=FUNCTION_ARN)
                    )
                    recreate(server, tenants)
                    started = time.perf_counter()
                    done = sfn.run(machine, {}, timeout_s=1800)
                    wall = time.perf_counter() - started
                service.close()
                if done.status != "SUCCEEDED" or done.output["failed"]:
                    raise SystemExit(f"concurrency {concurrency}: {done.status} {done.cause}")
                overhead = (wall - timed.seconds) / len(targets) if concurrency == 1 else None
                rows.append(
                    f"| {concurrency} | {wall:.2f} | {baseline / wall:.2f}x | "
                    f"{timed.seconds / len(targets) * 1000:.0f} | "
                    + (f"{overhead * 1000:.0f} |" if overhead is not None else "- |")
                )
        image.remove()
    section = "\n".join(
        [
            "",
            f"## A fleet of {args.tenants} tenant databases x {args.files} files (issue 16)",
            "",
            "`python -m bench.fleet_scale`: one server, "
            f"{args.tenants} targets of one tenant each in one wave, the packaged function behind the local "
            "Lambda service (one process per concurrent invocation), moto's ASL interpreter; fresh tenant "
            f"databases each time; one run each on this 2-core machine. Sequential baseline: one `dbmigrate up` "
            f"over the same databases, {baseline:.2f} s. *function time / target*: the invocation as the "
            "state machine waits for it (a cold start for each new process included).",
            "",
            "| MaxConcurrency | fleet wall (s) | faster than sequential | function time / target (ms) "
            "| overhead / target (ms) |",
            "|---|---|---|---|---|",
            *rows,
            "",
        ]
    )
    publish(section, append=args.append)


if __name__ == "__main__":
    main()
