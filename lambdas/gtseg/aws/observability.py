"""One Logger and one Metrics for every handler (the Powertools cookbook pattern), and the
decorator that makes a function a Lambda entry point."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "gtseg")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "gtseg")

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)

Result = TypeVar("Result")


@dataclass(frozen=True)
class LocalContext:
    """Stands in for Lambda's context when a handler is called without one (a test, a script):
    Powertools' context injection reads these four attributes."""

    function_name: str = "local"
    memory_limit_in_mb: int = 0
    invoked_function_arn: str = "arn:aws:lambda:local:000000000000:function:local"
    aws_request_id: str = "local"

    def get_remaining_time_in_millis(self) -> int | None:
        return None


def _has_lambda_context(context: Any) -> bool:
    """Whether Powertools can read what it injects into every log line from ``context``."""
    return all(hasattr(context, name) for name in LocalContext.__dataclass_fields__)


def entry_point(
    *, flush_metrics: bool = True
) -> Callable[[Callable[[Any, Any], Result]], Callable[[Any, Any], Result]]:
    """Powertools' ``inject_lambda_context`` (function name, request id and cold start on every log
    line, state cleared between invocations) and, unless the handler flushes metrics itself,
    ``log_metrics``. A missing context (local calls) gets a ``LocalContext``."""

    def decorate(handler: Callable[[Any, Any], Result]) -> Callable[[Any, Any], Result]:
        wrapped: Callable[[Any, Any], Result] = logger.inject_lambda_context(clear_state=True)(handler)
        if flush_metrics:
            wrapped = metrics.log_metrics(wrapped)

        @functools.wraps(handler)
        def run(event: Any, context: Any) -> Result:
            return wrapped(event, context if _has_lambda_context(context) else LocalContext())

        return run

    return decorate


__all__ = ["NAMESPACE", "SERVICE", "LocalContext", "MetricUnit", "entry_point", "logger", "metrics"]
