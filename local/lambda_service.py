"""The Lambda service in front of the local function: concurrency, throttling, async retries, dead letters.

What AWS does between a caller and the function, played locally so that the local deploy
meets the same races a real one does:

- every invocation takes one unit of the function's concurrency; with a reserved
  concurrency set, a synchronous ``Invoke`` over the limit is throttled
  (``TooManyRequestsException``, HTTP 429) and never reaches the function;
- an asynchronous invocation (what SNS makes) is queued; it waits while the function is
  throttled, for at most the maximum event age (6 hours); a failed run is retried twice,
  one and then two minutes later; an event that still fails goes to the dead-letter
  target (an SQS queue: the event as the body, ``RequestID``, ``ErrorCode`` and
  ``ErrorMessage`` as attributes);
- concurrent invocations run in separate instances (processes); an idle one is reused.

Time is model time: ``ModelClock`` plays AWS's minutes faster (tests and the demo scale
them down); ``provider.py`` models how the AWS provider retries a throttled invoke.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from local.function import FunctionError, LocalFunction

__all__ = ["Invocation", "LocalLambda", "ModelClock", "TooManyRequestsError"]

log = logging.getLogger(__name__)

ASYNC_RETRY_DELAYS_S = (60.0, 120.0)
MAX_EVENT_AGE_S = 6 * 3600.0


@dataclass(frozen=True)
class ModelClock:
    """AWS's delays played ``scale`` times as long (``0.001``: a minute in 60 ms)."""

    scale: float = 1.0

    def __post_init__(self) -> None:
        if not self.scale > 0:
            raise ValueError(f"the model clock's scale must be positive, not {self.scale}")

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds * self.scale))

    def now(self) -> float:
        """Model seconds (monotonic)."""
        return time.monotonic() / self.scale


class TooManyRequestsError(RuntimeError):
    """Lambda refused a synchronous invoke: the function is at its reserved concurrency (429)."""

    def __init__(self, function_name: str, limit: int) -> None:
        super().__init__(
            f"TooManyRequestsException: Rate Exceeded. (function {function_name}, "
            f"reason ReservedFunctionConcurrentInvocationLimitExceeded, limit {limit})"
        )
        self.status = 429


@dataclass(frozen=True)
class Invocation:
    """One run of the function: synchronous, or one attempt at an asynchronous event."""

    kind: Literal["sync", "async"]
    request_id: str
    attempt: int
    result: Any = None
    error: FunctionError | None = None

    @property
    def did_work(self) -> bool:
        """Whether the function ran migrations (or failed trying), not a skip."""
        return self.error is not None or not (isinstance(self.result, dict) and self.result.get("action") is None)


@dataclass
class _Concurrency:
    limit: int | None
    busy: int = 0
    changed: threading.Condition = field(default_factory=threading.Condition)

    def try_enter(self) -> bool:
        with self.changed:
            if self.limit is not None and self.busy >= self.limit:
                return False
            self.busy += 1
            return True

    def enter(self, timeout_s: float) -> bool:
        with self.changed:
            free = self.changed.wait_for(lambda: self.limit is None or self.busy < self.limit, timeout=timeout_s)
            if free:
                self.busy += 1
            return free

    def leave(self) -> None:
        with self.changed:
            self.busy -= 1
            self.changed.notify_all()


class LocalLambda:
    """The Lambda service for one function; ``invoke`` and ``invoke_async`` as the API has them.

    ``start_instance`` makes a new instance (a cold start); ``reserved_concurrency`` None
    means no reservation (the account's unreserved pool, which the local deploy never
    exhausts). ``dead_letter_url`` is the SQS queue failed asynchronous events go to.
    """

    def __init__(  # noqa: PLR0913  mirrors Lambda's function settings (FunctionName, ReservedConcurrentExecutions, DeadLetterConfig)
        self,
        start_instance: Callable[[], LocalFunction],
        *,
        name: str,
        reserved_concurrency: int | None,
        clock: ModelClock,
        sqs: Any = None,
        dead_letter_url: str | None = None,
    ) -> None:
        self.name = name
        self.clock = clock
        self.invocations: list[Invocation] = []
        self.throttled = 0
        self._start_instance = start_instance
        self._concurrency = _Concurrency(reserved_concurrency)
        self._sqs = sqs
        self._dead_letter_url = dead_letter_url
        self._idle: list[LocalFunction] = []
        self._instances: list[LocalFunction] = []
        self._events: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    @property
    def reserved_concurrency(self) -> int | None:
        return self._concurrency.limit

    @property
    def busy(self) -> int:
        """Invocations running now."""
        return self._concurrency.busy

    # -- the Invoke API -----------------------------------------------------------------------
    def invoke(self, event: Any) -> Any:
        """``Invoke`` (RequestResponse): the result, FunctionError, or TooManyRequestsError."""
        if not self._concurrency.try_enter():
            with self._lock:
                self.throttled += 1
            raise TooManyRequestsError(self.name, self._concurrency.limit or 0)
        request_id = str(uuid.uuid4())
        try:
            return self._run("sync", request_id, 1, event)
        finally:
            self._concurrency.leave()

    def invoke_async(self, event: Any) -> str:
        """``Invoke`` (Event): queued, 202; returns the request id (see ``wait``)."""
        request_id = str(uuid.uuid4())
        thread = threading.Thread(target=self._deliver, args=(request_id, event), name=f"async-{request_id[:8]}")
        with self._lock:
            self._events[request_id] = thread
        thread.start()
        return request_id

    def wait(self, request_id: str | None = None, timeout_s: float = 300.0) -> None:
        """Until one asynchronous event (or every one so far) is done: run, retried, or dead-lettered."""
        with self._lock:
            threads = [self._events[request_id]] if request_id else list(self._events.values())
        for thread in threads:
            thread.join(timeout_s)
            if thread.is_alive():
                raise TimeoutError(f"the asynchronous event {thread.name} is still running after {timeout_s} s")

    def attempts(self, request_id: str) -> list[Invocation]:
        """Every run of one request, in order."""
        with self._lock:
            return [item for item in self.invocations if item.request_id == request_id]

    def dead_letters(self) -> list[dict[str, Any]]:
        """What the dead-letter queue holds: each message's event and attributes."""
        if self._sqs is None or self._dead_letter_url is None:
            return []
        found = self._sqs.receive_message(
            QueueUrl=self._dead_letter_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], VisibilityTimeout=0
        )
        return [
            {
                "event": json.loads(message["Body"]),
                **{name: value.get("StringValue") for name, value in message.get("MessageAttributes", {}).items()},
            }
            for message in found.get("Messages", [])
        ]

    def close(self) -> None:
        """Wait for queued events, then stop every instance."""
        self.wait(timeout_s=600.0)
        with self._lock:
            instances, self._instances, self._idle = self._instances, [], []
        for instance in instances:
            instance.close()

    # -- inside the service ---------------------------------------------------------------------
    def _deliver(self, request_id: str, event: Any) -> None:
        """One asynchronous event: wait out throttling, run, retry twice, then dead-letter."""
        queued = self.clock.now()
        error: FunctionError | None = None
        for attempt, delay in enumerate((0.0, *ASYNC_RETRY_DELAYS_S), start=1):
            self.clock.sleep(delay)
            left = MAX_EVENT_AGE_S - (self.clock.now() - queued)
            if left <= 0 or not self._concurrency.enter(timeout_s=left * self.clock.scale):
                error = FunctionError("EventAgeExceeded", "the event waited longer than its maximum age")
                break
            try:
                self._run("async", request_id, attempt, event)
                return
            except FunctionError as exc:
                error = exc
            finally:
                self._concurrency.leave()
        self._dead_letter(request_id, event, error)

    def _dead_letter(self, request_id: str, event: Any, error: FunctionError | None) -> None:
        message = error.message if error else "unknown"
        log.warning("asynchronous event %s failed after its retries: sent to the dead-letter queue", request_id)
        if self._sqs is None or self._dead_letter_url is None:
            return
        self._sqs.send_message(
            QueueUrl=self._dead_letter_url,
            MessageBody=json.dumps(event),
            MessageAttributes={
                "RequestID": {"DataType": "String", "StringValue": request_id},
                "ErrorCode": {"DataType": "Number", "StringValue": "200"},
                "ErrorMessage": {"DataType": "String", "StringValue": message[:1000] or "-"},
            },
        )

    def _run(self, kind: Literal["sync", "async"], request_id: str, attempt: int, event: Any) -> Any:
        instance = self._instance()
        healthy = True
        try:
            result = instance.invoke(event)
        except FunctionError as exc:
            healthy = not exc.error_type.startswith("Runtime.ExitError")
            self._record(Invocation(kind, request_id, attempt, error=exc))
            raise
        finally:
            self._release(instance, healthy)
        self._record(Invocation(kind, request_id, attempt, result=result))
        return result

    def _record(self, invocation: Invocation) -> None:
        with self._lock:
            self.invocations.append(invocation)

    def _instance(self) -> LocalFunction:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        instance = self._start_instance()
        with self._lock:
            self._instances.append(instance)
        return instance

    def _release(self, instance: LocalFunction, healthy: bool) -> None:
        with self._lock:
            if healthy:
                self._idle.append(instance)
                return
            self._instances.remove(instance)
        instance.close()
