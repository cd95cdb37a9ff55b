"""One Logger and one Metrics for every handler (the Powertools cookbook pattern)."""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "gtseg")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "gtseg")

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)

__all__ = ["NAMESPACE", "SERVICE", "MetricUnit", "logger", "metrics"]
