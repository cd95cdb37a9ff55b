"""Transient AWS faults retried for as long as the function has time, then reported as transient.

botocore's standard retry mode already retries a few times within one call; a fault that outlasts
that (six SlowDown replies in a row, a connection that keeps dropping) is retried here with
backoff until the invocation's deadline leaves only the time it needs to answer. Permanent
errors (403, 404, a malformed request) are raised at once: retrying cannot change them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from gtseg.aws.errors import error_code, is_transient

T = TypeVar("T")

FIRST_DELAY_SECONDS = 0.2
MAX_DELAY_SECONDS = 5.0
# Without a Lambda deadline (tests, the CLI) a fault is retried for this long at most.
UNBOUNDED_RETRY_SECONDS = 30.0


class TransientError(RuntimeError):
    """A transient fault that outlasted the time there was to retry it; the message says which."""


@dataclass(frozen=True)
class Deadline:
    """When retrying must stop: ``at`` on the monotonic clock (None: ``UNBOUNDED_RETRY_SECONDS``
    from the first fault)."""

    at: float | None = None

    @classmethod
    def from_context(
        cls, context: Any, *, reserve_fraction: float = 0.2, max_reserve_seconds: float = 15.0
    ) -> Deadline:
        """The Lambda's own deadline minus the time kept to answer: a fifth of what is left, at
        most 15 s (writing the answers of a batch takes well under that)."""
        try:
            remaining = float(context.get_remaining_time_in_millis()) / 1000.0
        except Exception:  # no Lambda context (tests, local calls)
            return cls(None)
        reserve = min(max_reserve_seconds, remaining * reserve_fraction)
        return cls(time.monotonic() + remaining - reserve)

    def seconds_left(self, started: float) -> float:
        end = self.at if self.at is not None else started + UNBOUNDED_RETRY_SECONDS
        return end - time.monotonic()


def with_retries(
    call: Callable[[], T],
    *,
    what: str,
    deadline: Deadline,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``call()``; a transient fault is retried with doubling delays while the deadline allows."""
    started = time.monotonic()
    delay = FIRST_DELAY_SECONDS
    attempts = 0
    while True:
        try:
            return call()
        except Exception as exc:
            if not is_transient(exc):
                raise
            attempts += 1
            if deadline.seconds_left(started) < delay:
                code = error_code(exc) or type(exc).__name__
                raise TransientError(
                    f"{what}: transient fault ({code}) still there after {attempts} tries; retry later"
                ) from exc
            sleep(delay)
            delay = min(delay * 2, MAX_DELAY_SECONDS)
