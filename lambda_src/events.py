"""Typed wrappers over the events the migration Lambda receives: each becomes one request (run, down or skip).

- a direct payload ``{"action": "migrate" | "plan" | "status", "databases": [...]}``,
  ``{"action": "fleet"}`` (a stack with a fleet: every target, see fleet_run.py),
  ``{"action": "fleet-status" | "fleet-plan"}`` (every target looked at, see fleet_status.py), or
  ``{"action": "down", "database": ..., "to": VERSION}`` (only ever invoked directly:
  never from the deploy-time invocation nor from an S3 event),
  also as sent by ``aws_lambda_invocation`` in CRUD lifecycle mode with its ``tf``
  envelope (``create``/``update`` run the payload's action, ``delete`` does nothing);
- S3 event notifications, direct or wrapped in SNS: every record of the event makes one
  ``migrate`` run over the affected databases (plus the root database, which may create
  them); ``s3:TestEvent`` and objects that are not migration files are skipped with a log
  line; a record for another bucket is refused. Records whose ``userIdentity.principalId``
  is the deploying principal (``deploy_principal``) are skipped too: the deploy's own
  ``aws_s3_object`` uploads are applied by its deploy-time invocation, and a second,
  asynchronous run of them would race it (see the README, "A deploy never races its uploads").

Nothing here does I/O; raw events are never logged (they may be large), only names.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast
from urllib.parse import unquote_plus

from dbmigrate.errors import ConfigError, LayoutError
from dbmigrate.manifest import parse_manifest
from dbmigrate.model import DATABASE_NAME, ROOT_DATABASE, Entry, parse_layout, validate_database_name
from fleet_run import FleetRequest
from fleet_status import LOOKS, FleetLook, parse_look
from fleet_target import TargetRequest, parse_target

__all__ = ["DEPLOYED_SKIP", "DownRequest", "Request", "RunRequest", "Skip", "is_deploy_principal", "parse_event"]

log = logging.getLogger(__name__)

Action = Literal["migrate", "plan", "status"]
ACTIONS: tuple[Action, ...] = ("migrate", "plan", "status")
PAYLOAD_FIELDS = frozenset(
    {"action", "databases", "tf", "content_hash", "database", "to", "manifest", "target", "execution", "folders"}
)
FLEET_FIELDS = frozenset({"action", "tf", "execution"})
DOWN_EXAMPLE = '{"action": "down", "database": "projectdb", "to": 202401010100}'
TF_ACTIONS = ("create", "update", "delete")
PAYLOAD_EXAMPLE = '{"action": "migrate", "databases": ["projectdb"]}'
DEPLOYED_SKIP = "uploaded by the deploying principal: the deploy-time invocation applies it"


@dataclass(frozen=True)
class RunRequest:
    """A ``migrate``, ``plan`` or ``status`` over ``databases`` (None: every database of the source).

    ``trigger`` names the event shape, for logs. ``manifest`` (plan only: file -> sha256,
    validated) is what to plan against instead of the bucket.
    """

    action: Action
    databases: tuple[str, ...] | None = None
    trigger: str = "invoke"
    manifest: Mapping[str, str] | None = field(default=None, repr=False)
    ignored_keys: tuple[str, ...] = field(default=())
    folders: tuple[str, ...] | None = None
    """An upload's: the layout's folders it changed (None: a run of everything)."""

    def log_fields(self) -> dict[str, Any]:
        """The request as log fields (names only, never the raw event)."""
        fields: dict[str, Any] = {"action": self.action, "trigger": self.trigger}
        fields["databases"] = list(self.databases) if self.databases is not None else "all"
        if self.ignored_keys:
            fields["ignored_keys"] = list(self.ignored_keys)
        return fields


@dataclass(frozen=True)
class DownRequest:
    """A ``down`` of one database to ``to``: only ever invoked directly, by a person."""

    database: str
    to: int
    trigger: str = "invoke"

    def log_fields(self) -> dict[str, Any]:
        """The request as log fields."""
        return {"action": "down", "trigger": self.trigger, "databases": [self.database], "to": self.to}


@dataclass(frozen=True)
class Skip:
    """An event with nothing to do, and why (``reason``)."""

    reason: str
    trigger: str
    ignored_keys: tuple[str, ...] = field(default=())

    def log_fields(self) -> dict[str, Any]:
        """The event as log fields."""
        fields: dict[str, Any] = {"action": None, "trigger": self.trigger, "skipped": self.reason}
        if self.ignored_keys:
            fields["ignored_keys"] = list(self.ignored_keys)
        return fields

    def result(self) -> dict[str, Any]:
        """The JSON result of an invocation that did nothing."""
        return {"action": None, "trigger": self.trigger, "skipped": self.reason, "databases": []}


Request = RunRequest | DownRequest | TargetRequest | FleetRequest | FleetLook | Skip


def parse_event(
    event: object,
    *,
    bucket: str,
    prefix: str = "",
    root_database: str = ROOT_DATABASE,
    deploy_principal: str | None = None,
) -> Request:
    """Turn a raw Lambda event into one request; raise ConfigError for anything unexpected.

    ``bucket`` and ``prefix`` (normalized: empty or ending in ``/``) are where this
    function's migrations live: S3 records for another bucket are refused, keys outside
    the prefix are skipped. ``deploy_principal`` (see ``is_deploy_principal``) names who
    deploys: its uploads are left to the deploy.
    """
    if not isinstance(event, Mapping):
        raise ConfigError(
            f"the event must be a JSON object, not {type(event).__name__}",
            hint=f"invoke with a payload like {PAYLOAD_EXAMPLE}",
        )
    if "Records" in event:
        return _from_records(event["Records"], _Where(bucket, prefix, root_database, deploy_principal))
    if event.get("Event") == "s3:TestEvent":
        return Skip("s3:TestEvent", trigger="s3")
    return _from_payload(event)


# -- direct payloads and the aws_lambda_invocation envelope -------------------------------


def _from_payload(payload: Mapping[str, Any]) -> Request:
    unknown = sorted(str(name) for name in payload if name not in PAYLOAD_FIELDS)
    if unknown:
        raise ConfigError(
            f"unknown field(s) in the payload: {', '.join(unknown)}",
            hint=f"use only {', '.join(sorted(PAYLOAD_FIELDS))}, e.g. {PAYLOAD_EXAMPLE}",
        )
    if "target" in payload:  # one target of a fleet, from its state machine
        return parse_target(payload)
    if "folders" in payload:
        raise ConfigError(
            '"folders" belongs to a fleet target\'s payload, with "target"', hint=f"e.g. {PAYLOAD_EXAMPLE}"
        )
    trigger = "invoke"
    if "tf" in payload:
        tf_action = _terraform_action(payload["tf"])
        trigger = f"terraform:{tf_action}"
        if tf_action == "delete":
            return Skip("terraform destroy: migrations are never undone", trigger=trigger)
    elif "action" not in payload:
        raise ConfigError("the payload has no action", hint=f"invoke with a payload like {PAYLOAD_EXAMPLE}")
    action = payload.get("action", "migrate")
    if action in FLEET_ACTIONS:  # the whole fleet: a run, or a look at every target
        return FLEET_ACTIONS[action](payload, trigger)
    if action not in (*ACTIONS, "down"):
        raise ConfigError(
            f"unknown action {action!r}",
            hint=f"use one of {', '.join((*ACTIONS, 'down', 'fleet', *LOOKS))}; the command line has the others "
            "(baseline, repair)",
        )
    if "execution" in payload:
        raise ConfigError('"execution" belongs to the fleet action', hint='e.g. {"action": "fleet"}')
    if "content_hash" in payload and not isinstance(payload["content_hash"], str):
        raise ConfigError("content_hash must be a string")
    if action == "down" or "database" in payload or "to" in payload:
        return _down(payload, trigger)
    databases = _database_list(payload["databases"]) if "databases" in payload else None
    if "manifest" in payload and action != "plan":
        raise ConfigError(
            "a manifest goes with the plan action, as a list of {file, sha256}",
            hint="this is what `dbmigrate plan --function NAME` sends",
        )
    manifest = parse_manifest(payload["manifest"]) if payload.get("manifest") is not None else None
    return RunRequest(cast(Action, action), databases, trigger=trigger, manifest=manifest)


def _fleet(payload: Mapping[str, Any], trigger: str) -> FleetRequest:
    """A run of the whole fleet, as the deploy-time invocation of a stack with a fleet asks."""
    unknown = sorted(set(payload) - FLEET_FIELDS)
    if unknown:
        raise ConfigError(
            f"the fleet action takes only {', '.join(sorted(FLEET_FIELDS))}, not {', '.join(unknown)}",
            hint='e.g. {"action": "fleet"}: every target of the fleet, in its stages',
        )
    execution = payload.get("execution")
    if execution is not None and not isinstance(execution, str):
        raise ConfigError("execution must be a string: the name of the fleet's execution")
    return FleetRequest(trigger, execution)


FLEET_ACTIONS: dict[str, Callable[[Mapping[str, Any], str], Request]] = {
    "fleet": _fleet,
    **dict.fromkeys(LOOKS, parse_look),
}


def _down(payload: Mapping[str, Any], trigger: str) -> DownRequest:
    """A down is asked for by a person, by name: never by a deploy or an upload."""
    if payload.get("action") != "down":
        raise ConfigError('"database" and "to" belong to the down action', hint=f"e.g. {DOWN_EXAMPLE}")
    if trigger != "invoke":
        raise ConfigError(
            "down is never run by the deploy-time invocation",
            hint=f"invoke the function directly with {DOWN_EXAMPLE}",
        )
    database, to = payload.get("database"), payload.get("to")
    if not isinstance(database, str) or "databases" in payload:
        raise ConfigError('down takes one database name in "database"', hint=f"e.g. {DOWN_EXAMPLE}")
    if isinstance(to, bool) or not isinstance(to, int) or to < 0:
        raise ConfigError('down takes the version to end at in "to" (a whole number)', hint=f"e.g. {DOWN_EXAMPLE}")
    return DownRequest(validate_database_name(database), to, trigger=trigger)


def _terraform_action(envelope: object) -> str:
    action = envelope.get("action") if isinstance(envelope, Mapping) else None
    if action not in TF_ACTIONS:
        raise ConfigError(
            f"the tf envelope has action {action!r}, expected one of {', '.join(TF_ACTIONS)}",
            hint='set lifecycle_scope = "CRUD" on the aws_lambda_invocation, or drop the tf field',
        )
    return str(action)


def _database_list(value: object) -> tuple[str, ...] | None:
    """The payload's databases, validated; None (JSON null) for every database."""
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(name, str) for name in value):
        raise ConfigError(
            "databases must be a non-empty list of database names",
            hint='e.g. "databases": ["projectdb"]; leave it out to run every database',
        )
    return tuple(dict.fromkeys(validate_database_name(name) for name in value))


# -- S3 event notifications, direct or in SNS ---------------------------------------------


@dataclass(frozen=True)
class _Where:
    """Where this function's migrations live, and who deploys them."""

    bucket: str
    prefix: str
    root_database: str
    deploy_principal: str | None


def is_deploy_principal(principal_id: str | None, deploy_principal: str | None) -> bool:
    """Whether an S3 record's ``userIdentity.principalId`` is the deploying principal.

    S3 writes ``AWS:`` and the caller's unique id: ``AIDA...`` for an IAM user,
    ``AROA...:<session name>`` for an assumed role, which is what STS GetCallerIdentity
    (``data.aws_caller_identity.user_id``) returns. ``deploy_principal`` is that id with
    or without the ``AWS:``; a role id alone (``AROA...``, no session) matches every
    session of the role. No principal on either side never matches.
    """
    if not principal_id or not deploy_principal:
        return False
    found = principal_id.removeprefix("AWS:")
    wanted = deploy_principal.removeprefix("AWS:")
    return found == wanted or (":" not in wanted and found.startswith(f"{wanted}:"))


def _from_records(records: object, where: _Where) -> Request:
    s3_records, trigger = _s3_records(records)
    if not s3_records:
        return Skip("s3:TestEvent", trigger=trigger)
    databases: dict[str, None] = {}
    run_all = False
    ignored: list[str] = []
    deployed: list[str] = []
    for record in s3_records:
        key, relative = _new_object(record, where)
        if relative is None:
            ignored.append(key)
        elif is_deploy_principal(_principal(record), where.deploy_principal):
            deployed.append(key)
            log.info("skipping an object the deploy uploaded: its deploy-time run applies it", extra={"key": key})
        elif (database := _database_of(relative)) is None:
            run_all = True
        else:
            databases[database] = None
    ignored += deployed
    if run_all:
        return RunRequest("migrate", None, trigger=trigger, ignored_keys=tuple(ignored))
    if not databases:
        reason = DEPLOYED_SKIP if deployed else "no migration file in the event"
        return Skip(reason, trigger=trigger, ignored_keys=tuple(ignored))
    names = (where.root_database, *(name for name in databases if name != where.root_database))
    return RunRequest("migrate", names, trigger=trigger, ignored_keys=tuple(ignored), folders=tuple(databases))


def _s3_records(records: object) -> tuple[list[Mapping[str, Any]], str]:
    """The S3 records of an event, direct or unwrapped from SNS, and the trigger (``s3``/``sns``)."""
    if not isinstance(records, list) or not records:
        raise ConfigError("the event's Records must be a non-empty list")
    s3_records: list[Mapping[str, Any]] = []
    trigger = "s3"
    for record in records:
        if not isinstance(record, Mapping):
            raise ConfigError("every item of the event's Records must be an object")
        source = record.get("EventSource") or record.get("eventSource")
        if source == "aws:sns":
            trigger = "sns"
            s3_records += _records_in_sns_message(record)
        elif source == "aws:s3":
            s3_records.append(record)
        else:
            raise ConfigError(
                f"unsupported event source {source!r}",
                hint="subscribe the function to the bucket's SNS topic or to the bucket's notifications",
            )
    return s3_records, trigger


def _new_object(record: Mapping[str, Any], where: _Where) -> tuple[str, str | None]:
    """The record's key, and its key below the prefix when it is a new migration file (else None)."""
    name, key, event_name = _s3_object(record)
    if name != where.bucket:
        raise ConfigError(
            f"the event is for bucket {name!r}, but this function migrates from bucket {where.bucket!r}",
            hint="point the bucket notification (or the SNS subscription) at the function of that bucket",
        )
    relative = key[len(where.prefix) :]
    if (
        event_name.startswith("ObjectCreated:")
        and key.startswith(where.prefix)
        and relative
        and _is_migration(relative)
    ):
        return key, relative
    log.info("skipping an object that is not a new migration file", extra={"key": key, "s3_event": event_name})
    return key, None


def _records_in_sns_message(record: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    sns = record.get("Sns")
    message = sns.get("Message") if isinstance(sns, Mapping) else None
    if not isinstance(message, str):
        raise ConfigError("an SNS record has no Sns.Message string")
    try:
        body = json.loads(message)
    except ValueError as exc:
        raise ConfigError(
            "an SNS message is not JSON; expected an S3 event notification",
            hint="publish only S3 event notifications to the migrations topic",
        ) from exc
    if isinstance(body, Mapping) and body.get("Event") == "s3:TestEvent":
        return []
    records = body.get("Records") if isinstance(body, Mapping) else None
    if not isinstance(records, list) or not all(
        isinstance(item, Mapping) and item.get("eventSource") == "aws:s3" for item in records
    ):
        raise ConfigError(
            "an SNS message does not hold an S3 event notification",
            hint="publish only S3 event notifications to the migrations topic",
        )
    return cast(list[Mapping[str, Any]], records)


def _principal(record: Mapping[str, Any]) -> str | None:
    """``userIdentity.principalId`` of an S3 record, if it carries one."""
    identity = record.get("userIdentity")
    principal = identity.get("principalId") if isinstance(identity, Mapping) else None
    return principal if isinstance(principal, str) else None


def _s3_object(record: Mapping[str, Any]) -> tuple[str, str, str]:
    """``(bucket, key, eventName)`` of one S3 record, the key URL-decoded."""
    s3 = record.get("s3")
    bucket = s3.get("bucket") if isinstance(s3, Mapping) else None
    obj = s3.get("object") if isinstance(s3, Mapping) else None
    name = bucket.get("name") if isinstance(bucket, Mapping) else None
    key = obj.get("key") if isinstance(obj, Mapping) else None
    event_name = record.get("eventName")
    if not isinstance(name, str) or not isinstance(key, str) or not isinstance(event_name, str):
        raise ConfigError("an S3 record lacks s3.bucket.name, s3.object.key or eventName")
    return name, unquote_plus(key), event_name


def _is_migration(relative: str) -> bool:
    """Whether a key below the prefix is a migration file. What the layout ignores (not ``.sql``,
    hidden) is not; a misnamed ``.sql`` file is: the run that follows refuses it by name, so the
    mistake shows now, not at the next deploy."""
    try:
        return bool(parse_layout([Entry(relative)], origin="the event"))
    except LayoutError:
        return True


def _database_of(relative: str) -> str | None:
    """The one database folder a migration key names, or None when it names none (a misnamed path)."""
    folder, _, name = relative.partition("/")
    return folder if name and "/" not in name and DATABASE_NAME.match(folder) else None
