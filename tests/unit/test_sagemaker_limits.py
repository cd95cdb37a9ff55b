"""Limits read from botocore's service model, the pattern translation, Ground Truth's own rules."""

from __future__ import annotations

import re
import unicodedata
from decimal import Decimal

import botocore.session
import pytest
from botocore.exceptions import ParamValidationError
from botocore.validate import validate_parameters
from hypothesis import given
from hypothesis import strategies as st

from gtseg.launcher import limits as limits


def model_member(path: str):
    shape = botocore.session.get_session().get_service_model("sagemaker")
    shape = shape.operation_model("CreateLabelingJob").input_shape
    for name in path.split("."):
        shape = shape.member if name == "[]" else shape.members[name]
    return shape


@pytest.mark.parametrize(
    "path",
    [
        "LabelingJobName",
        "LabelAttributeName",
        "RoleArn",
        "HumanTaskConfig.NumberOfHumanWorkersPerDataObject",
        "HumanTaskConfig.TaskTimeLimitInSeconds",
        "HumanTaskConfig.MaxConcurrentTaskCount",
        "HumanTaskConfig.TaskTitle",
        "Tags",
    ],
)
def test_constraints_are_the_service_models_own(path):
    shape = model_member(path)
    found = limits.constraint(path)
    assert (found.min, found.max, found.pattern) == (
        shape.metadata.get("min"),
        shape.metadata.get("max"),
        shape.metadata.get("pattern"),
    )


def test_list_items_and_required_members_and_enums_are_walked():
    assert limits.constraint("HumanTaskConfig.TaskKeywords[]").max == model_member(
        "HumanTaskConfig.TaskKeywords.[]"
    ).metadata.get("max")
    assert limits.constraint("HumanTaskConfig.TaskTitle").required is True
    assert limits.constraint("HumanTaskConfig.TaskAvailabilityLifetimeInSeconds").required is False
    assert (
        "FreeOfPersonallyIdentifiableInformation"
        in limits.constraint("InputConfig.DataAttributes.ContentClassifiers[]").enum
    )
    with pytest.raises(KeyError, match="no member 'Nope'"):
        limits.constraint("Nope")


def test_patterns_are_applied_whole_not_as_a_search():
    # the model's pattern is unanchored: re.search would accept 'ok' inside 'bad_ok'
    assert limits.constraint("LabelingJobName").problems("ok") == []
    assert limits.constraint("LabelingJobName").problems("bad_ok")
    assert limits.constraint("LabelingJobName").problems("-leading")


def test_request_problems_catches_what_botocore_lets_through():
    input_shape = botocore.session.get_session().get_service_model("sagemaker")
    input_shape = input_shape.operation_model("CreateLabelingJob").input_shape
    request = {
        "LabelingJobName": "bad_name",
        "LabelAttributeName": "x" * 200,
        "InputConfig": {"DataSource": {"S3DataSource": {"ManifestS3Uri": "s3://b/m.jsonl"}}},
        "OutputConfig": {"S3OutputPath": "s3://b/out/"},
        "RoleArn": "arn:aws:iam::111122223333:role/R",
        "HumanTaskConfig": {
            "WorkteamArn": "arn:aws:sagemaker:us-east-1:111122223333:workteam/private-crowd/t",
            "UiConfig": {"UiTemplateS3Uri": "s3://b/t.html"},
            "TaskTitle": "t",
            "TaskDescription": "d",
            "NumberOfHumanWorkersPerDataObject": 3,
            "TaskTimeLimitInSeconds": 300,
            "TaskKeywords": ["fine", "not_fine"],
        },
    }
    validate_parameters(request, input_shape)  # botocore: no complaint
    found = limits.request_problems(request)
    by_path: dict[str, list[str]] = {}
    for path, problem in found:
        by_path.setdefault(path, []).append(problem)
    assert sorted(by_path) == ["HumanTaskConfig.TaskKeywords[1]", "LabelAttributeName", "LabelingJobName"]
    assert "must match the pattern" in by_path["LabelingJobName"][0]
    assert any("at most 127 characters (got 200)" in p for p in by_path["LabelAttributeName"])
    assert "must match the pattern" in by_path["HumanTaskConfig.TaskKeywords[1]"][0]


def test_request_problems_reports_missing_unknown_and_wrong_types():
    found = dict(
        limits.request_problems(
            {
                "LabelingJobName": "ok",
                "Surprise": 1,
                "HumanTaskConfig": {"NumberOfHumanWorkersPerDataObject": "3"},
            }
        )
    )
    assert found["RoleArn"] == "is required"
    assert found["Surprise"] == "is not a member of this structure"
    assert found["HumanTaskConfig.NumberOfHumanWorkersPerDataObject"] == "must be an integer, got str"
    assert found["HumanTaskConfig.TaskTitle"] == "is required"


def test_botocore_rejects_what_request_problems_also_rejects():
    input_shape = botocore.session.get_session().get_service_model("sagemaker")
    input_shape = input_shape.operation_model("CreateLabelingJob").input_shape
    with pytest.raises(ParamValidationError):
        validate_parameters({"LabelingJobName": "ok"}, input_shape)
    assert limits.request_problems({"LabelingJobName": "ok"})


# --------------------------------------------------------------------------- \p{..} patterns


def test_unicode_property_pattern_matches_letters_spaces_numbers_and_the_listed_symbols():
    tag_key = limits.constraint("Tags[].Key")
    assert "\\p{L}" in tag_key.pattern
    for good in ("project", "Kostenstelle Ä", "日本語", "a_b.c:d/e=f+g-h@i", "٣"):
        assert tag_key.problems(good) == [], good
    for bad in ("hash#tag", "semi;colon", "emoji😀", "tab\t"):
        assert tag_key.problems(bad), bad


@given(st.characters())
def test_translated_property_class_agrees_with_unicodedata(char):
    pattern = re.compile(limits.to_python_pattern(r"[\p{L}\p{Z}\p{N}_.:/=+\-@]"))
    category = unicodedata.category(char)
    expected = category[0] in "LZN" or char in "_.:/=+-@"
    assert bool(pattern.fullmatch(char)) == expected


def test_patterns_without_properties_are_unchanged():
    assert limits.to_python_pattern("[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}") == "[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}"
    assert re.fullmatch(limits.to_python_pattern(r"x\p{Lu}"), "xÄ")
    assert not re.fullmatch(limits.to_python_pattern(r"x\p{Lu}"), "xä")


# --------------------------------------------------------------------------- Ground Truth rules


def test_label_attribute_rules():
    assert limits.label_attribute_problems("job-ref") == []
    assert "must end with '-ref'" in limits.label_attribute_problems("job")[0]
    assert any("-metadata" in p for p in limits.label_attribute_problems("job-metadata"))
    assert "must differ from the prior" in limits.label_attribute_problems("a-ref", prior="A-REF")[0]
    assert limits.label_attribute_problems("b-ref", prior="a-ref") == []


@pytest.mark.parametrize(("seconds", "ok"), [(29, False), (30, True), (28_800, True), (28_801, False)])
def test_task_time_limit_30_seconds_to_8_hours(seconds, ok):
    assert (limits.task_time_limit_problem(seconds) is None) is ok


def test_task_availability_depends_on_the_workforce():
    assert limits.task_availability_problem(59, public=False) is not None
    assert limits.task_availability_problem(43_200, public=True) is None
    assert "12 hours" in limits.task_availability_problem(43_201, public=True)
    assert limits.task_availability_problem(43_201, public=False) is None
    assert "30 days" in limits.task_availability_problem(30 * 86_400 + 1, public=False)


@pytest.mark.parametrize(
    ("price", "amount"),
    [
        (0.84, {"Dollars": 0, "Cents": 84, "TenthFractionsOfACent": 0}),
        ("0.96", {"Dollars": 0, "Cents": 96, "TenthFractionsOfACent": 0}),
        (Decimal("1.080"), {"Dollars": 1, "Cents": 8, "TenthFractionsOfACent": 0}),
        (1.2, {"Dollars": 1, "Cents": 20, "TenthFractionsOfACent": 0}),
        (0.012, {"Dollars": 0, "Cents": 1, "TenthFractionsOfACent": 2}),
    ],
)
def test_price_to_amount(price, amount):
    assert limits.price_to_amount(price) == amount


@given(st.integers(min_value=0, max_value=2999))
def test_price_to_amount_round_trips_every_tenth_of_a_cent(tenths):
    price = Decimal(tenths) / 1000
    amount = limits.price_to_amount(price)
    assert amount["Dollars"] * 1000 + amount["Cents"] * 10 + amount["TenthFractionsOfACent"] == tenths
    for member, value in amount.items():
        problems = limits.constraint(
            f"HumanTaskConfig.PublicWorkforceTaskPrice.AmountInUsd.{member}"
        ).problems(value)
        assert problems == [] or tenths >= 3000


def test_public_price_list():
    for price in (0.84, 0.96, 1.08, 1.20, "1.2"):
        assert limits.public_price_problem(price) is None
    for price in (0.83, 1.5, 0, "cheap"):
        assert limits.public_price_problem(price) is not None


def test_object_count_quota():
    assert "no images" in limits.object_count_problem(0)
    assert limits.object_count_problem(1) is None
    assert limits.object_count_problem(20_000) is None
    assert "20001 data objects is over" in limits.object_count_problem(20_001)


def test_public_workteam_and_classifiers():
    arn = limits.public_workteam_arn("us-west-2")
    assert arn == "arn:aws:sagemaker:us-west-2:394669845002:workteam/public-crowd/default"
    assert limits.is_public_workteam(arn)
    assert limits.constraint("HumanTaskConfig.WorkteamArn").problems(arn) == []
    assert limits.missing_public_classifiers(["FreeOfAdultContent"]) == [
        "FreeOfPersonallyIdentifiableInformation"
    ]
