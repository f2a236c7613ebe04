"""The AWS provider's side of ``aws_lambda_invocation``: its SDK retries a throttled ``Invoke``.

The provider's AWS SDK client retries throttling errors (``TooManyRequestsException``)
with exponential backoff and full jitter, up to 25 attempts (the provider's documented
default ``max_retries``) and at most 300 s between two (the cap is taken from our issue
12, not checked against the provider's source here); a function error is never retried:
it fails the resource, and so the apply.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from local.lambda_service import ModelClock, TooManyRequestsError

__all__ = ["ProviderRetry"]

T = TypeVar("T")


@dataclass
class ProviderRetry:
    """How the AWS provider's SDK retries a throttled ``Invoke``: up to ``max_attempts``
    attempts, waiting a random time up to 2^attempt seconds, at most ``max_backoff_s``.

    ``attempts`` counts the attempts of the last call.
    """

    clock: ModelClock
    max_attempts: int = 25
    max_backoff_s: float = 300.0
    jitter: random.Random = field(default_factory=lambda: random.Random(0))
    attempts: int = 0

    def call(self, invoke: Callable[[], T]) -> T:
        for attempt in range(1, self.max_attempts + 1):
            self.attempts = attempt
            try:
                return invoke()
            except TooManyRequestsError:
                if attempt == self.max_attempts:
                    raise
                self.clock.sleep(self.jitter.random() * min(self.max_backoff_s, 2.0**attempt))
        raise AssertionError("unreachable")
