"""The Lambda's log lines: one JSON object each, with extras as fields and credentials masked."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from jsonlog import JsonFormatter, configure_logging, mask_credentials
from tests.helpers import LambdaLoggerHandler


def record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("dbmigrate.runner", logging.INFO, __file__, 1, message, args, None)
    for name, value in extra.items():
        setattr(made, name, value)
    return made


def test_a_record_is_one_line_of_json_with_its_extras_as_fields() -> None:
    line = JsonFormatter().format(
        record("file %s done\nnext", "1_a.up.sql", progress={"version": 1}, aws_request_id="r-1")
    )
    assert "\n" not in line
    data = json.loads(line)
    assert data["message"] == "file 1_a.up.sql done\nnext"
    assert (data["level"], data["logger"], data["request_id"]) == ("INFO", "dbmigrate.runner", "r-1")
    assert data["progress"] == {"version": 1}
    assert data["time"].endswith("+00:00")


def test_an_exception_is_logged_inside_the_json_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        failed = record("failed")
        failed.exc_info = sys.exc_info()
    data = json.loads(JsonFormatter().format(failed))
    assert "ValueError: boom" in data["exception"]


def test_values_that_are_not_json_are_written_as_text() -> None:
    data = json.loads(JsonFormatter().format(record("x", when=object)))
    assert data["when"] == "<class 'object'>"


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("postgresql://admin:s3cr%40t@db:5432/x", "postgresql://admin:***@db:5432/x"),
        ("dsn postgres://u:p@h/db and more", "dsn postgres://u:***@h/db and more"),
        ("host=db password=hunter2 dbname=x", "host=db password=*** dbname=x"),
        ("password = 'a b c' user=x", "password = *** user=x"),
        (
            "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe",
            "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe",
        ),
        ("postgresql://db:5432/x", "postgresql://db:5432/x"),
    ],
)
def test_credentials_in_urls_and_dsns_are_masked(text: str, masked: str) -> None:
    assert mask_credentials(text) == masked


def test_a_connection_string_in_any_field_never_reaches_the_line() -> None:
    line = JsonFormatter().format(
        record("connecting to %s", "postgresql://u:hunter2@db/x", error={"dsn": "password=hunter2"})
    )
    assert "hunter2" not in line
    json.loads(line)


def test_in_lambda_the_runtime_handler_writes_our_json_lines() -> None:
    root = logging.getLogger()
    runtime = LambdaLoggerHandler()
    level = root.level
    root.addHandler(runtime)
    try:
        configure_logging("INFO")
        configure_logging("INFO")  # a warm start configures again: still one line per record
        logging.getLogger("dbmigrate.runner").info("file_done", extra={"progress": {"version": 7}})
        logging.getLogger("dbmigrate.runner").debug("not at INFO")
    finally:
        root.removeHandler(runtime)
        root.setLevel(level)
    assert [json.loads(line)["progress"] for line in runtime.lines] == [{"version": 7}]
