"""The CLI side of the remote plan: reading a Lambda Invoke response."""

from __future__ import annotations

import io
import json

import pytest

from dbmigrate.cli_remote import RemotePlanError, read_response
from dbmigrate.errors import ConfigError


def response(body: object, *, function_error: str | None = None) -> dict[str, object]:
    answer: dict[str, object] = {"StatusCode": 200, "Payload": io.BytesIO(json.dumps(body).encode())}
    if function_error:
        answer["FunctionError"] = function_error
    return answer


def test_a_plan_result_is_returned_as_it_came() -> None:
    assert read_response("fn", response({"action": "plan", "databases": []})) == {"action": "plan", "databases": []}


def test_an_error_raised_by_the_function_is_raised_with_its_type_and_message() -> None:
    body = {"errorType": "DatabaseConnectError", "errorMessage": "cannot connect to db:5432/postgres"}
    with pytest.raises(RemotePlanError, match="fn failed: DatabaseConnectError: cannot connect to db:5432/postgres"):
        read_response("fn", response(body, function_error="Unhandled"))


def test_a_configuration_error_of_the_function_stays_a_configuration_error() -> None:
    body = {"errorType": "ConfigError", "errorMessage": "MIGRATIONS_BUCKET is not set"}
    with pytest.raises(ConfigError, match="MIGRATIONS_BUCKET is not set"):
        read_response("fn", response(body, function_error="Unhandled"))


def test_an_answer_that_is_not_a_plan_is_refused() -> None:
    with pytest.raises(RemotePlanError, match="answered with list"):
        read_response("fn", response(["not", "a", "plan"]))
