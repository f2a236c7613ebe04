"""Step Functions locally: moto's ASL interpreter runs the definition, its Lambda tasks go to a callable.

moto executes state machines in its own interpreter (``moto.stepfunctions.parser``, from
LocalStack) once ``execute_state_machine`` is on in its config (the ``/moto-api/config``
endpoint of a moto server). A Lambda task there calls ``lambda.Invoke`` through a fresh
boto3 client of the default session (``asl/utils/boto_client.py``); moto's own Lambda would
need Docker. ``LocalStepFunctions`` registers a botocore ``before-call`` handler for
``lambda.Invoke`` on that session and answers the call itself from ``invoke(function_name,
event)``, shaped as Lambda answers it:

- a result: ``StatusCode`` 200 and the result as the JSON payload;
- ``FunctionError`` (the function raised): ``FunctionError: Unhandled`` and the runtime's
  error payload, which a ``lambda:invoke`` task reports with the ``errorType`` as its error;
- ``TooManyRequestsError`` (throttled): HTTP 429 ``TooManyRequestsException``, which the
  task reports as ``Lambda.TooManyRequestsException``, so a ``Retry`` can catch it.

The moto server must run in this process (``local.aws.LocalAws`` does): the interpreter's
threads are the server's, and the handler lives on this process's default boto3 session.
"""

from __future__ import annotations

import io
import json
import logging
import time
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import boto3
import boto3.session
import botocore.response
from botocore.awsrequest import AWSResponse
from botocore.compat import HTTPHeaders

from local.function import FunctionError
from local.lambda_service import TooManyRequestsError

__all__ = ["Execution", "ExecutionTimeoutError", "LambdaInvoke", "LocalStepFunctions", "function_name_of"]

log = logging.getLogger(__name__)

LambdaInvoke = Callable[[str, Any], Any]
"""``(function_name, event) -> result``; raises ``FunctionError`` or ``TooManyRequestsError``."""

ROLE_ARN = "arn:aws:iam::123456789012:role/dbmigrate-fleet-local"
INTERPRETER_LOG = "moto.stepfunctions.parser.asl.component.eval_component"


class _QuietPresenceChecks(logging.Filter):
    """moto's interpreter logs an ERROR each time a Choice's ``IsPresent`` finds a path absent, which is
    the check working as documented (the fleet's definition asks it on every answer): those lines go."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "NoSuchJsonPathError" not in record.getMessage()


_QUIET = _QuietPresenceChecks()
_PARAMS_KEY = "dbmigrate_local_invoke_params"
_active: list[LocalStepFunctions] = []


class ExecutionTimeoutError(RuntimeError):
    """An execution still ran when the caller stopped waiting."""

    def __init__(self, execution_arn: str, timeout_s: float) -> None:
        super().__init__(
            f"execution {execution_arn} still RUNNING after {timeout_s:g} s. "
            "Fix: look at its history (a task that never returns?) or wait longer."
        )


@dataclass(frozen=True)
class Execution:
    """An execution's end: its status, output (parsed JSON) or error and cause, and its history."""

    arn: str
    status: str
    output: Any
    error: str | None
    cause: str | None
    events: list[dict[str, Any]]

    @property
    def succeeded(self) -> bool:
        return self.status == "SUCCEEDED"

    def events_of(self, event_type: str) -> list[dict[str, Any]]:
        """The history events of one type (``TaskFailed``, ``MapIterationSucceeded``...)."""
        return [event for event in self.events if event["type"] == event_type]


def function_name_of(function: str) -> str:
    """The function's name from a name, a partial or full ARN, with or without a qualifier."""
    parts = function.split(":")
    if function.startswith("arn:"):
        return parts[6]
    if len(parts) >= 3:  # 123456789012:function:name[:qualifier]
        return parts[2]
    return parts[0]


class LocalStepFunctions:
    """The Step Functions API of a moto server in this process, executing what it is given.

    ``start`` turns moto's interpreter on and takes over ``lambda.Invoke`` for this process
    (one instance at a time); ``close`` gives it back.
    """

    def __init__(self, endpoint: str, region: str, invoke: LambdaInvoke) -> None:
        self.endpoint = endpoint
        self.region = region
        self._invoke = invoke
        session: Any = boto3.session.Session()
        self.client: Any = session.client(
            "stepfunctions",
            region_name=region,
            endpoint_url=endpoint,
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )

    def start(self) -> LocalStepFunctions:
        if _active:
            raise RuntimeError(
                "another LocalStepFunctions already answers lambda.Invoke in this process. "
                "Fix: close it first (one local Step Functions service a process)."
            )
        _post_json(f"{self.endpoint}/moto-api/config", {"stepfunctions": {"execute_state_machine": True}})
        logging.getLogger(INTERPRETER_LOG).addFilter(_QUIET)
        events = _default_session().events
        events.register("before-parameter-build.lambda.Invoke", _keep_params, unique_id=_PARAMS_KEY)
        events.register("before-call.lambda.Invoke", self._answer_invoke, unique_id=f"{_PARAMS_KEY}-call")
        _active.append(self)
        return self

    def close(self) -> None:
        """Hand ``lambda.Invoke`` back and turn moto's interpreter off again (its config is per process)."""
        if self not in _active:
            return
        _post_json(f"{self.endpoint}/moto-api/config", {"stepfunctions": {"execute_state_machine": False}})
        logging.getLogger(INTERPRETER_LOG).removeFilter(_QUIET)
        events = _default_session().events
        events.unregister("before-parameter-build.lambda.Invoke", unique_id=_PARAMS_KEY)
        events.unregister("before-call.lambda.Invoke", unique_id=f"{_PARAMS_KEY}-call")
        _active.remove(self)

    def __enter__(self) -> LocalStepFunctions:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the API --------------------------------------------------------------------------------
    def create_state_machine(self, name: str, definition: Mapping[str, Any] | str) -> str:
        """Create (moto's interpreter parses the definition now); the state machine's ARN."""
        text = definition if isinstance(definition, str) else json.dumps(definition)
        answer = self.client.create_state_machine(name=name, definition=text, roleArn=ROLE_ARN)
        return str(answer["stateMachineArn"])

    def start_execution(self, state_machine_arn: str, execution_input: Any = None, *, name: str | None = None) -> str:
        answer = self.client.start_execution(
            stateMachineArn=state_machine_arn,
            name=name or uuid.uuid4().hex,
            input=json.dumps({} if execution_input is None else execution_input),
        )
        return str(answer["executionArn"])

    def wait(self, execution_arn: str, *, timeout_s: float = 60.0, poll_s: float = 0.01) -> Execution:
        """Poll ``DescribeExecution`` until the execution ends; its end, or ExecutionTimeoutError."""
        deadline = time.monotonic() + timeout_s
        while True:
            described = self.client.describe_execution(executionArn=execution_arn)
            if described["status"] != "RUNNING":
                break
            if time.monotonic() > deadline:
                raise ExecutionTimeoutError(execution_arn, timeout_s)
            time.sleep(poll_s)
        output = described.get("output")
        return Execution(
            arn=execution_arn,
            status=described["status"],
            output=None if output is None else json.loads(output),
            error=described.get("error"),
            cause=described.get("cause"),
            events=self.history(execution_arn),
        )

    def run(self, state_machine_arn: str, execution_input: Any = None, *, timeout_s: float = 60.0) -> Execution:
        """Start an execution and wait for its end."""
        return self.wait(self.start_execution(state_machine_arn, execution_input), timeout_s=timeout_s)

    def history(self, execution_arn: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        pages = self.client.get_paginator("get_execution_history").paginate(executionArn=execution_arn)
        for page in pages:
            events += page["events"]
        return events

    # -- lambda.Invoke, answered here -------------------------------------------------------------
    def _answer_invoke(self, context: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        params = context[_PARAMS_KEY]
        name = function_name_of(str(params["FunctionName"]))
        payload = params.get("Payload") or b"{}"
        event = json.loads(payload.decode() if isinstance(payload, bytes) else payload)
        request_id = str(uuid.uuid4())
        try:
            result = self._invoke(name, event)
        except TooManyRequestsError as exc:
            return _throttled(request_id, str(exc))
        except FunctionError as exc:
            body = {"errorType": exc.error_type, "errorMessage": exc.message, "requestId": request_id, "stackTrace": []}
            return _invoked(request_id, body, function_error="Unhandled")
        return _invoked(request_id, result)


def _keep_params(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    """``before-call`` sees the serialized request only: keep the API's parameters for it."""
    context[_PARAMS_KEY] = dict(params)


def _metadata(request_id: str, status: int) -> dict[str, Any]:
    return {"RequestId": request_id, "HTTPStatusCode": status, "HTTPHeaders": {}, "RetryAttempts": 0}


def _invoked(request_id: str, result: Any, *, function_error: str | None = None) -> tuple[AWSResponse, dict[str, Any]]:
    body = json.dumps(result).encode()
    parsed: dict[str, Any] = {
        "StatusCode": 200,
        "ExecutedVersion": "$LATEST",
        "Payload": botocore.response.StreamingBody(io.BytesIO(body), len(body)),
        "ResponseMetadata": _metadata(request_id, 200),
    }
    if function_error:
        parsed["FunctionError"] = function_error
    return AWSResponse("local://lambda", 200, HTTPHeaders(), None), parsed


def _throttled(request_id: str, message: str) -> tuple[AWSResponse, dict[str, Any]]:
    parsed = {
        "Error": {"Code": "TooManyRequestsException", "Message": message},
        "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded",
        "ResponseMetadata": _metadata(request_id, 429),
    }
    return AWSResponse("local://lambda", 429, HTTPHeaders(), None), parsed


def _default_session() -> Any:
    """The session ``boto3.client`` uses, which is where moto's interpreter makes its clients."""
    if boto3.DEFAULT_SESSION is None:
        boto3.setup_default_session()
    return boto3.DEFAULT_SESSION


def _post_json(url: str, body: Mapping[str, Any]) -> None:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=30) as answer:
        answer.read()
