"""The remote plan: ask the deployed function what it would apply, before uploading.

``dbmigrate plan --function NAME`` sends the local folder's manifest (names and
sha256) to the function's ``plan`` action. The function compares it with each
database's history, inside the VPC, and answers with the pending versions and any
drift; how each pending file would run is read here, from the same files. This is
the CLI side: one synchronous Lambda invoke.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from .apply import how_it_runs
from .errors import ConfigError, MigrationError
from .manifest import manifest_of
from .sources import MigrationSource

__all__ = ["RemotePlanError", "lambda_invoker", "remote_plan"]

Invoker = Callable[[dict[str, Any]], dict[str, Any]]


class RemotePlanError(MigrationError):
    """The function could not be invoked, or it raised."""


def remote_plan(source: MigrationSource, invoke: Invoker, databases: Sequence[str] | None = None) -> dict[str, Any]:
    """The function's plan for this source's files; ``invoke`` sends one payload and returns the result."""
    payload: dict[str, Any] = {"action": "plan", "manifest": manifest_of(source, databases)}
    if databases:
        payload["databases"] = list(databases)
    result = invoke(payload)
    _read_pending_here(result, source)
    return result


def _read_pending_here(result: dict[str, Any], source: MigrationSource) -> None:
    """The function saw checksums only: how each pending file would run is read from the files here."""
    refs = {ref.key: ref for ref in source.list()}
    for database in result.get("databases", []):
        for entry in database.get("pending_files", []):
            ref = refs.get(str(entry.get("file"))) if isinstance(entry, dict) else None
            if ref is None or entry.get("mode") is not None or "error" in entry:
                continue
            entry.update(how_it_runs(source.read(ref.key), ref))
            if "error" in entry:
                result.setdefault("problems", []).append(entry["error"])


def lambda_invoker(function_name: str, client: Any = None) -> Invoker:
    """An invoker that calls a deployed function synchronously (boto3, default credentials)."""
    if client is None:
        import boto3  # noqa: PLC0415 (only the remote plan needs AWS)

        client = boto3.client("lambda")

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
