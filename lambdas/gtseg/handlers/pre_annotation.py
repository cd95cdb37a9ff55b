"""Pre-annotation Lambda: Ground Truth calls it once per data object, before the task is created.

Thin: hand the event to ``gtseg.pre_annotation.service`` (which reads the image header, the label
list and an optional model pre-label, lets ``gtseg.pre_annotation.task`` decide, and answers). It
never raises: an exception here fails the whole labeling job (protocol doc §1.4), so every problem
becomes ``isHumanAnnotationRequired: false`` plus a logged reason and a metric.

Environment (all optional): LABEL_CATEGORY_CONFIG_URI, PRIOR_LABEL_ATTRIBUTE,
PRELABEL_ENDPOINT_NAME, OUTPUT_BUCKET (``PreAnnotationSettings``).
"""

from __future__ import annotations

from typing import Any

from gtseg.aws.observability import entry_point
from gtseg.pre_annotation.service import PreAnnotation, end_request, internal_error, new_clients

CLIENTS = new_clients()
PRE_ANNOTATION = PreAnnotation(CLIENTS)


def reset_state() -> None:
    """Forget cached label files and clients (tests; a new container starts like this)."""
    PRE_ANNOTATION.reset()


# Metrics are flushed here, not by Powertools' log_metrics: a failing flush must not raise.
@entry_point(flush_metrics=False)
def handler(event: Any, context: Any) -> dict[str, Any]:
    try:
        response = PRE_ANNOTATION.answer(event, _remaining_ms(context))
    except Exception as exc:  # the last line of defence: never fail the labeling job
        response = internal_error(exc)
    finally:
        end_request()
    return response.to_wire()


def _remaining_ms(context: Any) -> int | None:
    """Milliseconds left before the Lambda's timeout, or None when unknown (no Lambda context)."""
    try:
        remaining = context.get_remaining_time_in_millis()
        return None if remaining is None else int(remaining)
    except Exception:  # not a Lambda context
        return None
