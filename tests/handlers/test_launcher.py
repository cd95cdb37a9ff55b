"""The launcher handler in-process: moto S3 for the data, a fake SageMaker client (moto has no
labeling jobs) and botocore's Stubber, which checks the request against the service model."""

from __future__ import annotations

import copy
import json
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from botocore.validate import validate_parameters
from hypothesis import given
from hypothesis import strategies as st
from moto import mock_aws

from gtseg.aws.s3 import S3Store
from gtseg.core.gold import GOLD_KEY, gold_reference
from gtseg.core.labels import ClassMap, LabelCategoryConfig
from gtseg.core.manifest import PRIOR_LABEL_ATTRIBUTE_KEY
from gtseg.handlers import launcher as handler_module
from gtseg.launcher import limits as sagemaker_limits
from gtseg.launcher.errors import LaunchConfigError, LaunchConflictError
from gtseg.launcher.gold import gold_slots, mix_gold
from gtseg.launcher.launch import (
    GOLD_COUNT_TAG,
    OBJECT_COUNT_TAG,
    SPEC_HASH_TAG,
    build_request,
    launch,
    plan_launch,
)
from gtseg.launcher.settings import LauncherSettings
from gtseg.launcher.spec import SpecError, parse_job_spec

REGION = "eu-west-1"
ACCOUNT = "111122223333"
DATA_BUCKET = "gtseg-data"
OUTPUT_BUCKET = "gtseg-output"
IMAGES_BUCKET = "my-images"
WORKTEAM = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:workteam/private-crowd/team-a"
ENV = {
    "GROUND_TRUTH_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/GroundTruthExecution",
    "PRE_ANNOTATION_FUNCTION_ARN": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:gtseg-pre",
    "CONSOLIDATION_FUNCTION_ARN": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:gtseg-acs",
    "WORKER_TEMPLATE_URI": f"s3://{DATA_BUCKET}/ui/semantic-segmentation.liquid.html",
    "DATA_BUCKET": DATA_BUCKET,
    "OUTPUT_BUCKET": OUTPUT_BUCKET,
}


class FakeSageMaker:
    """Labeling jobs in memory, with the service's error codes; requests validated like botocore."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.created: list[dict[str, Any]] = []
        self.hidden_once: set[str] = set()  # names describe pretends not to see once (a race)
        self._shape = (
            boto3.client("sagemaker", region_name=REGION)
            .meta.service_model.operation_model("CreateLabelingJob")
            .input_shape
        )

    @staticmethod
    def _error(code: str, message: str, operation: str) -> ClientError:
        return ClientError({"Error": {"Code": code, "Message": message}}, operation)

    def describe_labeling_job(self, *, LabelingJobName: str) -> dict[str, Any]:
        key = LabelingJobName.lower()
        if key in self.hidden_once:
            self.hidden_once.discard(key)
            raise self._error("ResourceNotFound", "Could not find labeling job", "DescribeLabelingJob")
        if key not in self.jobs:
            raise self._error("ResourceNotFound", "Could not find labeling job", "DescribeLabelingJob")
        return copy.deepcopy(self.jobs[key])

    def create_labeling_job(self, **request: Any) -> dict[str, Any]:
        validate_parameters(request, self._shape)  # raises ParamValidationError like a real client
        key = request["LabelingJobName"].lower()
        if key in self.jobs:
            raise self._error("ResourceInUse", "Job name already in use", "CreateLabelingJob")
        arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:labeling-job/{key}"
        self.created.append(copy.deepcopy(request))
        self.jobs[key] = {
            **copy.deepcopy(request),
            "LabelingJobArn": arn,
            "LabelingJobStatus": "InProgress",
            "LabelCounters": {"TotalLabeled": 0, "Unlabeled": 1},
        }
        return {"LabelingJobArn": arn}


@pytest.fixture
def aws(monkeypatch):
    yield from launcher_in_moto(monkeypatch, ENV)


def launcher_in_moto(monkeypatch, env: dict[str, str]):
    """The launcher handler's environment set to ``env``, its S3 client on moto's buckets and its
    SageMaker client a FakeSageMaker: yields (s3, sagemaker), then resets the handler's clients."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name in ("DEFAULT_WORKTEAM_ARN", "OUTPUT_KMS_KEY_ID"):
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        for bucket in (DATA_BUCKET, OUTPUT_BUCKET, IMAGES_BUCKET):
            s3.create_bucket(Bucket=bucket)
        sagemaker = FakeSageMaker()
        handler_module.CLIENTS.store = S3Store(client=s3)
        handler_module.CLIENTS.sagemaker = sagemaker
        yield s3, sagemaker
        handler_module.CLIENTS.__init__()


def put(s3, uri: str, body: bytes | str = b"x") -> None:
    bucket, key = uri[5:].split("/", 1)
    s3.put_object(Bucket=bucket, Key=key, Body=body.encode() if isinstance(body, str) else body)


def read(s3, uri: str) -> str:
    bucket, key = uri[5:].split("/", 1)
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()


def keys(s3, bucket: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


def spec(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "jobName": "street-scenes-1",
        "labels": ["road", "car", "person"],
        "images": {"prefix": f"s3://{IMAGES_BUCKET}/batch-1/"},
        "workforce": {"workteamArn": WORKTEAM},
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def settings() -> LauncherSettings:
    return LauncherSettings.from_mapping(ENV)


# --------------------------------------------------------------------------- images from a prefix


def test_prefix_with_one_image_writes_manifest_and_labels_then_creates_the_job(aws):
    s3, sagemaker = aws
    put(s3, f"s3://{IMAGES_BUCKET}/batch-1/a.JPG")
    put(s3, f"s3://{IMAGES_BUCKET}/batch-1/notes.txt")  # not an image: left out
    put(s3, f"s3://{IMAGES_BUCKET}/batch-2/b.png")  # outside the prefix

    result = handler_module.handler(spec(), None)

    assert result["objectCount"] == 1
    assert result["created"] is True
    assert result["jobArn"].endswith("labeling-job/street-scenes-1")
    assert result["manifestUri"] == f"s3://{DATA_BUCKET}/jobs/street-scenes-1/manifest.jsonl"
    assert (
        result["labelCategoryConfigUri"] == f"s3://{DATA_BUCKET}/jobs/street-scenes-1/label-categories.json"
    )
    lines = [json.loads(line) for line in read(s3, result["manifestUri"]).splitlines()]
    assert lines == [{"source-ref": f"s3://{IMAGES_BUCKET}/batch-1/a.JPG"}]
    label_file = json.loads(read(s3, result["labelCategoryConfigUri"]))
    assert label_file["document-version"] == "2018-11-28"
    assert LabelCategoryConfig.parse(label_file).labels == ("road", "car", "person")

    (request,) = sagemaker.created
    assert request["LabelingJobName"] == "street-scenes-1"
    assert request["LabelAttributeName"] == "street-scenes-1-ref"
    assert request["RoleArn"] == ENV["GROUND_TRUTH_ROLE_ARN"]
    assert request["OutputConfig"] == {"S3OutputPath": f"s3://{OUTPUT_BUCKET}/jobs/"}
    assert request["InputConfig"]["DataSource"]["S3DataSource"]["ManifestS3Uri"] == result["manifestUri"]
    assert request["LabelCategoryConfigS3Uri"] == result["labelCategoryConfigUri"]
    human = request["HumanTaskConfig"]
    assert human["PreHumanTaskLambdaArn"] == ENV["PRE_ANNOTATION_FUNCTION_ARN"]
    assert (
        human["AnnotationConsolidationConfig"]["AnnotationConsolidationLambdaArn"]
        == ENV["CONSOLIDATION_FUNCTION_ARN"]
    )
    assert human["UiConfig"] == {"UiTemplateS3Uri": ENV["WORKER_TEMPLATE_URI"]}
    assert human["WorkteamArn"] == WORKTEAM
    assert human["NumberOfHumanWorkersPerDataObject"] == 3
    assert "PublicWorkforceTaskPrice" not in human
    tags = {t["Key"]: t["Value"] for t in request["Tags"]}
    assert tags[SPEC_HASH_TAG] == parse_job_spec(spec()).sha256()
    assert tags[OBJECT_COUNT_TAG] == "1"


def test_empty_prefix_is_refused_and_nothing_is_written_or_created(aws):
    s3, sagemaker = aws
    put(s3, f"s3://{IMAGES_BUCKET}/batch-1/readme.md")
    with pytest.raises(SpecError, match=r"images\.prefix: no images"):
        handler_module.handler(spec(), None)
    assert sagemaker.created == []
    assert keys(s3, DATA_BUCKET) == []


def test_prefix_over_1000_images_is_listed_across_pages(aws):
    s3, _ = aws
    names = [f"batch-1/img_{i:04d}.jpg" for i in range(1005)]
    for name in names:
        s3.put_object(Bucket=IMAGES_BUCKET, Key=name, Body=b"")
    assert s3.list_objects_v2(Bucket=IMAGES_BUCKET)["IsTruncated"] is True  # really more than one page

    result = handler_module.handler(spec(), None)

    assert result["objectCount"] == 1005
    refs = [json.loads(line)["source-ref"] for line in read(s3, result["manifestUri"]).splitlines()]
    assert refs == [f"s3://{IMAGES_BUCKET}/{name}" for name in names]


def test_count_over_the_object_quota_is_reported(aws, monkeypatch):
    s3, sagemaker = aws
    monkeypatch.setattr(sagemaker_limits, "MAX_DATASET_OBJECTS", 2)
    for i in range(3):
        put(s3, f"s3://{IMAGES_BUCKET}/batch-1/{i}.png")
    with pytest.raises(SpecError, match=r"images\.prefix: 3 data objects is over .* quota of 2"):
        handler_module.handler(spec(), None)
    assert sagemaker.created == []


# --------------------------------------------------------------------------- images from a manifest


def test_manifest_input_keeps_good_lines_and_reports_each_bad_one(aws):
    s3, sagemaker = aws
    manifest = "\n".join(
        [
            json.dumps({"source-ref": f"s3://{IMAGES_BUCKET}/a.jpg", "site": "plant-7"}),
            "{not json",
            json.dumps({"source": "inline text"}),
            json.dumps({"source-ref": f"s3://{IMAGES_BUCKET}/movie.mp4"}),
            "",
            json.dumps({"source-ref": f"s3://{IMAGES_BUCKET}/b.jpeg", "street-scenes-1-ref": "s3://x/y.png"}),
            json.dumps({"source-ref": f"s3://{IMAGES_BUCKET}/c.png", "big": "x" * 110_000}),
            json.dumps({"source-ref": f"s3://{IMAGES_BUCKET}/d.png"}),
        ]
    )
    put(s3, f"s3://{IMAGES_BUCKET}/in.manifest", manifest)

    result = handler_module.handler(spec(images={"manifestUri": f"s3://{IMAGES_BUCKET}/in.manifest"}), None)

    assert result["objectCount"] == 2
    lines = [json.loads(line) for line in read(s3, result["manifestUri"]).splitlines()]
    assert lines == [
        {"source-ref": f"s3://{IMAGES_BUCKET}/a.jpg", "site": "plant-7"},
        {"source-ref": f"s3://{IMAGES_BUCKET}/d.png"},
    ]
    assert result["skippedCount"] == 5
    reasons = "\n".join(result["skipped"])
    assert "line 2: not valid JSON" in reasons
    assert "line 3: has no 'source-ref'" in reasons
    assert "line 4: " in reasons and "not a .jpg/.jpeg/.png" in reasons
    assert "line 6: already has this job's label attribute" in reasons
    assert "line 7: is over Ground Truth's 100 KB" in reasons
    assert len(sagemaker.created) == 1


def test_manifest_lines_whose_own_labels_the_job_does_not_have_are_skipped(aws):
    # The pre-annotation Lambda shows workers a line's own 'labels' first; consolidation maps
    # classes by the job's labels, so a label outside them would be painted and then lost.
    s3, _ = aws
    manifest = "\n".join(
        [
            json.dumps({"source-ref": f"s3://{IMAGES_BUCKET}/a.jpg", "labels": ["car", "road"]}),
            json.dumps({"source-ref": f"s3://{IMAGES_BUCKET}/b.jpg", "labels": [{"label": "lane"}, "car"]}),
            json.dumps({"source-ref": f"s3://{IMAGES_BUCKET}/c.jpg", "labels": ["road", "road"]}),
            json.dumps({"source-ref": f"s3://{IMAGES_BUCKET}/d.jpg"}),
        ]
    )
    put(s3, f"s3://{IMAGES_BUCKET}/in.manifest", manifest)

    result = handler_module.handler(spec(images={"manifestUri": f"s3://{IMAGES_BUCKET}/in.manifest"}), None)

    refs = [json.loads(line)["source-ref"] for line in read(s3, result["manifestUri"]).splitlines()]
    assert refs == [f"s3://{IMAGES_BUCKET}/a.jpg", f"s3://{IMAGES_BUCKET}/d.jpg"]
    reasons = "\n".join(result["skipped"])
    assert "line 2: has 'labels' that are not this job's labels: lane" in reasons
    assert "line 3: has an invalid 'labels' key" in reasons and "duplicate" in reasons
    assert result["skippedCount"] == 2


def test_unreadable_manifest_names_the_field(aws):
    with pytest.raises(SpecError, match=r"images\.manifestUri: cannot read s3://my-images/missing"):
        handler_module.handler(spec(images={"manifestUri": f"s3://{IMAGES_BUCKET}/missing.manifest"}), None)


def test_label_category_file_is_read_checked_and_copied_with_instructions(aws):
    s3, sagemaker = aws
    put(s3, f"s3://{IMAGES_BUCKET}/batch-1/a.jpg")
    put(
        s3, f"s3://{IMAGES_BUCKET}/labels.json", json.dumps({"labels": [{"label": "sky"}, {"label": "tree"}]})
    )
    result = handler_module.handler(
        spec(
            labels=None,
            labelCategoryConfigUri=f"s3://{IMAGES_BUCKET}/labels.json",
            instructions={"shortInstruction": "<p>Paint the sky</p>"},
        ),
        None,
    )
    copied = json.loads(read(s3, result["labelCategoryConfigUri"]))
    assert copied["document-version"] == "2018-11-28"
    assert [entry["label"] for entry in copied["labels"]] == ["sky", "tree"]
    assert copied["instructions"] == {"shortInstruction": "<p>Paint the sky</p>"}
    assert sagemaker.created[0]["LabelCategoryConfigS3Uri"] == result["labelCategoryConfigUri"]


def test_bad_label_category_file_names_the_field(aws):
    s3, sagemaker = aws
    put(s3, f"s3://{IMAGES_BUCKET}/batch-1/a.jpg")
    put(s3, f"s3://{IMAGES_BUCKET}/labels.json", json.dumps({"labels": [{"label": "sky"}, {"label": "sky"}]}))
    with pytest.raises(SpecError, match=r"labelCategoryConfigUri: .*duplicate label 'sky'"):
        handler_module.handler(
            spec(labels=None, labelCategoryConfigUri=f"s3://{IMAGES_BUCKET}/labels.json"), None
        )
    assert sagemaker.created == []


# --------------------------------------------------------------------------- idempotency


def test_relaunching_the_same_spec_returns_the_existing_job(aws):
    s3, sagemaker = aws
    put(s3, f"s3://{IMAGES_BUCKET}/batch-1/a.jpg")
    first = handler_module.handler(spec(), None)
    put(s3, f"s3://{IMAGES_BUCKET}/batch-1/b.jpg")  # new images must not change the running job
    manifest_before = read(s3, first["manifestUri"])

    # Same spec written differently: other key order, explicit defaults.
    again = dict(reversed(list(spec(workersPerObject=3, taskTimeLimitSeconds=600).items())))
    second = handler_module.handler(again, None)

    assert len(sagemaker.created) == 1
    assert second["created"] is False
    assert second["jobArn"] == first["jobArn"]
    assert second["manifestUri"] == first["manifestUri"]
    assert second["objectCount"] == 1
    assert read(s3, first["manifestUri"]) == manifest_before


def test_same_name_with_a_different_spec_is_a_conflict(aws):
    s3, sagemaker = aws
    put(s3, f"s3://{IMAGES_BUCKET}/batch-1/a.jpg")
    handler_module.handler(spec(), None)
    with pytest.raises(
        LaunchConflictError, match=r"jobName: .*'street-scenes-1' already exists .*different spec"
    ):
        handler_module.handler(spec(title="Another title"), None)
    assert len(sagemaker.created) == 1


def test_a_job_not_started_by_gtseg_is_a_conflict(aws):
    _, sagemaker = aws
    sagemaker.jobs["street-scenes-1"] = {
        "LabelingJobName": "street-scenes-1",
        "LabelingJobArn": "arn:aws:sagemaker:eu-west-1:111122223333:labeling-job/street-scenes-1",
        "LabelingJobStatus": "Completed",
        "Tags": [],
    }
    with pytest.raises(LaunchConflictError, match="was not started by gtseg"):
        handler_module.handler(spec(), None)


def test_concurrent_create_of_the_same_spec_returns_that_job(aws):
    s3, sagemaker = aws
    put(s3, f"s3://{IMAGES_BUCKET}/batch-1/a.jpg")
    first = handler_module.handler(spec(), None)
    # A retried invoke racing the first: describe misses the job, create then hits ResourceInUse.
    sagemaker.hidden_once.add("street-scenes-1")
    second = handler_module.handler(spec(), None)
    assert second["jobArn"] == first["jobArn"]
    assert second["created"] is False
    assert len(sagemaker.created) == 1


# --------------------------------------------------------------------------- workforce


def test_public_workforce_sets_price_classifiers_and_the_regional_public_team(aws):
    s3, sagemaker = aws
    put(s3, f"s3://{IMAGES_BUCKET}/batch-1/a.jpg")
    public = {
        "public": {
            "priceInUsd": 1.08,
            "contentClassifiers": ["FreeOfAdultContent", "FreeOfPersonallyIdentifiableInformation"],
        }
    }
    handler_module.handler(spec(workforce=public), None)
    request = sagemaker.created[0]
    human = request["HumanTaskConfig"]
    assert human["WorkteamArn"] == f"arn:aws:sagemaker:{REGION}:394669845002:workteam/public-crowd/default"
    assert human["PublicWorkforceTaskPrice"] == {
        "AmountInUsd": {"Dollars": 1, "Cents": 8, "TenthFractionsOfACent": 0}
    }
    assert sorted(request["InputConfig"]["DataAttributes"]["ContentClassifiers"]) == [
        "FreeOfAdultContent",
        "FreeOfPersonallyIdentifiableInformation",
    ]


@pytest.mark.parametrize(
    ("workforce", "extra", "message"),
    [
        ({"public": {"priceInUsd": 0.84}}, {}, "FreeOfPersonallyIdentifiableInformation"),
        (
            {
                "public": {
                    "priceInUsd": 0.50,
                    "contentClassifiers": ["FreeOfPersonallyIdentifiableInformation"],
                }
            },
            {},
            r"priceInUsd: must be one of .*0\.84, 0\.96, 1\.08, 1\.20",
        ),
        (
            {
                "public": {
                    "priceInUsd": 0.84,
                    "contentClassifiers": ["FreeOfPersonallyIdentifiableInformation"],
                }
            },
            {"taskAvailabilitySeconds": 43_201},
            r"taskAvailabilitySeconds must be at most 43200 seconds for the public workforce",
        ),
        (
            {"workteamArn": f"arn:aws:sagemaker:{REGION}:394669845002:workteam/public-crowd/default"},
            {},
            r"workforce\.workteamArn: that is the public workforce",
        ),
    ],
)
def test_public_workforce_rules(aws, workforce, extra, message):
    _, sagemaker = aws
    with pytest.raises(SpecError, match=message):
        handler_module.handler(spec(workforce=workforce, **extra), None)
    assert sagemaker.created == []


def test_default_workteam_comes_from_the_stack_and_is_required_without_one(aws, monkeypatch):
    s3, sagemaker = aws
    put(s3, f"s3://{IMAGES_BUCKET}/batch-1/a.jpg")
    with pytest.raises(SpecError, match="workforce: required"):
        handler_module.handler(spec(workforce=None), None)
    monkeypatch.setenv("DEFAULT_WORKTEAM_ARN", WORKTEAM)
    monkeypatch.setenv("OUTPUT_KMS_KEY_ID", "alias/gtseg-output")
    handler_module.handler(spec(workforce=None), None)
    assert sagemaker.created[0]["HumanTaskConfig"]["WorkteamArn"] == WORKTEAM
    assert sagemaker.created[0]["OutputConfig"]["KmsKeyId"] == "alias/gtseg-output"


def test_a_workteam_of_another_region_is_refused_before_anything_is_written(aws, monkeypatch):
    # Workteams are regional; the job runs where the stack's Lambdas are (eu-west-1 here).
    s3, sagemaker = aws
    put(s3, f"s3://{IMAGES_BUCKET}/batch-1/a.jpg")
    elsewhere = f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:workteam/private-crowd/team-a"
    with pytest.raises(
        SpecError, match=r"workforce\.workteamArn: the workteam is in us-east-1 but the job runs in eu-west-1"
    ):
        handler_module.handler(spec(workforce={"workteamArn": elsewhere}), None)
    monkeypatch.setenv("DEFAULT_WORKTEAM_ARN", elsewhere)
    with pytest.raises(LaunchConfigError, match=r"DEFAULT_WORKTEAM_ARN: the workteam is in us-east-1"):
        handler_module.handler(spec(workforce=None), None)
    assert sagemaker.created == []
    assert keys(s3, DATA_BUCKET) == []
    # a spec that names its own workteam does not depend on the stack's default
    handler_module.handler(spec(), None)
    assert sagemaker.created[0]["HumanTaskConfig"]["WorkteamArn"] == WORKTEAM


# --------------------------------------------------------------------------- settings


def test_missing_setting_is_named_and_checked_before_any_aws_call(aws, monkeypatch):
    _, sagemaker = aws
    monkeypatch.delenv("WORKER_TEMPLATE_URI")
    with pytest.raises(LaunchConfigError, match="WORKER_TEMPLATE_URI"):
        handler_module.handler(spec(), None)
    assert sagemaker.created == []


def test_malformed_setting_is_named(aws, monkeypatch):
    monkeypatch.setenv("GROUND_TRUTH_ROLE_ARN", "arn:aws:iam::111122223333:user/someone")
    with pytest.raises(LaunchConfigError, match=r"GROUND_TRUTH_ROLE_ARN must match the pattern"):
        handler_module.handler(spec(), None)


# --------------------------------------------------------------------------- adjustment jobs


def prior_line(name: str, labels: list[str], lan: str = "first-pass-ref") -> dict[str, Any]:
    class_map = ClassMap.from_labels(labels)
    return {
        "source-ref": f"s3://{IMAGES_BUCKET}/{name}",
        lan: f"s3://{OUTPUT_BUCKET}/jobs/first-pass/annotations/consolidated-annotation/output/{name}.png",
        f"{lan}-metadata": {
            "internal-color-map": class_map.internal_color_map(),
            "type": "groundtruth/semantic-segmentation",
            "job-name": "labeling-job/first-pass",
        },
    }


def write_prior_manifest(s3) -> str:
    uri = f"s3://{OUTPUT_BUCKET}/jobs/first-pass/manifests/output/output.manifest"
    lines = [
        prior_line("a.jpg", ["road", "car"]),
        {
            "source-ref": f"s3://{IMAGES_BUCKET}/b.jpg",
            "first-pass-ref-metadata": {"failure-reason": "expired"},
        },
        prior_line("c.jpg", ["road", "car", "tram"]),
        prior_line("d.jpg", ["road", "car"]),
    ]
    put(s3, uri, "\n".join(json.dumps(line) for line in lines))
    return uri


def test_adjustment_job_copies_prior_lines_and_names_the_prior_attribute(aws):
    s3, sagemaker = aws
    uri = write_prior_manifest(s3)
    result = handler_module.handler(
        spec(jobName="review-1", labels=None, images=None, prior={"manifestUri": uri}), None
    )
    lines = [json.loads(line) for line in read(s3, result["manifestUri"]).splitlines()]
    assert [line["source-ref"].rsplit("/", 1)[1] for line in lines] == ["a.jpg", "d.jpg"]
    for line in lines:
        assert line[PRIOR_LABEL_ATTRIBUTE_KEY] == "first-pass-ref"
        assert line["first-pass-ref-metadata"]["internal-color-map"]["1"]["class-name"] == "road"
    # labels came from the prior colour map, so the prior classes keep their names
    assert LabelCategoryConfig.parse(read(s3, result["labelCategoryConfigUri"])).labels == ("road", "car")
    reasons = "\n".join(result["skipped"])
    assert "line 2: has no prior mask 'first-pass-ref'" in reasons
    assert "line 3: prior mask uses labels not in this job's label categories: tram" in reasons
    assert sagemaker.created[0]["LabelAttributeName"] == "review-1-ref"


def test_adjustment_job_needs_a_label_attribute_different_from_the_prior(aws):
    s3, sagemaker = aws
    uri = write_prior_manifest(s3)
    with pytest.raises(
        SpecError, match=r"labelAttributeName .*must differ from the prior .*'first-pass-ref'"
    ):
        handler_module.handler(
            spec(labels=None, images=None, labelAttributeName="first-pass-ref", prior={"manifestUri": uri}),
            None,
        )
    assert sagemaker.created == []


def test_adjustment_job_from_a_prior_job_name(aws):
    s3, sagemaker = aws
    uri = write_prior_manifest(s3)
    sagemaker.jobs["first-pass"] = {
        "LabelingJobName": "first-pass",
        "LabelingJobArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:labeling-job/first-pass",
        "LabelingJobStatus": "Completed",
        "LabelAttributeName": "first-pass-ref",
        "LabelingJobOutput": {"OutputDatasetS3Uri": uri},
    }
    result = handler_module.handler(
        spec(
            jobName="review-2", images=None, labels=["road", "car", "tram"], prior={"jobName": "first-pass"}
        ),
        None,
    )
    assert result["objectCount"] == 3  # tram is a label of this job now, so line 3 is kept
    with pytest.raises(SpecError, match=r"prior\.jobName: no labeling job named 'nope'"):
        handler_module.handler(spec(jobName="review-3", images=None, prior={"jobName": "nope"}), None)


def custom_prior_line(name: str) -> dict[str, Any]:
    """A line of a custom job's output manifest: Ground Truth replaced the metadata gtseg returned."""
    line = prior_line(name, ["road", "car"])
    line["first-pass-ref-metadata"] = {"type": "groundtruth/custom", "job-name": "first-pass",
                                       "human-annotated": "yes", "creation-date": "2024-05-01T12:00:05.000000"}  # fmt: skip
    return line


def write_sidecar(s3, mask_uri: str, labels: list[str], **extra: Any) -> None:
    from gtseg.core.layout import sidecar_ref
    from gtseg.core.sidecar import ConsolidationSidecar, SidecarClass

    class_map = ClassMap.from_labels(labels)
    sidecar = ConsolidationSidecar(
        dataset_object_id="0", job_name="First-Pass", label_attribute_name="first-pass-ref", mask=mask_uri,
        image_confidence=0.8125,
        classes=[SidecarClass(index=i, class_name=n, hex_color=c)
                 for i, (n, c) in enumerate(zip(class_map.names, class_map.colors, strict=True))],
        **extra,
    )  # fmt: skip
    put(s3, sidecar_ref(mask_uri), sidecar.to_json_bytes().decode())


def test_adjustment_job_from_a_custom_job_gets_the_colour_maps_from_the_sidecars(aws):
    s3, _ = aws
    uri = f"s3://{OUTPUT_BUCKET}/jobs/first-pass/manifests/output/output.manifest"
    lines = [custom_prior_line("a.jpg"), custom_prior_line("b.jpg")]
    write_sidecar(s3, lines[0]["first-pass-ref"], ["road", "car"], adjustment_status="adjusted")
    put(s3, uri, "\n".join(json.dumps(line) for line in lines))  # b.jpg has no sidecar
    result = handler_module.handler(
        spec(jobName="review-c", labels=None, images=None, prior={"manifestUri": uri}), None
    )
    (line,) = [json.loads(text) for text in read(s3, result["manifestUri"]).splitlines()]
    meta = line["first-pass-ref-metadata"]
    assert meta["type"] == "groundtruth/semantic-segmentation"
    assert meta["job-name"] == "labeling-job/First-Pass"  # the sidecar's own-case name
    assert meta["adjustment-status"] == "adjusted"
    assert meta["creation-date"] == "2024-05-01T12:00:05.000000"
    assert [e["class-name"] for e in meta["internal-color-map"].values()] == ["BACKGROUND", "road", "car"]
    assert {e["confidence"] for e in meta["internal-color-map"].values()} == {0.8125}
    assert LabelCategoryConfig.parse(read(s3, result["labelCategoryConfigUri"])).labels == ("road", "car")
    (reason,) = result["skipped"]
    assert reason.startswith("line 2: has no first-pass-ref-metadata.internal-color-map: its gtseg sidecar")


def test_a_prior_job_name_prefers_the_finalized_manifest(aws):
    s3, sagemaker = aws
    uri = f"s3://{OUTPUT_BUCKET}/jobs/first-pass/manifests/output/output.manifest"
    put(s3, uri, json.dumps(custom_prior_line("a.jpg")))  # no sidecar: unusable as it is
    finalized = f"s3://{OUTPUT_BUCKET}/jobs/first-pass/gtseg/output.manifest"
    put(s3, finalized, json.dumps(prior_line("a.jpg", ["road", "car"])))
    sagemaker.jobs["first-pass"] = {
        "LabelingJobName": "first-pass",
        "LabelingJobArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:labeling-job/first-pass",
        "LabelingJobStatus": "Completed",
        "LabelAttributeName": "first-pass-ref",
        "LabelingJobOutput": {"OutputDatasetS3Uri": uri},
    }
    result = handler_module.handler(
        spec(jobName="review-f", images=None, labels=["road", "car"], prior={"jobName": "first-pass"}), None
    )
    assert result["objectCount"] == 1 and result["skipped"] == []


# --------------------------------------------------------------------------- botocore's own checks


def test_built_request_passes_botocore_validation_through_a_stubbed_client(aws):
    s3, _ = aws
    put(s3, f"s3://{IMAGES_BUCKET}/batch-1/a.jpg")
    client = boto3.client("sagemaker", region_name=REGION)
    full = spec(
        workforce={
            "public": {"priceInUsd": 0.96, "contentClassifiers": ["FreeOfPersonallyIdentifiableInformation"]}
        },
        taskAvailabilitySeconds=3600,
        maxConcurrentTasks=100,
        keywords=["street", "segmentation"],
        stoppingConditions={"maxHumanLabeledObjectCount": 10, "maxPercentageOfInputDatasetLabeled": 50},
        outputKmsKeyId="arn:aws:kms:eu-west-1:111122223333:key/abcd-1234",
        tags={"project": "streets", "cost-center": "42"},
    )
    expected = plan_launch(spec_copy := copy.deepcopy(full), settings(), S3Store(client=s3), client).request
    arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:labeling-job/street-scenes-1"
    with Stubber(client) as stub:
        stub.add_client_error(
            "describe_labeling_job", service_error_code="ResourceNotFound", http_status_code=404
        )
        stub.add_response("create_labeling_job", {"LabelingJobArn": arn}, expected_params=expected)
        result = launch(spec_copy, settings(), S3Store(client=s3), client)
        stub.assert_no_pending_responses()
    assert result.job_arn == arn
    assert expected["HumanTaskConfig"]["PublicWorkforceTaskPrice"]["AmountInUsd"]["Cents"] == 96
    assert expected["StoppingConditions"] == {
        "MaxHumanLabeledObjectCount": 10,
        "MaxPercentageOfInputDatasetLabeled": 50,
    }


def test_stubbed_client_rejects_a_request_botocore_finds_invalid(aws):
    """The Stubber path really validates: a request with a bad member never reaches the stub."""
    from botocore.exceptions import ParamValidationError

    request = build_request(parse_job_spec(spec()), settings())
    request["HumanTaskConfig"]["NumberOfHumanWorkersPerDataObject"] = "three"
    client = boto3.client("sagemaker", region_name=REGION)
    with Stubber(client) as stub:
        stub.add_response("create_labeling_job", {"LabelingJobArn": "arn:x"})
        with pytest.raises(ParamValidationError):
            client.create_labeling_job(**request)


def test_aws_errors_other_than_not_found_are_not_swallowed(aws):
    client = boto3.client("sagemaker", region_name=REGION)
    with Stubber(client) as stub:
        stub.add_client_error("describe_labeling_job", service_error_code="AccessDeniedException")
        with pytest.raises(ClientError, match="AccessDenied"):
            launch(spec(), settings(), S3Store(client=aws[0]), client)


# --------------------------------------------------------------------------- over HTTP


def test_launch_and_relaunch_against_the_local_sagemaker_standin(aws):
    """A real boto3 client over HTTP to the local emulator's stand-in (which checks requests the
    way the service does): the request is accepted, and relaunch finds the job through its tags."""
    from botocore.config import Config

    from gtseg.cli.status import render_status
    from gtseg.local.sagemaker_standin import SageMakerStandin

    s3, _ = aws
    put(s3, f"s3://{IMAGES_BUCKET}/batch-1/a.jpg")
    with SageMakerStandin(region=REGION) as standin:
        client = boto3.client(
            "sagemaker",
            region_name=REGION,
            endpoint_url=standin.endpoint_url,
            config=Config(retries={"max_attempts": 1}),
        )
        handler_module.CLIENTS.sagemaker = client
        first = handler_module.handler(spec(tags={"project": "streets"}), None)
        second = handler_module.handler(spec(tags={"project": "streets"}), None)
        with pytest.raises(LaunchConflictError):
            handler_module.handler(spec(tags={"project": "other"}), None)
        text = render_status(client.describe_labeling_job(LabelingJobName="street-scenes-1"))
    assert first["created"] is True and second["created"] is False
    assert second["jobArn"] == first["jobArn"]
    assert second["objectCount"] == 1
    assert [op for op, _ in standin.requests].count("CreateLabelingJob") == 1
    assert "job:      street-scenes-1" in text


# --------------------------------------------------------------------------- gold objects

GOLD_LAN = "truth-ref"
GOLD_MANIFEST = f"s3://{DATA_BUCKET}/gold/gold.manifest"


def gold_source_line(
    name: str,
    labels: tuple[str, ...] = ("road", "car"),
    *,
    lan: str = GOLD_LAN,
    mask: str | None = None,
) -> dict[str, Any]:
    """A line of an output manifest whose masks are known to be right."""
    return {
        "source-ref": f"s3://{IMAGES_BUCKET}/checked/{name}.jpg",
        lan: mask or f"s3://{OUTPUT_BUCKET}/jobs/gold-set/masks/{name}.png",
        f"{lan}-metadata": {
            "internal-color-map": ClassMap.from_labels(labels).internal_color_map(),
            "type": "groundtruth/semantic-segmentation",
            "human-annotated": "yes",
            "job-name": "labeling-job/gold-set",
        },
    }


def write_gold(s3, lines: list[Any], *, uri: str = GOLD_MANIFEST, put_masks: bool = True) -> str:
    """The gold manifest (dict lines dumped, str lines as they are) and the masks it names."""
    put(s3, uri, "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines))
    for line in lines:
        mask = line.get(GOLD_LAN) if isinstance(line, dict) else None
        if put_masks and isinstance(mask, str) and mask.startswith(("s3://gtseg-", f"s3://{IMAGES_BUCKET}/")):
            put(s3, mask, b"\x89PNG")
    return uri


def put_images(s3, count: int) -> list[str]:
    uris = [f"s3://{IMAGES_BUCKET}/batch-1/{i:03d}.jpg" for i in range(count)]
    for uri in uris:
        put(s3, uri)
    return uris


def manifest_lines(s3, uri: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in read(s3, uri).splitlines()]


def test_gold_objects_are_mixed_in_evenly_with_only_the_gold_key(aws):
    s3, sagemaker = aws
    images = put_images(s3, 10)
    write_gold(s3, [gold_source_line(n) for n in ("g1", "g2", "g3")])

    result = handler_module.handler(spec(gold={"manifestUri": GOLD_MANIFEST}), None)

    assert (result["objectCount"], result["goldCount"], result["skippedCount"]) == (13, 3, 0)
    lines = manifest_lines(s3, result["manifestUri"])
    positions = [i for i, line in enumerate(lines) if GOLD_KEY in line]
    assert positions == gold_slots(13, 3) == [2, 6, 10]
    # the real lines keep their order; each gold line is the image plus the gold key, nothing else
    assert [line["source-ref"] for line in lines if GOLD_KEY not in line] == images
    for position, name in zip(positions, ("g1", "g2", "g3"), strict=True):
        line = lines[position]
        assert set(line) == {"source-ref", GOLD_KEY}
        assert line["source-ref"] == f"s3://{IMAGES_BUCKET}/checked/{name}.jpg"
        reference = gold_reference(line)
        assert reference is not None
        assert reference.mask == f"s3://{OUTPUT_BUCKET}/jobs/gold-set/masks/{name}.png"
        assert reference.class_map().labels == ("road", "car")
    (request,) = sagemaker.created  # FakeSageMaker validated it against botocore's model
    tags = {t["Key"]: t["Value"] for t in request["Tags"]}
    assert (tags[OBJECT_COUNT_TAG], tags[GOLD_COUNT_TAG]) == ("13", "3")


def test_a_job_without_gold_has_no_gold_tag_and_a_gold_count_of_zero(aws):
    s3, sagemaker = aws
    put_images(s3, 1)
    result = handler_module.handler(spec(), None)
    assert result["goldCount"] == 0
    assert GOLD_COUNT_TAG not in {t["Key"] for t in sagemaker.created[0]["Tags"]}


def test_the_same_gold_spec_gives_the_same_manifest_bytes(aws):
    s3, _ = aws
    put_images(s3, 7)
    write_gold(s3, [gold_source_line(n) for n in ("g1", "g2")])
    store = S3Store(client=s3)
    first = plan_launch(spec(gold={"manifestUri": GOLD_MANIFEST}), settings(), store, FakeSageMaker())
    second = plan_launch(spec(gold={"manifestUri": GOLD_MANIFEST}), settings(), store, FakeSageMaker())
    assert first.manifest_text == second.manifest_text
    assert first.gold_count == 2 and first.object_count == 9
    result = handler_module.handler(spec(gold={"manifestUri": GOLD_MANIFEST}), None)
    assert read(s3, result["manifestUri"]) == first.manifest_text


@given(st.integers(min_value=0, max_value=300), st.integers(min_value=0, max_value=300))
def test_gold_lines_are_spread_so_every_stretch_of_the_manifest_has_one(real, gold):
    mixed = mix_gold([("real", i) for i in range(real)], [("gold", i) for i in range(gold)])
    assert len(mixed) == real + gold
    assert [item for item in mixed if item[0] == "real"] == [("real", i) for i in range(real)]
    assert [item for item in mixed if item[0] == "gold"] == [("gold", i) for i in range(gold)]
    if gold:
        window = -(-(real + gold) // gold)  # ceil(T / G)
        is_gold = [item[0] == "gold" for item in mixed]
        assert all(any(is_gold[i : i + window]) for i in range(len(mixed) - window + 1))


def test_gold_count_takes_the_first_usable_lines_and_refuses_more_than_there_are(aws):
    s3, sagemaker = aws
    put_images(s3, 4)
    write_gold(
        s3,
        [
            gold_source_line("g1"),
            gold_source_line("bad", ("tram",)),
            gold_source_line("g2"),
            gold_source_line("g3"),
        ],
    )

    result = handler_module.handler(spec(gold={"manifestUri": GOLD_MANIFEST, "count": 2}), None)
    gold = [
        line["source-ref"].rsplit("/", 1)[1]
        for line in manifest_lines(s3, result["manifestUri"])
        if GOLD_KEY in line
    ]
    assert gold == ["g1.jpg", "g2.jpg"]
    assert result["goldCount"] == 2 and result["objectCount"] == 6
    assert result["skipped"] == [
        "gold line 2: known mask uses labels not in this job's label categories: tram"
    ]

    with pytest.raises(
        SpecError, match=r"gold\.count: 4 gold objects asked for, but .* has only 3 usable lines \(1 skipped"
    ):
        handler_module.handler(
            spec(jobName="street-scenes-2", gold={"manifestUri": GOLD_MANIFEST, "count": 4}), None
        )
    assert len(sagemaker.created) == 1


def test_unusable_gold_lines_are_skipped_with_their_reasons(aws):
    s3, sagemaker = aws
    images = put_images(s3, 3)
    stale = gold_source_line("stale")
    del stale[GOLD_LAN]  # the gold job failed on it
    twice = gold_source_line("good")
    lines = [
        gold_source_line("good"),
        "{not json",
        {GOLD_LAN: "s3://x/y.png"},
        gold_source_line("elsewhere", mask=f"s3://{IMAGES_BUCKET}/masks/elsewhere.png"),
        gold_source_line("data-root", mask=f"s3://{DATA_BUCKET}/masks/data-root.png"),
        gold_source_line("tram", ("road", "tram")),
        stale,
        gold_source_line("jpeg", mask=f"s3://{OUTPUT_BUCKET}/jobs/gold-set/masks/jpeg.jpg"),
        {**gold_source_line("dup"), "source-ref": images[1]},
        twice,
        gold_source_line("in-data", mask=f"s3://{DATA_BUCKET}/jobs/gold-set/in-data.png"),
    ]
    write_gold(s3, lines)
    missing = gold_source_line("missing")
    put(s3, GOLD_MANIFEST, read(s3, GOLD_MANIFEST) + "\n" + json.dumps(missing))  # its mask is never written

    result = handler_module.handler(spec(gold={"manifestUri": GOLD_MANIFEST}), None)

    gold = [line for line in manifest_lines(s3, result["manifestUri"]) if GOLD_KEY in line]
    assert [gold_reference(line).mask for line in gold] == [
        lines[0][GOLD_LAN],
        f"s3://{DATA_BUCKET}/jobs/gold-set/in-data.png",  # the consolidation role reads jobs/ of both
    ]
    reasons = "\n".join(result["skipped"])
    readable = f"put gold masks under s3://{DATA_BUCKET}/jobs/ or s3://{OUTPUT_BUCKET}/jobs/"
    assert "gold line 2: not valid JSON" in reasons
    assert "gold line 3: has no 'source-ref' string" in reasons
    assert (
        f"gold line 4: known mask s3://{IMAGES_BUCKET}/masks/elsewhere.png is not where the consolidation Lambda can read it: {readable}"
        in reasons
    )
    assert f"gold line 5: known mask s3://{DATA_BUCKET}/masks/data-root.png is not where" in reasons
    assert "gold line 6: known mask uses labels not in this job's label categories: tram" in reasons
    assert f"gold line 7: has no known mask {GOLD_LAN!r}" in reasons
    assert "gold line 8: known mask unusable: " in reasons and "is not a .png" in reasons
    assert f"gold line 9: source-ref {images[1]} is also one of this job's images" in reasons
    assert f"gold line 10: source-ref {twice['source-ref']} is already a gold object (gold line 1)" in reasons
    assert f"gold line 12: known mask {missing[GOLD_LAN]} does not exist" in reasons
    assert result["skippedCount"] == 10
    assert (result["goldCount"], result["objectCount"]) == (2, 5)
    assert len(sagemaker.created) == 1


def test_a_gold_manifest_without_a_usable_line_is_refused_before_anything_is_written(aws):
    s3, sagemaker = aws
    put_images(s3, 2)
    write_gold(s3, [gold_source_line("tram", ("tram",)), gold_source_line("car", ("car", "bus"))])
    with pytest.raises(
        SpecError,
        match=r"gold\.manifestUri: no usable gold object in .* \(2 lines skipped; first skipped: gold line 1: known mask uses labels .*tram",
    ):
        handler_module.handler(spec(gold={"manifestUri": GOLD_MANIFEST}), None)
    assert sagemaker.created == []
    assert keys(s3, DATA_BUCKET) == ["gold/gold.manifest"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("", r"gold\.manifestUri: s3://gtseg-data/gold/gold\.manifest has no lines"),
        ("\n\n", r"gold\.manifestUri: .* has no lines"),
        (
            json.dumps({"source-ref": "s3://my-images/a.jpg"}),
            r"gold: the gold manifest has no segmentation masks",
        ),
    ],
)
def test_an_empty_gold_manifest_is_refused(aws, body, message):
    s3, sagemaker = aws
    put_images(s3, 2)
    put(s3, GOLD_MANIFEST, body)
    with pytest.raises(SpecError, match=message):
        handler_module.handler(spec(gold={"manifestUri": GOLD_MANIFEST}), None)
    assert sagemaker.created == []
    assert keys(s3, DATA_BUCKET) == ["gold/gold.manifest"]


def test_an_unreadable_gold_manifest_names_the_field(aws):
    s3, _ = aws
    put_images(s3, 1)
    with pytest.raises(SpecError, match=r"gold\.manifestUri: cannot read s3://gtseg-data/gold/none"):
        handler_module.handler(spec(gold={"manifestUri": f"s3://{DATA_BUCKET}/gold/none.manifest"}), None)


def test_a_gold_manifest_with_several_mask_attributes_needs_the_attribute_named(aws):
    s3, _ = aws
    put_images(s3, 2)
    both = {**gold_source_line("g1"), **gold_source_line("g1", lan="draft-ref")}
    write_gold(s3, [both])
    with pytest.raises(
        SpecError,
        match=r"gold\.labelAttributeName: the gold manifest has several mask attributes \(draft-ref, truth-ref\); say which",
    ):
        handler_module.handler(spec(gold={"manifestUri": GOLD_MANIFEST}), None)
    result = handler_module.handler(
        spec(gold={"manifestUri": GOLD_MANIFEST, "labelAttributeName": GOLD_LAN}), None
    )
    assert result["goldCount"] == 1


def test_gold_and_prior_together_are_refused_before_any_aws_call(aws):
    s3, sagemaker = aws
    uri = write_prior_manifest(s3)
    with pytest.raises(SpecError, match=r"'gold' is for new-image jobs \('images'\); an adjustment job"):
        handler_module.handler(
            spec(
                jobName="review-1",
                labels=None,
                images=None,
                prior={"manifestUri": uri},
                gold={"manifestUri": GOLD_MANIFEST},
            ),
            None,
        )
    assert sagemaker.created == []


def test_input_lines_that_are_gold_objects_of_an_earlier_job_are_skipped(aws):
    # e.g. the manifest of an earlier gtseg job reused as input: its gold lines must not be
    # scored as gold again without the spec saying so, nor labelled as real images
    s3, _ = aws
    reference = {
        "mask": f"s3://{OUTPUT_BUCKET}/jobs/x/m.png",
        "internal-color-map": ClassMap.from_labels(["road"]).internal_color_map(),
    }
    manifest = "\n".join(
        json.dumps(line)
        for line in [
            {"source-ref": f"s3://{IMAGES_BUCKET}/a.jpg"},
            {"source-ref": f"s3://{IMAGES_BUCKET}/g.jpg", GOLD_KEY: reference},
        ]
    )
    put(s3, f"s3://{IMAGES_BUCKET}/in.manifest", manifest)
    result = handler_module.handler(spec(images={"manifestUri": f"s3://{IMAGES_BUCKET}/in.manifest"}), None)
    assert manifest_lines(s3, result["manifestUri"]) == [{"source-ref": f"s3://{IMAGES_BUCKET}/a.jpg"}]
    assert result["skipped"] == [
        f"line 2: is a gold object of an earlier job (it has {GOLD_KEY!r}); name gold objects in 'gold'"
    ]


def test_gold_objects_count_towards_the_object_quota(aws, monkeypatch):
    s3, sagemaker = aws
    monkeypatch.setattr(sagemaker_limits, "MAX_DATASET_OBJECTS", 3)
    put_images(s3, 2)
    write_gold(s3, [gold_source_line("g1"), gold_source_line("g2")])
    with pytest.raises(
        SpecError,
        match=r"gold: 4 data objects is over .* quota of 3 .*\(2 images and 2 gold objects; set gold\.count lower",
    ):
        handler_module.handler(spec(gold={"manifestUri": GOLD_MANIFEST}), None)
    assert sagemaker.created == []
    result = handler_module.handler(spec(gold={"manifestUri": GOLD_MANIFEST, "count": 1}), None)
    assert (result["objectCount"], result["goldCount"]) == (3, 1)


def test_relaunching_a_gold_spec_returns_the_job_and_its_gold_count(aws):
    s3, sagemaker = aws
    put_images(s3, 5)
    write_gold(s3, [gold_source_line("g1"), gold_source_line("g2")])
    first = handler_module.handler(spec(gold={"manifestUri": GOLD_MANIFEST}), None)
    manifest = read(s3, first["manifestUri"])
    write_gold(s3, [gold_source_line("g3")])  # a changed gold manifest does not change the running job
    second = handler_module.handler(spec(gold={"manifestUri": GOLD_MANIFEST}), None)
    assert second["created"] is False and second["jobArn"] == first["jobArn"]
    assert (second["objectCount"], second["goldCount"]) == (7, 2)
    assert read(s3, first["manifestUri"]) == manifest
    assert len(sagemaker.created) == 1
    with pytest.raises(LaunchConflictError, match="different spec"):
        handler_module.handler(spec(gold={"manifestUri": GOLD_MANIFEST, "count": 1}), None)


def test_a_gold_request_passes_botocore_validation_through_a_stubbed_client(aws):
    s3, _ = aws
    put_images(s3, 3)
    write_gold(s3, [gold_source_line("g1")])
    client = boto3.client("sagemaker", region_name=REGION)
    gold_spec = spec(gold={"manifestUri": GOLD_MANIFEST}, tags={"project": "streets"})
    expected = plan_launch(copy.deepcopy(gold_spec), settings(), S3Store(client=s3), client).request
    arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:labeling-job/street-scenes-1"
    with Stubber(client) as stub:
        stub.add_client_error(
            "describe_labeling_job", service_error_code="ResourceNotFound", http_status_code=404
        )
        stub.add_response("create_labeling_job", {"LabelingJobArn": arn}, expected_params=expected)
        result = launch(gold_spec, settings(), S3Store(client=s3), client)
        stub.assert_no_pending_responses()
    assert (result.object_count, result.gold_count) == (4, 1)
    assert {"Key": GOLD_COUNT_TAG, "Value": "1"} in expected["Tags"]


def test_the_documented_gold_example_is_accepted(aws):
    """docs/examples/gold.manifest and job-spec-gold.json, with the buckets they name."""
    from pathlib import Path

    s3, _ = aws
    examples = Path(__file__).resolve().parents[2] / "docs" / "examples"
    example = json.loads((examples / "job-spec-gold.json").read_text())
    data, output = "gtseg-data-111122223333", "gtseg-output-111122223333"
    for bucket in (data, output):
        s3.create_bucket(Bucket=bucket)
    body = (examples / "gold.manifest").read_text()
    put(s3, example["gold"]["manifestUri"], body)
    for line in body.splitlines():
        put(s3, json.loads(line)["street-scenes-review-ref"], b"\x89PNG")
    put(s3, example["images"]["prefix"] + "0001.jpg")
    stack = LauncherSettings.from_mapping({**ENV, "DATA_BUCKET": data, "OUTPUT_BUCKET": output})
    example["gold"].pop("count")  # the example asks for 40; the example manifest has 2 lines
    plan = plan_launch(example, stack, S3Store(client=s3), FakeSageMaker())
    assert (plan.object_count, plan.gold_count, plan.skipped) == (3, 2, ())
