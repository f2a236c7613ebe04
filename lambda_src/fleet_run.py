"""The fleet from the function: a deploy starts the fleet's state machine and waits; an upload starts it.

With ``FLEET_STATE_MACHINE_ARN`` set (the stack sets it when it has a fleet, ``infra/fleet.py``):

- the deploy-time invocation sends ``{"action": "fleet"}`` (``"execution"``: its name, fixed
  by the content in the ``on-change`` run mode). The function waits for executions of the
  state machine already running (an upload's, an earlier apply's) to end, starts its own,
  waits for it and answers the fleet report; a failed execution raises ``FleetError``
  naming the failed targets and their errors, so the apply fails with them. An execution
  that outlives the invocation goes on by itself; the error says so, and the next apply
  waits for it.
- an upload event, once the bucket has settled, starts one execution over the folders it
  changed (``{"folders": [...]}``: a target none of them concerns is skipped) and answers
  without waiting; a failed execution is the state machine's alarm.

Starting is idempotent: the execution's name is fixed by what it runs (the deploy's, or the
settled listing and the folders for an upload), and Step Functions starts a name once. Two
upload events of one batch thus start one execution, and Lambda's retry of an event starts
none.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from dbmigrate.errors import ConfigError, FleetError
from dbmigrate.model import MigrationRef

__all__ = ["EXECUTION_NAME", "Fleet", "FleetRequest", "upload_execution_name"]

log = logging.getLogger(__name__)

EXECUTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
FIRST_POLL_S = 0.25
POLL_S = 2.0
"""DescribeExecution's interval: from FIRST_POLL_S, doubling up to POLL_S (a short fleet answers soon)."""
ANSWER_MARGIN_S = 10.0
"""Of the invocation's time, kept to answer (and to raise an error that says what goes on)."""
SHOWN_FAILURES = 10
FIX_ACCESS = (
    "the function's role needs states:StartExecution, states:ListExecutions and states:DescribeStateMachine "
    "on the state machine and "
    "states:DescribeExecution on its executions, and its subnets a route to Step Functions (the stack's "
    "interface endpoint for states)"
)


@dataclass(frozen=True)
class FleetRequest:
    """A run of the whole fleet: ``folders`` the layout's folders that changed (None: all), ``wait`` for its end."""

    trigger: str
    execution: str | None = None
    folders: tuple[str, ...] | None = None
    wait: bool = True

    def __post_init__(self) -> None:
        if self.execution is not None and not EXECUTION_NAME.fullmatch(self.execution):
            raise ConfigError(
                f"execution name {self.execution!r} is not valid",
                hint="1-80 letters, digits, - and _ (Step Functions' rule for an execution's name)",
            )

    def log_fields(self) -> dict[str, Any]:
        folders = list(self.folders) if self.folders is not None else "all"
        return {"action": "fleet", "trigger": self.trigger, "execution": self.execution, "folders": folders}


def upload_execution_name(refs: Sequence[MigrationRef], folders: Sequence[str] | None) -> str:
    """The name of an upload's execution: the same for every event that settled on the same files."""
    digest = hashlib.sha256(json.dumps(folders).encode())
    for ref in refs:
        digest.update(f"\n{ref.key} {ref.etag}".encode())
    return f"upload-{digest.hexdigest()[:40]}"


class Fleet:
    """The fleet's state machine, seen from the function (``client``: a Step Functions client)."""

    def __init__(
        self,
        client: Any,
        state_machine_arn: str,
        *,
        time_left: Callable[[], float] | None,
        sleep: Callable[[float], None] = time.sleep,
        poll_s: float = POLL_S,
    ) -> None:
        self.client = client
        self.arn = state_machine_arn
        self.name = state_machine_arn.rsplit(":", 1)[-1]
        started = time.monotonic()
        self.time_left = time_left or (lambda: 900.0 - (time.monotonic() - started))
        self.sleep = sleep
        self.poll_s = poll_s

    def definition(self) -> dict[str, Any]:
        """The state machine's definition (Amazon States Language, as the stack synthesized it)."""
        described = self._call("describe_state_machine", stateMachineArn=self.arn)
        try:
            definition = json.loads(described["definition"])
        except ValueError as exc:
            raise FleetError(f"the definition of the fleet's state machine {self.arn} is not JSON: {exc}") from exc
        if not isinstance(definition, dict):
            raise FleetError(f"the definition of the fleet's state machine {self.arn} is not an object")
        return definition

    def run(self, request: FleetRequest, name: str) -> dict[str, Any]:
        """Start the execution ``name`` once the others have ended; its report (or, not waiting, its ARN)."""
        self._wait_for_others(name)
        arn, started = self._start(name, request.folders)
        answer: dict[str, Any] = {"action": "fleet", "trigger": request.trigger, "execution": arn}
        if not request.wait:  # started: false once that execution has ended (a running one answers as started)
            return {**answer, "status": "running" if started else "started before", "started": started}
        described = self._wait(arn, what=f"the fleet's execution {name}")
        return {**answer, **_report(described, name)}

    def _call(self, operation: str, **params: Any) -> Any:
        try:
            return getattr(self.client, operation)(**params)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "ExecutionAlreadyExists":
                raise
            raise FleetError(
                f"Step Functions refused {operation} on the fleet's state machine {self.arn} ({code}: {exc})",
                hint=FIX_ACCESS,
            ) from exc
        except BotoCoreError as exc:
            raise FleetError(f"Step Functions cannot be reached for {self.arn}: {exc}", hint=FIX_ACCESS) from exc

    def _start(self, name: str, folders: Sequence[str] | None) -> tuple[str, bool]:
        execution_input = json.dumps({"folders": None if folders is None else list(folders)}, sort_keys=True)
        try:
            answer = self._call("start_execution", stateMachineArn=self.arn, name=name, input=execution_input)
        except ClientError:  # ExecutionAlreadyExists: this run was started before (a retry, a second event)
            arn = self.arn.replace(":stateMachine:", ":execution:", 1) + f":{name}"
            log.info("the fleet's execution %s was started before", name, extra={"execution": arn})
            return arn, False
        log.info("started the fleet's execution %s", name, extra={"execution": answer["executionArn"]})
        return str(answer["executionArn"]), True

    def _wait_for_others(self, name: str) -> None:
        """Wait while executions other than ``name`` run: their targets hold the locks this one would wait for."""
        while True:
            listed = self._call("list_executions", stateMachineArn=self.arn, statusFilter="RUNNING", maxResults=100)
            others = [item["executionArn"] for item in listed.get("executions", []) if item["name"] != name]
            if not others:
                return
            log.info("waiting for running executions of the fleet", extra={"executions": others})
            self._wait(others[0], what=f"the fleet's earlier execution {others[0]}")

    def _wait(self, execution_arn: str, *, what: str) -> dict[str, Any]:
        """Poll until the execution ends; FleetError once the invocation's time is nearly up."""
        waited, interval = 0.0, min(FIRST_POLL_S, self.poll_s)
        while True:
            described: dict[str, Any] = self._call("describe_execution", executionArn=execution_arn)
            if described["status"] != "RUNNING":
                return described
            if self.time_left() - interval < ANSWER_MARGIN_S:
                raise FleetError(
                    f"{what} is still running after {waited:.0f} s of this invocation; it goes on by itself",
                    hint=f"apply again to wait for its end (a deploy waits for running executions before it "
                    f"starts its own), or follow it: aws stepfunctions describe-execution --execution-arn "
                    f"{execution_arn}",
                    execution=execution_arn,
                )
            self.sleep(interval)
            waited += interval
            interval = min(interval * 2, self.poll_s)


def _report(described: dict[str, Any], name: str) -> dict[str, Any]:
    """A finished execution's report; FleetError for any end but success, naming the failed targets."""
    status = described["status"]
    if status == "SUCCEEDED":
        return dict(json.loads(described.get("output") or "{}"))
    cause = described.get("cause") or ""
    try:
        parsed = json.loads(cause)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):  # not the definition's own Fail: a runtime error, an abort, a timeout
        raise FleetError(
            f"the fleet's execution {name} ended {status}: {described.get('error') or ''} {cause}".rstrip(),
            hint="read the execution's history in the Step Functions console; the applied files are recorded "
            "in each database's history, and the next run continues",
            execution=described.get("executionArn"),
        )
    failed = [_failure(outcome) for outcome in parsed.get("failed", [])]
    shown = "; ".join(failed[:SHOWN_FAILURES]) + ("; ..." if len(failed) > SHOWN_FAILURES else "")
    raise FleetError(
        f"the fleet's execution {name} failed: {parsed.get('message', '')} Failed: {shown}".rstrip(),
        execution=described.get("executionArn"),
        failed=parsed.get("failed", []),
        not_run=parsed.get("not_run", []),
    )


def _failure(outcome: dict[str, Any]) -> str:
    """``target (database/file:line: message)`` of one failed outcome."""
    error = outcome.get("error") or {}
    where = error.get("file") or error.get("database") or ""
    if where and error.get("line") is not None:
        where += f":{error['line']}"
    message = str(error.get("message", error.get("error", "")))[:300]
    return f"{outcome.get('target')} ({where + ': ' if where else ''}{message})"
