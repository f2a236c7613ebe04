"""The fleet part of the main job: three servers, twenty tenant databases, in stages, on Step Functions.

After the stack's own deploy, the same packaged function migrates a fleet:

- three PostgreSQL servers stand in for three RDS instances: ``eu`` (the app's database),
  ``us`` and ``ap`` (ten tenant databases each, ``tenant_01`` ... ``tenant_20``);
- the fleet's state machine (``infra/fleet_definition.py``) runs in moto's ASL interpreter:
  ``eu`` is the canary, then ``us`` and ``ap`` in one wave at a concurrency of 2, one failed
  target tolerated; each ``lambda:invoke`` is delivered to the packaged function through the
  local Lambda service, as the deploy's own invocations are;
- each step is a deploy-time run: the packaged function is invoked with ``{"action": "fleet"}``
  (``FLEET_STATE_MACHINE_ARN`` names the state machine), starts the execution, waits for it
  and answers the fleet report, as ``terraform apply`` would see it;
- step 1 gives every tenant its first file; step 2 adds a second, which fails on purpose on
  ``tenant_17`` (a table of that name is already there) while every other tenant applies it;
- the fix (the table dropped), and the fleet run again: only ``tenant_17``'s file is applied.

Each step prints the fleet report, one line per target; at the end, ``dbmigrate fleet status``
(the function's ``fleet-status`` answer, rendered as the command line does): a table per target.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import psycopg2

from dbmigrate.cli_remote import remote_fleet
from dbmigrate.cli_render import render
from infra.fleet_definition import FleetTarget, Rollout, TenantGroup, Tolerance, fleet_definition
from local.aws import LocalAws
from local.deploy import LocalDeploy
from local.function import FunctionError
from local.lambda_service import LocalLambda
from local.postgres import EmbeddedPostgres
from local.stepfunctions import LocalStepFunctions

__all__ = ["run_fleet"]

PREFIX = "fleet/"
SERVERS = ("eu", "us", "ap")
TENANTS = {"us": range(1, 11), "ap": range(11, 21)}
FAILING_TENANT = "tenant_17"
FILES = {
    "postgres/202401010000_create_app.up.sql": "CREATE DATABASE app;\n",
    "app/202401010100_orders.up.sql": "CREATE TABLE orders (id bigint PRIMARY KEY);\n",
    "tenant/202402010000_accounts.up.sql": "CREATE TABLE accounts (id bigint PRIMARY KEY, name text NOT NULL);\n",
}
SECOND_STEP = {"tenant/202402020000_plans.up.sql": "CREATE TABLE plans (id bigint PRIMARY KEY, account bigint);\n"}
ROLLOUT = Rollout(canary=1, max_concurrency=2, tolerance=Tolerance(count=1))

Say = Callable[[str], None]


def run_fleet(deploy: LocalDeploy, aws: LocalAws, step: Say, say: Say) -> bool:
    """The fleet's three steps on the deploy's function and stand-ins; True when each went as it should."""
    with ExitStack() as stack:
        servers = {name: stack.enter_context(EmbeddedPostgres()) for name in SERVERS}
        step(
            "fleet: three more PostgreSQL servers (eu, us, ap) for three RDS instances; "
            + ", ".join(f"{server.host}:{server.port}" for server in servers.values())
        )
        for name, numbers in TENANTS.items():
            for number in numbers:
                _execute(servers[name], f"CREATE DATABASE tenant_{number:02d}")
        _execute(servers["ap"], "CREATE TABLE plans (id int)", database=FAILING_TENANT)  # step 2 fails here
        targets = _targets(servers, aws)
        definition = fleet_definition(targets, ROLLOUT, function_arn=_function_arn(deploy, aws))
        service = _fleet_function(deploy)
        stack.callback(service.close)
        sfn = stack.enter_context(
            LocalStepFunctions(aws.endpoint, aws.region, lambda _name, event: service.invoke(event))
        )
        deploy.overrides["FLEET_STATE_MACHINE_ARN"] = sfn.create_state_machine("dbmigrate-fleet", definition)
        step(
            f"fleet state machine: canary eu, then us and ap at a concurrency of {ROLLOUT.max_concurrency}, "
            "1 failed target tolerated; 20 tenant databases (tenant_01-10 on us, 11-20 on ap)"
        )
        aws.upload(deploy.bucket, FILES, PREFIX)
        first = _run(service, step, say, "step 1: every tenant's first file, the app's database on eu")
        aws.upload(deploy.bucket, SECOND_STEP, PREFIX)
        second = _run(service, step, say, f"step 2: a second tenant file; it fails on {FAILING_TENANT} on purpose")
        _execute(servers["ap"], "DROP TABLE plans", database=FAILING_TENANT)
        third = _run(service, step, say, f"fixed on {FAILING_TENANT}; the fleet again: only what is left")
        step("dbmigrate fleet status (the function looks at every target): a table per target")
        status = remote_fleet("status", service.invoke)
        printed = io.StringIO()
        render(status, printed, printed)
        for line in printed.getvalue().splitlines():
            say(f"    {line}" if line else "")
    return _as_expected(first, second, third) and not status["problems"]


def _targets(servers: dict[str, EmbeddedPostgres], aws: LocalAws) -> list[FleetTarget]:
    secrets = {
        name: aws.secretsmanager.create_secret(
            Name=f"fleet-{name}", SecretString=json.dumps({"username": server.user, "password": server.password})
        )["ARN"]
        for name, server in servers.items()
    }
    group = TenantGroup("tenant", "tenant_%")
    return [
        FleetTarget("eu", servers["eu"].host, secrets["eu"], servers["eu"].port, databases=("postgres", "app")),
        FleetTarget("us", servers["us"].host, secrets["us"], servers["us"].port, tenant_group=group),
        FleetTarget("ap", servers["ap"].host, secrets["ap"], servers["ap"].port, tenant_group=group),
    ]


def _fleet_function(deploy: LocalDeploy) -> LocalLambda:
    """The deploy's function (same package, same settings) reading the fleet's prefix of the bucket."""
    deploy.overrides["MIGRATIONS_PREFIX"] = PREFIX.rstrip("/")
    deploy.overrides.pop("DB_SSLROOTCERT", None)
    return LocalLambda(deploy.another_function, name="fleet", reserved_concurrency=None, clock=deploy.clock)


def _function_arn(deploy: LocalDeploy, aws: LocalAws) -> str:
    return f"arn:aws:lambda:{aws.region}:123456789012:function:{deploy.stack.one('aws_lambda_function').address}"


def _run(service: LocalLambda, step: Say, say: Say, title: str) -> dict[str, Any] | None:
    """One deploy-time run of the fleet through the function: its report, printed (None: the apply failed)."""
    step(title)
    try:
        report: dict[str, Any] = service.invoke({"action": "fleet", "tf": {"action": "create", "prev_input": None}})
    except FunctionError as exc:
        say(f"    the deploy-time run failed, so the apply fails: {exc}")
        return None
    rows = [("TARGET", "STAGE", "STATUS", "APPLIED", "ERROR")]
    for outcome in report["outcomes"]:
        rows.append(
            (
                outcome["target"],
                outcome["stage"],
                outcome["status"],
                _applied(outcome),
                _error(outcome.get("error")),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        say("    " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    say(f"    execution {report['status']}: {report['failed']} failed, {report['tolerated']} tolerated")
    return report


def _applied(outcome: dict[str, Any]) -> str:
    applied = [entry for run in outcome.get("runs", []) for entry in run.get("applied", [])]
    if not applied:
        return "-"
    files = sum(len(entry["versions"]) for entry in applied)
    return f"{files} file(s) on {len(applied)} database(s)"


def _error(error: dict[str, Any] | None) -> str:
    """``database file:line: what the server said``, without the hint."""
    if not error:
        return ""
    message = str(error.get("message", "")).split(" Fix: ", 1)[0]
    where = f"{error.get('file', '')}:{error['line']}" if error.get("line") else str(error.get("file", ""))
    if where and where in message:
        message = message.split(where, 1)[1].lstrip(": ")
    return f"{error.get('database', '?')} {where}: {message[:70]}"


def _as_expected(first: dict[str, Any] | None, second: dict[str, Any] | None, third: dict[str, Any] | None) -> bool:
    """Step 1 and the rerun clean; step 2 succeeded with exactly the one target tolerated."""
    clean = [report is not None and report["failed"] == 0 for report in (first, third)]
    return all(clean) and second is not None and second["failed"] == 1


@contextmanager
def _connection(server: EmbeddedPostgres, database: str) -> Iterator[Any]:
    conn = psycopg2.connect(server.dsn(database))
    conn.autocommit = True
    try:
        yield conn
    finally:
        conn.close()


def _execute(server: EmbeddedPostgres, sql: str, *, database: str = "postgres") -> None:
    with _connection(server, database) as conn, conn.cursor() as cur:
        cur.execute(sql)
