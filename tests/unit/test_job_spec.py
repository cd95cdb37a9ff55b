"""The job spec: field names, one failing case per rule, defaults, the hash, the published schema."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gtseg.launcher import limits as limits
from gtseg.launcher.spec import SpecError, json_schema, json_schema_text, parse_job_spec

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = ROOT / "docs" / "job-spec.schema.json"
EXAMPLE_PATH = ROOT / "docs" / "examples" / "job-spec.json"
EXAMPLE_SPECS = sorted((ROOT / "docs" / "examples").glob("job-spec*.json"))
GOLD = {"manifestUri": "s3://my-images/gold/gold.manifest"}
WORKTEAM = "arn:aws:sagemaker:us-east-1:111122223333:workteam/private-crowd/team"
PII = "FreeOfPersonallyIdentifiableInformation"


def spec(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "jobName": "cats-and-dogs",
        "labels": ["cat", "dog"],
        "images": {"prefix": "s3://my-images/pets/"},
        "workforce": {"workteamArn": WORKTEAM},
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def problems_of(data: Any) -> list[str]:
    with pytest.raises(SpecError) as caught:
        parse_job_spec(data)
    return caught.value.problems


def test_minimal_spec_gets_the_documented_defaults():
    parsed = parse_job_spec(spec())
    assert parsed.effective_label_attribute_name == "cats-and-dogs-ref"
    assert parsed.workers_per_object == 3
    assert parsed.task_time_limit_seconds == 600
    assert parsed.keywords == ["image", "segmentation"]
    assert parsed.is_public is False


def test_every_public_field_name_is_accepted():
    full = spec(
        labels=None,
        labelCategoryConfigUri="s3://my-images/labels.json",
        workforce={"public": {"priceInUsd": 0.84, "contentClassifiers": [PII]}},
        workersPerObject=5,
        taskTimeLimitSeconds=300,
        taskAvailabilitySeconds=3600,
        maxConcurrentTasks=10,
        title="Pets",
        description="Paint the pets",
        keywords=["pets"],
        instructions={"shortInstruction": "a", "fullInstruction": "b"},
        labelAttributeName="pets-ref",
        stoppingConditions={"maxHumanLabeledObjectCount": 5, "maxPercentageOfInputDatasetLabeled": 50},
        outputKmsKeyId="alias/out",
        tags={"team": "vision"},
    )
    full["$schema"] = "../job-spec.schema.json"
    parsed = parse_job_spec(full)
    assert parsed.label_category_config_uri == "s3://my-images/labels.json"
    assert parsed.is_public and parsed.workforce.public.content_classifiers == [PII]
    adjustment = parse_job_spec(
        spec(
            images=None, prior={"manifestUri": "s3://out/x/output.manifest", "labelAttributeName": "old-ref"}
        )
    )
    assert adjustment.prior.label_attribute_name == "old-ref"


# One failing case per rule: (change to a valid spec, field named in the message, words in it).
RULES = [
    ({"jobName": "bad_name"}, "jobName", "must match the pattern"),
    ({"jobName": "x" * 64}, "jobName", "at most 63 characters"),
    ({"jobName": "-leading"}, "jobName", "must match the pattern"),
    ({"labels": []}, "labels", "at least one label"),
    ({"labels": ["cat", "cat"]}, "labels", "duplicate label"),
    ({"labels": ["x" * 257]}, "labels", "the limit is 256"),
    ({"labels": [f"l{i}" for i in range(256)]}, "labels", "at most 255"),
    ({"labels": ["BACKGROUND"]}, "labels", "reserved"),
    ({"labelCategoryConfigUri": "s3://my-images/l.json"}, "spec", "not both"),
    ({"labels": None}, "spec", "give 'labels' or 'labelCategoryConfigUri'"),
    ({"labelCategoryConfigUri": "http:/nope", "labels": None}, "labelCategoryConfigUri", "not an s3://"),
    ({"images": None}, "spec", "give 'images'"),
    ({"images": {}}, "images", "exactly one of 'prefix' or 'manifestUri'"),
    ({"images": {"prefix": "s3://abc/", "manifestUri": "s3://abc/m"}}, "images", "exactly one"),
    ({"images": {"prefix": "/local/dir"}}, "images.prefix", "not an s3://"),
    ({"images": {"manifestUri": "s3://abc"}}, "images.manifestUri", "not an s3://"),
    ({"workforce": {}}, "workforce", "exactly one of 'workteamArn' or 'public'"),
    ({"workforce": {"workteamArn": "arn:aws:iam::1:role/x"}}, "workforce.workteamArn", "pattern"),
    ({"workforce": {"public": {"priceInUsd": 0.9, "contentClassifiers": [PII]}}}, "priceInUsd", "0.84"),
    (
        {"workforce": {"public": {"priceInUsd": 0.84}}},
        "workforce.public",
        f"contentClassifiers must include {PII}",
    ),
    (
        {"workforce": {"public": {"priceInUsd": 0.84, "contentClassifiers": ["Clean"]}}},
        "contentClassifiers",
        "",
    ),
    ({"workersPerObject": 0}, "workersPerObject", "at least 1"),
    ({"workersPerObject": 10}, "workersPerObject", "at most 9"),
    ({"taskTimeLimitSeconds": 29}, "taskTimeLimitSeconds", "at least 30"),
    ({"taskTimeLimitSeconds": 28_801}, "taskTimeLimitSeconds", "8 hours"),
    ({"taskAvailabilitySeconds": 59}, "spec", "taskAvailabilitySeconds must be at least 60"),
    ({"taskAvailabilitySeconds": 30 * 86_400 + 1}, "spec", "30 days"),
    ({"maxConcurrentTasks": 0}, "maxConcurrentTasks", "at least 1"),
    ({"maxConcurrentTasks": 5001}, "maxConcurrentTasks", "at most 5000"),
    ({"title": ""}, "title", "at least 1"),
    ({"title": "t" * 129}, "title", "at most 128"),
    ({"description": ""}, "description", "at least 1"),
    ({"description": "d" * 256}, "description", "at most 255"),
    ({"keywords": []}, "keywords", "at least 1 items"),
    ({"keywords": ["a", "b", "c", "d", "e", "f"]}, "keywords", "at most 5 items"),
    ({"keywords": ["under_score"]}, "keywords", "keyword 0"),
    ({"keywords": ["k" * 31]}, "keywords", "at most 30"),
    ({"labelAttributeName": "no-suffix"}, "spec", "must end with '-ref'"),
    ({"labelAttributeName": "bad name-ref"}, "labelAttributeName", "pattern"),
    ({"stoppingConditions": {"maxHumanLabeledObjectCount": 0}}, "maxHumanLabeledObjectCount", "at least 1"),
    ({"stoppingConditions": {"maxPercentageOfInputDatasetLabeled": 101}}, "maxPercentage", "at most 100"),
    ({"outputKmsKeyId": "key with spaces"}, "outputKmsKeyId", "pattern"),
    ({"tags": {"aws:owner": "me"}}, "tags", "reserved"),
    ({"tags": {"gtseg:spec-sha256": "x"}}, "tags", "reserved"),
    ({"tags": {"bad#key": "v"}}, "tags", "pattern"),
    ({"tags": {"k": "v" * 257}}, "tags", "at most 256"),
    ({"prior": {"manifestUri": "s3://out/m"}}, "spec", "remove 'images'"),
    ({"images": None, "prior": {}}, "prior", "exactly one of 'manifestUri' or 'jobName'"),
    ({"images": None, "prior": {"jobName": "bad_job"}}, "prior.jobName", "pattern"),
    (
        {
            "images": None,
            "labelAttributeName": "old-ref",
            "prior": {"manifestUri": "s3://out/m", "labelAttributeName": "old-ref"},
        },
        "spec",
        "must differ from the prior",
    ),
    ({"gold": {}}, "gold.manifestUri", "Field required"),
    ({"gold": {"manifestUri": "not-s3"}}, "gold.manifestUri", "not an s3://"),
    ({"gold": {**GOLD, "count": 0}}, "gold.count", "greater than or equal to 1"),
    ({"gold": {**GOLD, "count": 20_001}}, "gold.count", "less than or equal to 20000"),
    ({"gold": {**GOLD, "labelAttributeName": "bad name-ref"}}, "gold.labelAttributeName", "pattern"),
    ({"gold": {**GOLD, "share": 0.1}}, "gold.share", "unknown field"),
    (
        {"images": None, "prior": {"manifestUri": "s3://out/m"}, "gold": GOLD},
        "spec",
        "'gold' is for new-image jobs ('images'); an adjustment job ('prior') cannot take gold objects",
    ),
    ({"tittle": "typo"}, "tittle", "unknown field"),
    ({"images": {"prefix": "s3://abc/", "recursive": True}}, "images.recursive", "unknown field"),
]


@pytest.mark.parametrize(
    ("change", "field", "words"), RULES, ids=[f"{r[1]}-{i}" for i, r in enumerate(RULES)]
)
def test_each_rule_fails_with_a_message_naming_the_field(change, field, words):
    data = spec()
    for key, value in change.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    problems = problems_of(data)
    assert any(field in p.split(": ", 1)[0] for p in problems), problems
    assert any(words in p for p in problems), problems


def test_gold_is_optional_and_its_defaults_are_documented():
    assert parse_job_spec(spec()).gold is None
    gold = parse_job_spec(spec(gold=GOLD)).gold
    assert gold is not None
    assert (gold.manifest_uri, gold.label_attribute_name, gold.count) == (GOLD["manifestUri"], None, None)
    named = parse_job_spec(spec(gold={**GOLD, "labelAttributeName": "truth-ref", "count": 25})).gold
    assert named is not None and (named.label_attribute_name, named.count) == ("truth-ref", 25)


def test_a_spec_without_gold_keeps_the_hash_it_had_before_gold_existed():
    # canonical_json leaves an absent 'gold' out, so jobs launched earlier still relaunch idempotently
    assert "gold" not in json.loads(parse_job_spec(spec()).canonical_json())
    plain = parse_job_spec(spec()).sha256()
    with_gold = parse_job_spec(spec(gold=GOLD)).sha256()
    assert with_gold != plain
    assert parse_job_spec(spec(gold={**GOLD, "count": 3})).sha256() != with_gold
    assert parse_job_spec(spec(gold={**GOLD, "count": None})).sha256() == with_gold


def test_not_json_and_not_an_object():
    assert problems_of("{nope")[0].startswith("spec: not valid JSON")
    assert problems_of([1, 2])[0] == "spec: must be a JSON object, got list"
    assert parse_job_spec(json.dumps(spec())).job_name == "cats-and-dogs"


def test_hash_is_stable_for_equal_specs_and_changes_with_any_field():
    a = parse_job_spec(spec())
    b = parse_job_spec(dict(reversed(list(spec(workersPerObject=3, **{"$schema": "x"}).items()))))
    assert a.sha256() == b.sha256()
    public = {"public": {"priceInUsd": 0.84, "contentClassifiers": [PII]}}
    same_price = {"public": {"priceInUsd": "0.840", "contentClassifiers": [PII, PII]}}
    assert (
        parse_job_spec(spec(workforce=public)).sha256() == parse_job_spec(spec(workforce=same_price)).sha256()
    )
    assert parse_job_spec(spec(title="Other")).sha256() != a.sha256()
    assert parse_job_spec(spec(labels=["dog", "cat"])).sha256() != a.sha256()


@given(
    st.dictionaries(
        st.sampled_from(
            ["jobName", "labels", "images", "workforce", "workersPerObject", "tags", "prior", "x"]
        ),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
            lambda inner: (
                st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3)
            ),
            max_leaves=8,
        ),
    )
)
def test_arbitrary_input_parses_or_raises_spec_error_only(data):
    try:
        parse_job_spec(data)
    except SpecError as exc:
        assert exc.problems and all(isinstance(p, str) and ": " in p for p in exc.problems)


@given(st.text(max_size=70))
def test_job_name_is_accepted_exactly_when_the_model_pattern_and_length_allow(name):
    constraint = limits.constraint("LabelingJobName")
    allowed = 1 <= len(name) <= 63 and re.fullmatch(constraint.pattern, name) is not None
    try:
        parse_job_spec(spec(jobName=name))
    except SpecError as exc:
        assert not allowed, exc.problems
    else:
        assert allowed


def test_published_schema_is_up_to_date():
    assert SCHEMA_PATH.read_text(encoding="utf-8") == json_schema_text(), (
        "docs/job-spec.schema.json is stale: run  .venv/bin/python -m gtseg.launcher.spec > docs/job-spec.schema.json"
    )


@pytest.mark.parametrize("path", EXAMPLE_SPECS, ids=lambda p: p.name)
def test_example_specs_parse_and_match_the_schema(path):
    assert EXAMPLE_PATH in EXAMPLE_SPECS
    example = json.loads(path.read_text(encoding="utf-8"))
    parse_job_spec(example)
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(example, json_schema())


def test_schema_rejects_what_the_model_rejects():
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(json_schema())
    assert validator.is_valid(spec())
    assert not validator.is_valid(spec(jobName="bad_name"))
    assert not validator.is_valid(spec(tittle="typo"))
    assert not validator.is_valid(spec(images={"prefix": "s3://abc/", "manifestUri": "s3://abc/m"}))
    assert not validator.is_valid(spec(workersPerObject=10))
    assert validator.is_valid(spec(gold={**GOLD, "count": 5}))
    assert not validator.is_valid(spec(gold={**GOLD, "count": 0}))
    assert not validator.is_valid(spec(gold={"count": 5}))
    broken = copy.deepcopy(spec())
    broken["keywords"] = ["under_score"]
    assert not validator.is_valid(broken)
