"""Launcher Lambda: a job spec in, a started labeling job out (CloudFormation has no labeling-job
resource, so this is how a deployed stack starts jobs).

Thin: read the stack's settings from the environment, hand the event to ``gtseg.launcher.launch``, answer
``{"jobName", "jobArn", "manifestUri", "objectCount", "labelCategoryConfigUri", ...}``. A spec
or settings problem raises, so the caller (``gtseg launch --stack``) gets Lambda's error shape
with a message naming the field; nothing is created in that case.

Environment: GROUND_TRUTH_ROLE_ARN, PRE_ANNOTATION_FUNCTION_ARN, CONSOLIDATION_FUNCTION_ARN,
WORKER_TEMPLATE_URI, DATA_BUCKET, OUTPUT_BUCKET; optional DEFAULT_WORKTEAM_ARN, OUTPUT_KMS_KEY_ID.
"""

from __future__ import annotations

from typing import Any

from gtseg.aws.clients import AwsClients
from gtseg.aws.observability import MetricUnit, entry_point, logger, metrics
from gtseg.launcher.errors import LaunchConfigError, LaunchConflictError
from gtseg.launcher.launch import launch
from gtseg.launcher.settings import LauncherSettings
from gtseg.launcher.spec import SpecError

CLIENTS = AwsClients()


@entry_point()
def handler(event: Any, context: Any) -> dict[str, Any]:
    try:
        # Settings are read per invocation (a few dict lookups) so tests can change them.
        settings = LauncherSettings.from_env()
    except LaunchConfigError as exc:
        logger.error("launcher misconfigured", extra={"reason": str(exc)})
        metrics.add_metric(name="LauncherMisconfigured", unit=MetricUnit.Count, value=1)
        raise
    try:
        result = launch(event, settings, CLIENTS.get_store(), CLIENTS.get_sagemaker())
    except (SpecError, LaunchConflictError, LaunchConfigError) as exc:
        logger.warning("job not launched", extra={"reason": str(exc)})
        metrics.add_metric(name="LaunchRejected", unit=MetricUnit.Count, value=1)
        raise
    if result.skipped_count:
        logger.warning(
            "input lines left out of the manifest",
            extra={"skipped_count": result.skipped_count, "first_skipped": list(result.skipped[:5])},
        )
    logger.info(
        "labeling job started" if result.created else "labeling job already started from this spec",
        extra={"job_arn": result.job_arn, "object_count": result.object_count},
    )
    if result.created:
        metrics.add_metric(name="LabelingJobsLaunched", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="ObjectsSubmitted", unit=MetricUnit.Count, value=result.object_count or 0)
    else:
        metrics.add_metric(name="LaunchesOfRunningJob", unit=MetricUnit.Count, value=1)
    return result.to_dict()
