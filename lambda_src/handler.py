"""The migration Lambda: parse the event, build the engine from the environment, run, return or raise.

A failure raises (so the invocation, and the ``terraform apply`` that made it, fail);
success returns the run's JSON result. See ``environment.py`` for the variables.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import aws_clients
from dbmigrate.config import Settings
from dbmigrate.db import connect
from dbmigrate.dburl import Masker
from dbmigrate.errors import ConfigError, DatabaseConnectError, DeadlineError, MigrationError
from dbmigrate.manifest import ManifestSource
from dbmigrate.runner import Runner, RunReport
from dbmigrate.s3source import S3Source
from dbmigrate.sources import ListedOnce, MigrationSource
from dbmigrate.tenants import TenantGroup, TenantSource, tenants_of
from environment import FunctionEnv, build_settings, explain_tls_failure, spell
from events import DownRequest, RunRequest, Skip, parse_event
from fleet_run import Fleet, FleetRequest, upload_execution_name
from fleet_status import FleetLook, StagedTarget, fleet_document, target_document, targets_of
from fleet_target import TargetRequest
from jsonlog import configure_logging
from settled import SettledSource

log = logging.getLogger(__name__)

UPLOADS = ("s3", "sns")
LOOKS_AT_ONCE = 8


def handler(event: Any, context: Any) -> dict[str, Any]:
    """Entry point of the function (``handler.handler``)."""
    masker = Masker()  # learns the passwords as they are read: logs and errors never show them
    env: FunctionEnv | None = None
    try:
        env = FunctionEnv.from_environ(os.environ)
        masker.add_url(env.database_url)
        configure_logging(env.log_level, masker)
        request = parse_event(
            event,
            bucket=env.bucket,
            prefix=env.prefix,
            root_database=env.root_database,
            deploy_principal=env.deploy_principal,
        )
        log.info("run requested", extra=request.log_fields())
        if isinstance(request, Skip):
            return request.result()
        if isinstance(request, TargetRequest):
            return _run_target(request, env, context, masker)
        if isinstance(request, FleetRequest):
            return _run_fleet(request, env, context)
        if isinstance(request, FleetLook):
            return _look_at_fleet(request, env, context, masker)
        if isinstance(request, RunRequest) and request.trigger in UPLOADS and env.fleet_state_machine_arn:
            return _start_fleet_for_upload(request, env, context)
        if isinstance(request, DownRequest) and not env.allow_down:
            raise ConfigError(
                "down through the function is disabled (ALLOW_DOWN is not true)",
                hint="set allow_down = true in the stack (DBMIGRATE_ALLOW_DOWN=true) to let invocations revert "
                "migrations, or run `dbmigrate down` from a machine that can reach the database",
            )
        settings = _settings(env, context, masker)
        runner = Runner(
            _source(request, env, context),
            settings,
            on_event=lambda progress: log.info(progress.get("event", "progress"), extra={"progress": progress}),
            time_left=_time_left(context),
        )
        report = _run(runner, request)
    except MigrationError as exc:
        clearer = explain_tls_failure(exc, env) if isinstance(exc, DatabaseConnectError) and env else None
        failure = (clearer or exc).name_settings(spell)
        log.error("run failed: %s", failure, extra={"error": failure.to_dict()})
        raise masker.error(failure) from None
    except Exception as exc:
        log.exception("run failed unexpectedly")
        raise masker.error(exc) from None
    result: dict[str, Any] = report.to_dict()
    log.info("run finished", extra={"result": result})
    return result


def _settings(env: FunctionEnv, context: Any, masker: Masker) -> Settings:
    """The engine's settings from ``env`` (its secret read now), recorded as this function's; the masker
    learns the password."""
    function = getattr(context, "function_name", None)
    settings = build_settings(env, applied_by=f"lambda:{function}" if function else "lambda")
    masker.add(*settings.masker().secrets)
    return settings


def _run_target(request: TargetRequest, env: FunctionEnv, context: Any, masker: Masker) -> dict[str, Any]:
    """One fleet target: its answer, a migration error in it rather than raised (see fleet_target)."""
    unconcerned = request.unconcerned(env.root_database)
    if unconcerned is not None:
        log.info("target %s skipped: %s", request.name, unconcerned)
        return request.skipped(unconcerned)
    applied: dict[str, list[int]] = {}

    def on_event(progress: dict[str, Any]) -> None:
        log.info(progress.get("event", "progress"), extra={"progress": progress, "target": request.name})
        if progress.get("event") == "file_done":
            applied.setdefault(progress["database"], []).append(progress["version"])

    failures: list[MigrationError] = []
    try:
        settings = _settings(request.environment(env), context, masker)
        source = S3Source(env.bucket, env.prefix, aws_clients.aws_client("s3"))

        def run(files: MigrationSource, databases: Sequence[str] | None, *, locked_on: str | None = None) -> None:
            """``locked_on``: the database whose lock the run takes (default: the root database's)."""
            taken = replace(settings, root_database=locked_on) if locked_on else settings
            Runner(files, taken, on_event=on_event, time_left=_time_left(context)).migrate(databases)

        if request.tenant_group is None:
            run(source, request.databases)
        else:
            failures = _run_tenants(run, source, settings, request.tenant_group)
    except MigrationError as exc:
        failures = [exc]
    errors = [masker.error(failure.name_settings(spell)) for failure in failures]
    for error in errors:
        stopped = isinstance(error, DeadlineError)  # to be continued by the next invocation
        log.log(
            logging.INFO if stopped else logging.ERROR,
            "target %s %s: %s",
            request.name,
            "stopped" if stopped else "failed",
            error,
            extra={"error": error.to_dict()},
        )
    answer = request.answer(applied, errors)
    log.info("target finished", extra={"result": answer})
    return answer


def _run_tenants(
    run: Callable[..., None],
    source: MigrationSource,
    settings: Settings,
    group: TenantGroup,
) -> list[MigrationError]:
    """The root database, then each tenant database found now, each on its own: the failures, in order.

    Each tenant's run takes the lock in that tenant's database (advisory locks are per
    database), so targets on one server migrate their tenants at once, and a tenant is
    never migrated by two runs at a time.
    """
    root = settings.root_database
    source = ListedOnce(source)  # the root's run and the tenants' see one listing
    run(source, [root])  # it may create tenants
    conn = connect(settings, root)
    try:
        tenants = tenants_of(conn, group)
    finally:
        conn.close()
    log.info("tenant group %s: %d database(s)", group.folder, len(tenants), extra={"tenants": tenants})
    failures: list[MigrationError] = []
    group_source = TenantSource(source, group, tenants, root_database=root)
    for tenant in tenants:
        try:
            run(group_source, [tenant], locked_on=tenant)
        except DeadlineError:
            raise
        except MigrationError as exc:
            failures.append(exc)
    return failures


def _fleet(env: FunctionEnv, context: Any) -> Fleet:
    if env.fleet_state_machine_arn is None:
        raise ConfigError(
            "this function has no fleet: FLEET_STATE_MACHINE_ARN is not set",
            hint='give the stack a fleet (README: "Fleets"), or invoke with {"action": "migrate"} for its own server',
        )
    return Fleet(aws_clients.aws_client("stepfunctions"), env.fleet_state_machine_arn, time_left=_time_left(context))


def _run_fleet(request: FleetRequest, env: FunctionEnv, context: Any) -> dict[str, Any]:
    """The deploy-time run of a fleet: its execution, waited for; its report (FleetError when it failed)."""
    fleet = _fleet(env, context)
    name = request.execution or f"deploy-{getattr(context, 'aws_request_id', None) or uuid.uuid4()}"
    result = fleet.run(request, name)
    log.info("fleet finished", extra={"result": result})
    return result


def _look_at_fleet(request: FleetLook, env: FunctionEnv, context: Any, masker: Masker) -> dict[str, Any]:
    """``dbmigrate fleet status|plan``: every target of the state machine looked at, LOOKS_AT_ONCE at a time
    (each with its own connections), answered in the definition's order."""
    fleet = _fleet(env, context)
    staged = targets_of(fleet.definition(), fleet.arn)
    if request.manifest is not None:
        source: MigrationSource = ManifestSource(request.manifest, origin="the caller's manifest")
    else:
        source = S3Source(env.bucket, env.prefix, aws_clients.aws_client("s3"))

    def settings_for(target: TargetRequest) -> Settings:
        return _settings(target.environment(env), context, masker)

    left = _time_left(context)

    def look(item: StagedTarget) -> dict[str, Any]:
        reports: list[dict[str, Any]] = []
        failures: list[MigrationError]
        if left is not None and left() < env.min_time_left_s:
            failures = [DeadlineError(f"{item.target.name} was not looked at: the time ran short")]
        else:
            reports, failures = _look_at_target(item, request.view, source, settings_for)
        errors = [masker.error(failure.name_settings(spell)) for failure in failures]
        return target_document(item, request.view, reports, errors)

    # Targets at once: a server that does not answer holds one for its connect timeout, not the whole look.
    with ThreadPoolExecutor(max_workers=LOOKS_AT_ONCE, thread_name_prefix="fleet-look") as pool:
        documents = list(pool.map(look, staged))
    result = fleet_document(request.view, fleet.arn, documents)
    log.info("fleet looked at", extra={"targets": len(documents), "problems": len(result["problems"])})
    return result


def _look_at_target(
    item: StagedTarget, view: str, source: MigrationSource, settings_for: Callable[[TargetRequest], Settings]
) -> tuple[list[dict[str, Any]], list[MigrationError]]:
    """One target's status or plan documents (one per run: its databases, or its root and then each
    tenant), and the errors that stopped them."""
    reports: list[dict[str, Any]] = []

    def run(files: MigrationSource, databases: Sequence[str] | None, *, locked_on: str | None = None) -> None:
        runner = Runner(files, settings)  # no lock: a look changes nothing
        reports.append((runner.status if view == "status" else runner.plan)(databases).to_dict())

    failures: list[MigrationError] = []
    try:
        settings = settings_for(item.target)
        if item.target.tenant_group is None:
            run(source, item.target.databases)
        else:
            failures = _run_tenants(run, source, settings, item.target.tenant_group)
    except MigrationError as exc:
        failures.append(exc)
    return reports, failures


def _start_fleet_for_upload(request: RunRequest, env: FunctionEnv, context: Any) -> dict[str, Any]:
    """An upload to a fleet's bucket: once the bucket settles, one execution over the folders it changed."""
    fleet = _fleet(env, context)
    settled = _source(request, env, context).list()  # raises while uploads are still under way (Lambda retries)
    folders = request.folders
    started = FleetRequest(request.trigger, upload_execution_name(settled, folders), folders, wait=False)
    result = fleet.run(started, str(started.execution))
    log.info("fleet started for an upload", extra={"result": result})
    return result


def _run(runner: Runner, request: RunRequest | DownRequest) -> RunReport:
    """The Runner method the request names."""
    if isinstance(request, DownRequest):
        return runner.down(request.database, request.to)
    match request.action:
        case "migrate":
            return runner.migrate(request.databases)
        case "plan":
            return runner.plan(request.databases)
        case "status":
            return runner.status(request.databases)


def _source(request: RunRequest | DownRequest, env: FunctionEnv, context: Any) -> MigrationSource:
    """The bucket; the caller's manifest for a remote plan; for an upload event, the bucket once it settles."""
    if isinstance(request, RunRequest) and request.manifest is not None:
        return ManifestSource(request.manifest, origin="the caller's manifest")
    source = S3Source(env.bucket, env.prefix, aws_clients.aws_client("s3"))
    if request.trigger not in UPLOADS:
        return source
    left = _time_left(context)  # an upload event: the rest of its batch may still be arriving
    budget = (left() if left else 900.0) - env.min_time_left_s
    return SettledSource(source, settle_s=env.upload_settle_s, max_wait_s=max(0.0, budget / 2))


def _time_left(context: Any) -> Callable[[], float] | None:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    return (lambda: remaining() / 1000) if callable(remaining) else None
