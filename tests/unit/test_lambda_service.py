"""The local model of the Lambda service and of the provider's retry, on stand-in instances (no AWS, no process)."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from local.function import FunctionError, LocalFunction
from local.lambda_service import LocalLambda, ModelClock, TooManyRequestsError
from local.provider import ProviderRetry


@dataclass(frozen=True)
class RecordingClock(ModelClock):
    slept: list[float] = field(default_factory=list)

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


class Instance:
    """Answers like the function: ``fail`` raises, ``hold`` blocks until released."""

    def __init__(self, release: threading.Event) -> None:
        self.release = release

    def invoke(self, event: Any) -> Any:
        if event.get("hold"):
            self.release.wait(10)
        if event.get("fail"):
            raise FunctionError("SqlError", "projectdb/1_a.up.sql:2: boom")
        return {"action": "migrate", "event": event}

    def close(self) -> None:
        pass


def service(reserved: int | None, release: threading.Event) -> LocalLambda:
    return LocalLambda(
        lambda: cast(LocalFunction, Instance(release)),
        name="dbmigrate-migrate",
        reserved_concurrency=reserved,
        clock=ModelClock(scale=1e-4),
    )


def test_a_synchronous_invoke_over_the_reserved_concurrency_is_throttled() -> None:
    release = threading.Event()
    lam = service(1, release)
    held = lam.invoke_async({"hold": True})
    while lam.busy == 0:
        time.sleep(0.001)
    with pytest.raises(TooManyRequestsError, match="ReservedFunctionConcurrentInvocationLimitExceeded"):
        lam.invoke({"n": 1})
    release.set()
    lam.wait(held)
    assert lam.invoke({"n": 2})["event"] == {"n": 2}
    assert lam.throttled == 1
    lam.close()


def test_without_a_reservation_invocations_run_side_by_side() -> None:
    release = threading.Event()
    lam = service(None, release)
    held = lam.invoke_async({"hold": True})
    while lam.busy == 0:
        time.sleep(0.001)
    assert lam.invoke({"n": 1})["event"] == {"n": 1}
    release.set()
    lam.wait(held)
    assert lam.throttled == 0
    lam.close()


def test_a_failing_asynchronous_event_is_tried_three_times() -> None:
    lam = service(1, threading.Event())
    request = lam.invoke_async({"fail": True})
    lam.wait(request)
    assert [(item.attempt, item.error is not None) for item in lam.attempts(request)] == [
        (1, True),
        (2, True),
        (3, True),
    ]
    lam.close()


def test_an_asynchronous_event_waits_out_throttling_instead_of_failing() -> None:
    release = threading.Event()
    lam = service(1, release)
    held = lam.invoke_async({"hold": True})
    queued = lam.invoke_async({"n": 1})
    release.set()
    lam.wait()
    assert [item.attempt for item in lam.attempts(queued)] == [1]
    assert lam.attempts(held)[0].error is None
    lam.close()


def test_the_provider_retries_a_throttled_invoke_with_capped_backoff_then_gives_up() -> None:
    clock = RecordingClock(scale=1.0)
    retry = ProviderRetry(clock, jitter=random.Random(1))
    calls: list[int] = []

    def throttled() -> None:
        calls.append(1)
        raise TooManyRequestsError("f", 1)

    with pytest.raises(TooManyRequestsError):
        retry.call(throttled)
    assert len(calls) == retry.attempts == 25
    assert len(clock.slept) == 24
    assert max(clock.slept) <= 300
    assert all(delay <= 2**attempt for attempt, delay in enumerate(clock.slept, start=1))


def test_the_provider_stops_retrying_once_the_invoke_runs() -> None:
    retry = ProviderRetry(RecordingClock(scale=1.0))
    answers = iter([TooManyRequestsError("f", 1), TooManyRequestsError("f", 1), {"ok": True}])

    def invoke() -> Any:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert retry.call(invoke) == {"ok": True}
    assert retry.attempts == 3


def test_a_function_error_is_not_retried_by_the_provider() -> None:
    retry = ProviderRetry(RecordingClock(scale=1.0))

    def failing() -> None:
        raise FunctionError("SqlError", "boom")

    with pytest.raises(FunctionError):
        retry.call(failing)
    assert retry.attempts == 1
