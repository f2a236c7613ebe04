"""Structured logs for the Lambda: one JSON object per line, credentials masked.

Fields passed with ``extra=`` become top-level keys. Whatever reaches a line, the
password part of any ``scheme://user:password@`` URL is replaced by ``***``: a
connection string quoted in some library's message never reaches CloudWatch.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

__all__ = ["JsonFormatter", "configure_logging", "mask_credentials"]

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
STANDARD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
URL_CREDENTIALS = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s\"']*:)[^@\s\"']+@", re.IGNORECASE)
LIBPQ_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)('[^']*'|\S+)", re.IGNORECASE)


def mask_credentials(text: str) -> str:
    """``postgresql://u:secret@h`` -> ``postgresql://u:***@h``; ``password=secret`` -> ``password=***``."""
    text = URL_CREDENTIALS.sub(r"\g<head>***@", text)
    return LIBPQ_PASSWORD.sub(r"\g<head>***", text)


def _masked(value: Any) -> Any:
    """A JSON-ready copy of ``value``: strings masked, containers walked, other objects as text."""
    if isinstance(value, str):
        return mask_credentials(value)
    if isinstance(value, dict):
        return {str(key): _masked(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_masked(item) for item in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return mask_credentials(str(value))


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line: time, level, logger, message, request id, extras."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "aws_request_id", None)
        if request_id:
            data["request_id"] = request_id
        for name, value in vars(record).items():
            if name not in STANDARD_ATTRIBUTES and name != "aws_request_id" and not name.startswith("_"):
                data[name] = value
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(_masked(data), ensure_ascii=False)


def configure_logging(level: str) -> None:
    """Send every log record through JsonFormatter at ``level``; safe to call on every invocation.

    In Lambda the runtime has put its own handler on the root logger: it gets our
    formatter (one CloudWatch event per record). Elsewhere, with no handler on the
    root logger, a stdout handler is added; handlers that others installed (pytest's)
    are left alone.
    """
    root = logging.getLogger()
    root.setLevel(level)
    runtime = [h for h in root.handlers if type(h).__name__.startswith("LambdaLoggerHandler")]
    for lambda_handler in runtime:
        if not isinstance(lambda_handler.formatter, JsonFormatter):
            lambda_handler.setFormatter(JsonFormatter())
    if not root.handlers:
        stdout = logging.StreamHandler(sys.stdout)
        stdout.setFormatter(JsonFormatter())
        root.addHandler(stdout)
    # botocore's DEBUG output would include request headers; keep it quiet.
    logging.getLogger("botocore").setLevel(max(logging.INFO, root.level))
    logging.getLogger("urllib3").setLevel(max(logging.INFO, root.level))
