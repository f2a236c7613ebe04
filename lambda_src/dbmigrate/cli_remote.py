"""The remote plan and the fleet: ask the deployed function, which reaches the databases.

``dbmigrate plan --function NAME`` sends the local folder's manifest (names and
sha256) to the function's ``plan`` action. The function compares it with each
database's history, inside the VPC, and answers with the pending versions and any
drift; how each pending file would run is read here, from the same files.
``dbmigrate fleet status|plan --function NAME`` asks the same of every target of the
fleet (``fleet_status.py`` in the function); plan sends the manifest too. This is the
CLI side: one synchronous Lambda invoke.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from .apply import how_it_runs
from .errors import ConfigError, MigrationError
from .manifest import manifest_of
from .report import target_problem
from .sources import MigrationSource

__all__ = ["RemotePlanError", "lambda_invoker", "remote_fleet", "remote_plan"]

INVOKE_READ_TIMEOUT_S = 905
"""Longer than any invocation (15 minutes): botocore's 60 s would retry a long one, which runs it twice."""

Invoker = Callable[[dict[str, Any]], dict[str, Any]]


class RemotePlanError(MigrationError):
    """The function could not be invoked, or it raised."""


def remote_plan(source: MigrationSource, invoke: Invoker, databases: Sequence[str] | None = None) -> dict[str, Any]:
    """The function's plan for this source's files; ``invoke`` sends one payload and returns the result."""
    payload: dict[str, Any] = {"action": "plan", "manifest": manifest_of(source, databases)}
    if databases:
        payload["databases"] = list(databases)
    result = invoke(payload)
    result.setdefault("problems", []).extend(_read_pending_here(result.get("databases", []), source))
    return result


def remote_fleet(view: str, invoke: Invoker, source: MigrationSource | None = None) -> dict[str, Any]:
    """The function's status (``view`` "status") or plan of every fleet target; a plan is of ``source``'s files."""
    payload: dict[str, Any] = {"action": f"fleet-{view}"}
    if source is not None:
        payload["manifest"] = manifest_of(source, None)
    result = invoke(payload)
    if source is None:
        return result
    for target in result.get("targets", []):
        found = _read_pending_here(target.get("databases", []), source)
        target.setdefault("problems", []).extend(found)
        result.setdefault("problems", []).extend(target_problem(str(target.get("target")), p) for p in found)
    return result


def _read_pending_here(databases: list[dict[str, Any]], source: MigrationSource) -> list[dict[str, Any]]:
    """The function saw checksums only: how each pending file would run is read from the files here
    (once per file, however many databases get it); the files that would fail, as problems."""
    refs = {ref.key: ref for ref in source.list()}
    read: dict[str, dict[str, Any]] = {}
    problems: list[dict[str, Any]] = []
    for database in databases:
        for entry in database.get("pending_files", []):
            ref = refs.get(str(entry.get("file"))) if isinstance(entry, dict) else None
            if ref is None or entry.get("mode") is not None or "error" in entry:
                continue
            if ref.key not in read:
                read[ref.key] = how_it_runs(source.read(ref.key), ref)
            entry.update(read[ref.key])
            if "error" in entry:
                problems.append(entry["error"])
    return problems


def lambda_invoker(function_name: str, client: Any = None) -> Invoker:
    """An invoker that calls a deployed function synchronously (boto3, default credentials)."""
    if client is None:
        import boto3  # noqa: PLC0415 (only the remote plan and the fleet need AWS)
        from botocore.config import Config  # noqa: PLC0415

        once = Config(read_timeout=INVOKE_READ_TIMEOUT_S, retries={"total_max_attempts": 1})
        client = boto3.client("lambda", config=once)

    def invoke(payload: dict[str, Any]) -> dict[str, Any]:
        try:
            response = client.invoke(FunctionName=function_name, Payload=json.dumps(payload).encode())
        except Exception as exc:  # botocore's errors: no credentials, no such function, denied
            raise RemotePlanError(
                f"cannot invoke {function_name}: {exc}",
                hint="check the function name (the stack's function_name output), the region and your credentials",
            ) from exc
        return read_response(function_name, response)

    return invoke


def read_response(function_name: str, response: dict[str, Any]) -> dict[str, Any]:
    """The result of a Lambda Invoke response, or RemotePlanError with the function's error."""
    body = response["Payload"].read()
    try:
        result = json.loads(body)
    except ValueError as exc:
        raise RemotePlanError(f"{function_name} answered with something that is not JSON") from exc
    if response.get("FunctionError"):
        kind = result.get("errorType", "Error") if isinstance(result, dict) else "Error"
        message = result.get("errorMessage", body.decode()) if isinstance(result, dict) else body.decode()
        error = ConfigError if kind == "ConfigError" else RemotePlanError
        raise error(f"{function_name} failed: {kind}: {message}")
    if not isinstance(result, dict):
        raise RemotePlanError(f"{function_name} answered with {type(result).__name__}, not a plan")
    return result
