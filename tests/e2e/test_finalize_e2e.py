"""The emulator as Ground Truth behaves (outputConfig <job>/annotations, job names lower-cased in the
ARN, the Lambda's metadata replaced by custom-job metadata), gtseg's real Lambdas in sandboxes, then
``gtseg finalize`` in S3 and a chained adjustment job started from the first one's output: its
workers are shown the prior mask, some change it, and its finalized lines say which.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import boto3
import pytest

from gtseg.aws.s3 import S3Store
from gtseg.core.manifest import parse_manifest
from gtseg.finalize.runner import finalize_manifest
from gtseg.local.ground_truth import GroundTruthEmulator, WorkerSubmission, WorkerTask
from gtseg.local.lambda_runtime import LocalLambda, function_arn
from gtseg.local.moto_server import LocalMotoServer
from gtseg.local.sagemaker_standin import SageMakerStandin
from gtseg.local.simulated_job import CORS_RULE, TEMPLATE, SimulatedWorkforce, synthetic_samples
from gtseg.local.simulation import DEFAULT_LABELS
from gtseg.tools.jobdata import JobData

DATA, OUT = "e2e-data", "e2e-output"
ROLE = "arn:aws:iam::123456789012:role/e2e-GroundTruthRole"
WORKTEAM = "arn:aws:sagemaker:us-east-1:123456789012:workteam/private-crowd/e2e"
FIRST, REVIEW = "Street-Pass-1", "Street-Review-1"


class AdjustingWorkforce:
    """The simulated crowd, on an adjustment task: each answer says whether the worker changed the
    prior mask (``initialValueModified``), as the real element does when given an initial-value."""

    def __init__(self, crowd: SimulatedWorkforce, modified: dict[str, Sequence[bool]]) -> None:
        self.crowd, self.modified = crowd, modified
        self.initial_values: dict[str, str | None] = {}

    def __call__(self, task: WorkerTask) -> list[WorkerSubmission]:
        self.initial_values[task.dataset_object_id] = task.rendered.initial_value
        out = []
        for submission, flag in zip(self.crowd(task), self.modified[task.dataset_object_id], strict=False):
            content = json.loads(json.dumps(submission.answer_content))
            next(iter(content.values()))["initialValueModified"] = flag
            out.append(WorkerSubmission(submission.worker_id, content, submission.time_spent_seconds))
        return out


def lines_at(store: S3Store, uri: str) -> list[dict]:
    return [line.data for line in parse_manifest(store.get_bytes(uri).decode().splitlines())]


@pytest.mark.parametrize("finalize_first", [True, False], ids=["prior-finalized", "prior-from-sidecars"])
def test_a_job_and_its_adjustment_job_are_finalized_as_built_in_output(tmp_path, finalize_first):
    samples = synthetic_samples(2, seed=5, size=(160, 120), labels=DEFAULT_LABELS)
    with LocalMotoServer() as moto, SageMakerStandin() as sagemaker:
        moto.set_service_endpoint("SAGEMAKER", sagemaker.endpoint_url or "")
        store = S3Store()
        s3 = boto3.client("s3")
        for bucket in (DATA, OUT):
            s3.create_bucket(Bucket=bucket)
            s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [CORS_RULE]})
        template_uri = f"s3://{DATA}/templates/{TEMPLATE.name}"
        store.put_bytes(template_uri, TEMPLATE.read_bytes(), "text/html")
        by_uri = {}
        for sample in samples:
            uri = f"s3://{DATA}/images/{sample.name}"
            store.put_bytes(uri, sample.image_bytes, "image/png")
            by_uri[uri] = sample
        arns = {role: function_arn(f"e2e-{role}") for role in ("launcher", "pre-annotation", "consolidation")}
        common = {"POWERTOOLS_METRICS_NAMESPACE": "gtseg", "LOG_LEVEL": "INFO"}
        launcher_env = {**common, "GROUND_TRUTH_ROLE_ARN": ROLE, "PRE_ANNOTATION_FUNCTION_ARN": arns["pre-annotation"],
                        "CONSOLIDATION_FUNCTION_ARN": arns["consolidation"], "WORKER_TEMPLATE_URI": template_uri,
                        "DATA_BUCKET": DATA, "OUTPUT_BUCKET": OUT, "DEFAULT_WORKTEAM_ARN": WORKTEAM}  # fmt: skip
        logs = tmp_path / "logs"
        with (
            LocalLambda("gtseg.handlers.launcher.handler", function_name="e2e-launcher", environment=launcher_env,
                        log_path=logs / "launcher.log") as launcher,
            LocalLambda("gtseg.handlers.pre_annotation.handler", function_name="e2e-pre-annotation",
                        environment={**common, "OUTPUT_BUCKET": OUT}, log_path=logs / "pre.log") as pre,
            LocalLambda("gtseg.handlers.consolidation.handler", function_name="e2e-consolidation",
                        environment=common, log_path=logs / "acs.log") as acs,
        ):  # fmt: skip
            functions = {arns["pre-annotation"]: pre, arns["consolidation"]: acs}
            spec = {"jobName": FIRST, "labels": list(DEFAULT_LABELS), "images": {"prefix": f"s3://{DATA}/images/"},
                    "workersPerObject": 3, "title": "Paint the street", "description": "Paint every pixel."}  # fmt: skip
            assert launcher.invoke(spec).ok
            crowd = SimulatedWorkforce(by_uri, ("careful", "average", "sloppy"), seed=3)
            first = GroundTruthEmulator(
                sagemaker=sagemaker, functions=functions, workforce=crowd, store=store
            ).run(FIRST)
            assert first.status == "Completed", first.failure_reason
            assert first.job_arn.endswith(f"labeling-job/{FIRST.lower()}")  # as real events carry it
            raw = lines_at(store, first.output_manifest_uri)
            assert {line[f"{FIRST}-ref-metadata"]["type"] for line in raw} == {"groundtruth/custom"}

            data = JobData(store=store)
            if finalize_first:
                done = finalize_manifest(first.output_manifest_uri, f"{first.job_prefix}/gtseg", data=data)
                assert done.figures.labeled == 2 and done.figures.errors == 0
                built = lines_at(store, f"{first.job_prefix}/gtseg/output.manifest")
                meta = built[0][f"{FIRST}-ref-metadata"]
                assert meta["type"] == "groundtruth/semantic-segmentation"
                assert meta["job-name"] == f"labeling-job/{FIRST}"  # its own case, from the payload path
                assert [e["class-name"] for e in meta["internal-color-map"].values()] == [
                    "BACKGROUND",
                    *DEFAULT_LABELS,
                ]

            # The adjustment job, chained by the first one's name: its lines carry the prior mask
            review = {"jobName": REVIEW, "prior": {"jobName": FIRST}, "workersPerObject": 2,
                      "title": "Fix the street", "description": "Correct the mask."}  # fmt: skip
            launched = launcher.invoke(review)
            assert launched.ok, launched.describe_error()
            assert launched.payload["objectCount"] == 2 and launched.payload["skippedCount"] == 0
            adjusting = AdjustingWorkforce(SimulatedWorkforce(by_uri, ("careful", "average"), seed=4),
                                           {"0": (False, True), "1": (False, False)})  # fmt: skip
            second = GroundTruthEmulator(
                sagemaker=sagemaker, functions=functions, workforce=adjusting, store=store
            ).run(REVIEW)
            assert second.status == "Completed", second.failure_reason
            # the workers were shown the first job's mask (the pre-annotation found its colour map)
            for object_id, initial in adjusting.initial_values.items():
                assert initial and '"labelMappings"' in initial, object_id
            result = finalize_manifest(second.output_manifest_uri, f"{second.job_prefix}/gtseg", data=data)
            assert result.figures.labeled == 2 and result.figures.errors == 0
            final = lines_at(store, f"{second.job_prefix}/gtseg/output.manifest")
            statuses = [line[f"{REVIEW}-ref-metadata"]["adjustment-status"] for line in final]
            assert statuses == ["adjusted", "unadjusted"]
            for line in final:  # the prior's attribute travels on, the new label in built-in form
                assert f"{FIRST}-ref" in line
                assert line[f"{REVIEW}-ref-metadata"]["type"] == "groundtruth/semantic-segmentation"
            summary = json.loads(store.get_bytes(f"{second.job_prefix}/gtseg/summary.json"))
            assert summary["adjustment"] == {"adjusted": 1, "unadjusted": 1}
