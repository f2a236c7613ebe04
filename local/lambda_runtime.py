"""A stand-in for the Lambda runtime: runs a handler from an unpacked package folder.

Runs as its own process, started by ``LocalFunction`` with only the package folder
(and boto3, which the real runtime provides) on its path, so the code under test is
exactly what the zip holds. Like the real runtime it imports the handler once and
keeps it warm: invocations arrive one JSON line at a time on stdin, each carrying the
raw payload text (which, as in Lambda, must be JSON), and each reply is one JSON line
on the file descriptor given as the second argument (stdout and stderr stay free for
the function's own logs, as in CloudWatch).

This file uses the standard library only.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback
import uuid
from typing import Any


class Context:
    """The parts of the Lambda context object handlers use (the one stand-in: tests use it too).

    The remaining time counts down from ``timeout_s``, as the real one does.
    """

    def __init__(self, function_name: str = "acme-dbmigrate", timeout_s: float = 300, memory_mb: int = 512) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = memory_mb
        self.invoked_function_arn = f"arn:aws:lambda:local:000000000000:function:{function_name}"
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def main() -> int:
    handler_path, reply_fd = sys.argv[1], int(sys.argv[2])
    module_name, function_name = handler_path.rsplit(".", 1)
    reply = os.fdopen(reply_fd, "w", buffering=1)
    try:
        handler = getattr(importlib.import_module(module_name), function_name)
    except Exception as exc:  # the real runtime reports an init error the same way
        reply.write(json.dumps(_error(exc)) + "\n")
        return 1
    reply.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        request = json.loads(line)
        context = Context(request["function_name"], request["timeout_s"], request.get("memory_mb", 512))
        try:
            event = json.loads(request["payload"])
        except ValueError as exc:
            answer = {
                "ok": False,
                "errorType": "Runtime.UnmarshalError",
                "errorMessage": f"Unable to unmarshal input: {exc}",
            }
        else:
            try:
                result: Any = handler(event, context)
                answer = {"ok": True, "result": result}
            except Exception as exc:
                answer = {"ok": False, **_error(exc)}
        reply.write(json.dumps(answer, default=str) + "\n")
    return 0


def _error(exc: BaseException) -> dict[str, Any]:
    return {
        "errorType": type(exc).__name__,
        "errorMessage": str(exc),
        "stackTrace": traceback.format_exception(exc)[-3:],
    }


if __name__ == "__main__":
    sys.exit(main())
