"""Structured logs for the Lambda: one JSON object per line, credentials masked.

Fields passed with ``extra=`` become top-level keys. Whatever reaches a line goes
through the run's Masker (``dbmigrate.dburl``): the known passwords in every encoding,
and the password part of any ``scheme://user:password@`` URL or ``password=`` option,
are replaced by ``***``, so a connection string quoted in some library's message (or
a traceback) never reaches CloudWatch.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from dbmigrate.dburl import Masker, mask_credentials

__all__ = ["JsonFormatter", "configure_logging", "mask_credentials"]

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
STANDARD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def _masked(value: Any, mask: Callable[[str], str]) -> Any:
    """A JSON-ready copy of ``value``: strings masked, containers walked, other objects as text."""
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, dict):
        return {mask(str(key)): _masked(item, mask) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_masked(item, mask) for item in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return mask(str(value))


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line: time, level, logger, message, request id, extras.

    Every string goes through ``masker`` (replace it as secrets become known).
    """

    def __init__(self, masker: Masker | None = None) -> None:
        super().__init__()
        self.masker = masker or Masker()

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
        return json.dumps(_masked(data, self.masker), ensure_ascii=False)


def configure_logging(level: str, masker: Masker | None = None) -> None:
    """Send every log record through JsonFormatter at ``level``; safe to call on every invocation.

    ``masker`` (the run's secrets) replaces the one a warm start left on the formatter.

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
            lambda_handler.setFormatter(JsonFormatter(masker))
    if not root.handlers:
        stdout = logging.StreamHandler(sys.stdout)
        stdout.setFormatter(JsonFormatter(masker))
        root.addHandler(stdout)
    for ours in root.handlers:
        if isinstance(ours.formatter, JsonFormatter):
            ours.formatter.masker = masker or Masker()
    # botocore's DEBUG output would include request headers; keep it quiet.
    logging.getLogger("botocore").setLevel(max(logging.INFO, root.level))
    logging.getLogger("urllib3").setLevel(max(logging.INFO, root.level))
