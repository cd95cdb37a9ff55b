"""The consolidation handler in-process against moto S3: every protocol variant, bad input, retries."""

from __future__ import annotations

import base64
import io
import json

import boto3
import numpy as np
import pytest
from moto import mock_aws
from PIL import Image

from gtseg.core.labels import ClassMap
from gtseg.core.masks import read_class_mask
from gtseg.core.metrics import mean_iou
from gtseg.handlers import consolidation as handler_module
from gtseg.local.simulation import SimulatedCrowd, make_scene, worker_answer

BUCKET = "gt-output"
JOB = "seg-job-001"
JOB_ROOT = f"s3://{BUCKET}/prefix/{JOB}"
PAYLOAD_URI = f"{JOB_ROOT}/annotations/consolidated-annotation/consolidation-request/iteration-1/2024-05-01_12:00:00.json"
LAN = f"{JOB}-ref"


@pytest.fixture
def s3(monkeypatch):
    monkeypatch.setenv("DESCRIBE_LABELING_JOB", "false")
    monkeypatch.delenv("CONSOLIDATION_METHOD", raising=False)
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def put_json(s3, uri: str, value) -> None:
    bucket, key = uri[5:].split("/", 1)
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(value).encode())


def get_bytes(s3, uri: str) -> bytes:
    bucket, key = uri[5:].split("/", 1)
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def event(labels=("road", "sidewalk", "building", "vegetation", "car", "person", "pole"), **overrides):
    base = {
        "version": "2018-10-16",
        "labelingJobArn": f"arn:aws:sagemaker:us-east-1:111122223333:labeling-job/{JOB}",
        "labelCategories": list(labels) if labels is not None else None,
        "labelAttributeName": LAN,
        "roleArn": "arn:aws:iam::111122223333:role/GroundTruthExecutionRole",
        "payload": {"s3Uri": PAYLOAD_URI},
    }
    base.update(overrides)
    return base


def annotation(worker_id: str, content, *, as_string: bool = True, key: str = "content"):
    return {"workerId": worker_id, "annotationData": {key: json.dumps(content) if as_string else content}}


def crowd_item(object_id: str, seed: int, profiles=("careful", "average", "sloppy"), png_mode="RGBA", **kw):
    scene = make_scene(seed, 160, 120)
    masks = SimulatedCrowd(list(profiles), seed=seed).paint(scene)
    anns = [
        annotation(f"private.us-east-1.w{i}", worker_answer(m, scene.class_map, png_mode=png_mode, **kw))
        for i, m in enumerate(masks)
    ]
    item = {
        "datasetObjectId": object_id,
        "dataObject": {"s3Uri": f"s3://in/img{object_id}.jpg"},
        "annotations": anns,
    }
    return item, scene, masks


def test_batch_answers_every_object_in_order_with_builtin_style_content(s3):
    items, scenes = [], []
    for i in range(3):
        item, scene, _ = crowd_item(str(i), seed=10 + i)
        items.append(item)
        scenes.append(scene)
    put_json(s3, PAYLOAD_URI, items)
    response = handler_module.handler(event(), None)

    assert [r["datasetObjectId"] for r in response] == ["0", "1", "2"]
    for entry, scene in zip(response, scenes, strict=True):
        content = entry["consolidatedAnnotation"]["content"]
        uri = content[LAN]
        assert (
            uri
            == f"{JOB_ROOT}/annotations/consolidated-annotation/output/iteration-1/{entry['datasetObjectId']}.png"
        )
        meta = content[f"{LAN}-metadata"]
        assert meta["type"] == "groundtruth/semantic-segmentation"
        assert meta["job-name"] == f"labeling-job/{JOB}"
        assert meta["human-annotated"] == "yes"
        cmap = meta["internal-color-map"]
        assert cmap["0"]["class-name"] == "BACKGROUND" and cmap["0"]["hex-color"] == "#ffffff"
        assert [cmap[str(i)]["class-name"] for i in range(1, 8)] == list(scene.labels)
        confidences = {v["confidence"] for v in cmap.values()}
        assert len(confidences) == 1 and 0.0 < confidences.pop() <= 1.0
        png = get_bytes(s3, uri)
        image = Image.open(io.BytesIO(png))
        assert image.mode == "P" and image.size == (160, 120)
        labels = read_class_mask(png, ClassMap.from_internal_color_map(cmap))
        assert mean_iou(labels, scene.truth, 8) > 0.6
        sidecar = json.loads(get_bytes(s3, uri[:-4] + ".json"))
        assert sidecar["schema"] == "gtseg/consolidation-sidecar@1"
        assert {w["workerId"] for w in sidecar["workers"]} == {f"private.us-east-1.w{i}" for i in range(3)}
        assert sidecar["failure-reason"] is None


def test_retry_writes_identical_bytes_and_response(s3):
    item, _, _ = crowd_item("7", seed=3)
    put_json(s3, PAYLOAD_URI, [item])
    first = handler_module.handler(event(), None)
    uri = first[0]["consolidatedAnnotation"]["content"][LAN]
    png1, side1 = get_bytes(s3, uri), get_bytes(s3, uri[:-4] + ".json")
    second = handler_module.handler(event(), None)
    assert first == second
    assert get_bytes(s3, uri) == png1
    assert get_bytes(s3, uri[:-4] + ".json") == side1


@pytest.mark.parametrize("png_mode", ["RGBA", "RGB", "P"])
def test_every_worker_png_mode_decodes(s3, png_mode):
    item, scene, masks = crowd_item("0", seed=5, profiles=("careful",), png_mode=png_mode)
    put_json(s3, PAYLOAD_URI, [item])
    response = handler_module.handler(event(), None)
    uri = response[0]["consolidatedAnnotation"]["content"][LAN]
    labels = read_class_mask(get_bytes(s3, uri), scene.class_map)
    np.testing.assert_array_equal(labels, masks[0])  # one worker = that worker's mask
    meta = response[0]["consolidatedAnnotation"]["content"][f"{LAN}-metadata"]
    assert meta["internal-color-map"]["1"]["confidence"] == 0.0  # single worker: 0.0 like Ground Truth


def test_corrupt_and_missing_annotations_do_not_fail_the_batch(s3):
    good, _, _ = crowd_item("0", seed=1)
    corrupt_content = {
        "crowd-semantic-segmentation": {"labelMappings": {}, "labeledImage": {"pngImageData": "bm90IGEgcG5n"}}
    }
    good["annotations"].append(annotation("bad-png", corrupt_content))
    good["annotations"].append({"workerId": "no-data", "annotationData": {}})
    good["annotations"].append(annotation("not-json", "x", as_string=False))
    zero = {"datasetObjectId": "1", "dataObject": {"s3Uri": "s3://in/1.jpg"}, "annotations": []}
    all_bad = {
        "datasetObjectId": "2",
        "dataObject": {"s3Uri": "s3://in/2.jpg"},
        "annotations": [annotation("bad-png", corrupt_content)],
    }
    malformed = {"datasetObjectId": "3", "annotations": "not a list"}
    put_json(s3, PAYLOAD_URI, [good, zero, all_bad, malformed])
    response = handler_module.handler(event(), None)

    assert [r["datasetObjectId"] for r in response] == ["0", "1", "2", "3"]
    contents = [r["consolidatedAnnotation"]["content"] for r in response]
    assert LAN in contents[0]
    sidecar = json.loads(get_bytes(s3, contents[0][LAN][:-4] + ".json"))
    assert {r["workerId"] for r in sidecar["rejected"]} == {"bad-png", "no-data", "not-json"}
    for failed in contents[1:]:
        assert LAN not in failed
        assert failed[f"{LAN}-metadata"]["failure-reason"]
    assert "no worker annotated" in contents[1][f"{LAN}-metadata"]["failure-reason"]
    assert "bad-png" in contents[2][f"{LAN}-metadata"]["failure-reason"]
    assert "malformed" in contents[3][f"{LAN}-metadata"]["failure-reason"]


def test_size_mismatch_rejects_only_that_annotation(s3):
    item, scene, _ = crowd_item("0", seed=2, profiles=("careful", "average"))
    small = np.zeros((10, 10), dtype=np.uint8)
    wrong = worker_answer(small, scene.class_map)
    wrong["crowd-semantic-segmentation"]["inputImageProperties"] = {"height": 120, "width": 160}
    item["annotations"].append(annotation("wrong-size", wrong))
    put_json(s3, PAYLOAD_URI, [item])
    content = handler_module.handler(event(), None)[0]["consolidatedAnnotation"]["content"]
    sidecar = json.loads(get_bytes(s3, content[LAN][:-4] + ".json"))
    assert [r["workerId"] for r in sidecar["rejected"]] == ["wrong-size"]
    assert "10x10" in sidecar["rejected"][0]["reason"]
    assert len(sidecar["workers"]) == 2


@pytest.mark.parametrize("spelling", ["s3Uri", "s3uri"])
def test_annotation_stored_in_s3_under_either_spelling(s3, spelling):
    item, scene, masks = crowd_item("0", seed=4, profiles=("careful",))
    content = json.loads(item["annotations"][0]["annotationData"]["content"])
    put_json(s3, f"s3://{BUCKET}/answers/w0.json", content)
    item["annotations"][0]["annotationData"] = {spelling: f"s3://{BUCKET}/answers/w0.json"}
    put_json(s3, PAYLOAD_URI, [item])
    uri = handler_module.handler(event(), None)[0]["consolidatedAnnotation"]["content"][LAN]
    np.testing.assert_array_equal(read_class_mask(get_bytes(s3, uri), scene.class_map), masks[0])


def test_content_as_object_and_custom_element_name(s3):
    item, scene, masks = crowd_item("0", seed=6, profiles=("careful",), element_name="annotatedResult")
    decoded = json.loads(item["annotations"][0]["annotationData"]["content"])
    item["annotations"][0]["annotationData"]["content"] = decoded  # already an object
    put_json(s3, PAYLOAD_URI, [item])
    uri = handler_module.handler(event(), None)[0]["consolidatedAnnotation"]["content"][LAN]
    np.testing.assert_array_equal(read_class_mask(get_bytes(s3, uri), scene.class_map), masks[0])


@pytest.mark.parametrize("labels", [None, [], "missing"])
def test_missing_label_categories_fall_back_to_worker_mappings_in_ui_colour_order(s3, labels):
    item, scene, _ = crowd_item("0", seed=8, only_used_labels=True)
    put_json(s3, PAYLOAD_URI, [item])
    ev = event(labels=labels if labels != "missing" else None)
    if labels == "missing":
        del ev["labelCategories"]
    meta = handler_module.handler(ev, None)[0]["consolidatedAnnotation"]["content"][f"{LAN}-metadata"]
    names = [meta["internal-color-map"][str(i)]["class-name"] for i in range(len(meta["internal-color-map"]))]
    used = [
        name
        for name in scene.labels
        if any(
            name in json.loads(a["annotationData"]["content"])["crowd-semantic-segmentation"]["labelMappings"]
            for a in item["annotations"]
        )
    ]
    assert names == ["BACKGROUND", *used]


def test_label_categories_from_describe_labeling_job(s3, monkeypatch):
    monkeypatch.setenv("DESCRIBE_LABELING_JOB", "true")
    s3.put_object(
        Bucket=BUCKET,
        Key="labels.json",
        Body=json.dumps(
            {
                "document-version": "2018-11-28",
                "labels": [
                    {"label": x}
                    for x in ("road", "sidewalk", "building", "vegetation", "car", "person", "pole")
                ],
            }
        ).encode(),
    )

    class FakeSageMaker:
        def describe_labeling_job(self, LabelingJobName):
            assert LabelingJobName == JOB
            return {"LabelCategoryConfigS3Uri": f"s3://{BUCKET}/labels.json"}

    real_client = boto3.session.Session.client

    def client(self, name, *args, **kwargs):
        return FakeSageMaker() if name == "sagemaker" else real_client(self, name, *args, **kwargs)

    monkeypatch.setattr(boto3.session.Session, "client", client)
    item, scene, _ = crowd_item("0", seed=9, only_used_labels=True)
    put_json(s3, PAYLOAD_URI, [item])
    meta = handler_module.handler(event(labels=None), None)[0]["consolidatedAnnotation"]["content"][
        f"{LAN}-metadata"
    ]
    assert [meta["internal-color-map"][str(i)]["class-name"] for i in range(1, 8)] == list(scene.labels)


OUTPUT_DIR = "annotations/consolidated-annotation/output"


@pytest.mark.parametrize(
    ("output_config", "written_under"),
    [
        # what real events carry: <S3OutputPath>/<job>/annotations
        (f"{JOB_ROOT}/annotations", f"{JOB_ROOT}/{OUTPUT_DIR}"),
        (f"{JOB_ROOT}/annotations/", f"{JOB_ROOT}/{OUTPUT_DIR}"),
        # what earlier notes and the first emulator assumed
        (f"{JOB_ROOT}/{OUTPUT_DIR}", f"{JOB_ROOT}/{OUTPUT_DIR}"),
        # a job whose name contains "annotations" is not cut short
        (f"s3://{BUCKET}/p/annotations-job/annotations", f"s3://{BUCKET}/p/annotations-job/{OUTPUT_DIR}"),
        # any other prefix is taken as the job's folder
        (f"s3://{BUCKET}/custom/out/", f"s3://{BUCKET}/custom/out/{OUTPUT_DIR}"),
        ({"s3Uri": f"{JOB_ROOT}/annotations"}, f"{JOB_ROOT}/{OUTPUT_DIR}"),
    ],
)
def test_masks_go_where_the_built_in_task_puts_them_whatever_the_output_config(
    s3, output_config, written_under
):
    item, _, _ = crowd_item("5", seed=11, profiles=("careful",))
    put_json(s3, PAYLOAD_URI, [item])
    response = handler_module.handler(event(outputConfig=output_config), None)
    uri = response[0]["consolidatedAnnotation"]["content"][LAN]
    assert uri == f"{written_under}/iteration-1/5.png"
    assert get_bytes(s3, uri)[:8] == b"\x89PNG\r\n\x1a\n"


def test_spammer_in_the_crowd_is_excluded_and_reported(s3):
    item, _scene, _masks = crowd_item(
        "0", seed=12, profiles=("careful", "average", "average", "sloppy", "spammer")
    )
    put_json(s3, PAYLOAD_URI, [item])
    uri = handler_module.handler(event(), None)[0]["consolidatedAnnotation"]["content"][LAN]
    sidecar = json.loads(get_bytes(s3, uri[:-4] + ".json"))
    spammer = next(w for w in sidecar["workers"] if w["workerId"].endswith("w4"))
    assert spammer["excluded"] is True and spammer["quality"] < 0.2
    assert sum(w["excluded"] for w in sidecar["workers"]) == 1


def test_invalid_event_raises_a_clear_error(s3):
    with pytest.raises(ValueError, match="payload"):
        handler_module.handler({"labelingJobArn": "x", "labelAttributeName": LAN}, None)


def test_unreadable_payload_raises_so_ground_truth_retries(s3):
    with pytest.raises(RuntimeError, match="cannot read"):
        handler_module.handler(event(), None)


def test_payload_uri_without_ground_truth_layout_writes_beside_it(s3):
    item, _, _ = crowd_item("0", seed=13, profiles=("careful",))
    uri = f"s3://{BUCKET}/somewhere/batch.json"
    put_json(s3, uri, [item])
    out = handler_module.handler(event(payload={"s3Uri": uri}), None)[0]["consolidatedAnnotation"]["content"][
        LAN
    ]
    assert out.startswith(f"s3://{BUCKET}/somewhere/{OUTPUT_DIR}/payload-")


def test_base64_of_mask_is_not_inlined_in_response(s3):
    item, _, _ = crowd_item("0", seed=14)
    put_json(s3, PAYLOAD_URI, [item])
    response = handler_module.handler(event(), None)
    assert len(json.dumps(response)) < 4000
    assert base64.b64encode(b"\x89PNG").decode()[:5] not in json.dumps(response)


def test_opt_in_assume_job_role_reads_and_writes_with_the_job_role(s3, monkeypatch):
    monkeypatch.setenv("ASSUME_JOB_ROLE", "true")
    calls = []
    real_client = boto3.session.Session.client

    def client(self, name, *args, **kwargs):
        made = real_client(self, name, *args, **kwargs)
        if name == "sts":
            original = made.assume_role

            def assume_role(**kw):
                calls.append(kw["RoleArn"])
                return original(**kw)

            made.assume_role = assume_role
        return made

    monkeypatch.setattr(boto3.session.Session, "client", client)
    monkeypatch.setattr(boto3, "client", lambda name, **kw: boto3.session.Session().client(name, **kw))
    handler_module._CLIENTS.clear()
    item, _, _ = crowd_item("0", seed=15, profiles=("careful",))
    put_json(s3, PAYLOAD_URI, [item])
    role = "arn:aws:iam::111122223333:role/GroundTruthExecutionRole"
    response = handler_module.handler(event(roleArn=role), None)
    assert calls == [role]
    assert get_bytes(s3, response[0]["consolidatedAnnotation"]["content"][LAN])[:4] == b"\x89PNG"
    handler_module._CLIENTS.clear()


def test_every_object_is_logged_with_its_id(s3, caplog):
    item, _, _ = crowd_item("42", seed=16, profiles=("careful", "average"))
    put_json(s3, PAYLOAD_URI, [item])
    with caplog.at_level("INFO"):
        handler_module.handler(event(), None)
    per_object = [r for r in caplog.records if r.getMessage() == "object consolidated"]
    assert [r.dataset_object_id for r in per_object] == ["42"]
    assert per_object[0].method == "gtseg" and 0 < per_object[0].confidence <= 1


def test_workers_trusted_on_other_objects_of_the_batch_decide_an_object_without_consensus(s3):
    items = []
    for i in range(4):
        scene = make_scene(40 + i, 160, 120)
        masks = SimulatedCrowd(["careful", "average", "blobs"], seed=i).paint(scene)
        ids = ["good-1", "good-2", "blob-painter"]
        items.append(
            {
                "datasetObjectId": str(i),
                "annotations": [
                    annotation(w, worker_answer(m, scene.class_map)) for w, m in zip(ids, masks, strict=True)
                ],
            }
        )
    scene = make_scene(50, 160, 120)
    masks = SimulatedCrowd(["careful", "blobs", "spammer"], seed=9).paint(scene)
    ids = ["good-1", "blob-painter", "spammer"]
    items.append(
        {
            "datasetObjectId": "4",
            "annotations": [
                annotation(w, worker_answer(m, scene.class_map)) for w, m in zip(ids, masks, strict=True)
            ],
        }
    )
    put_json(s3, PAYLOAD_URI, items)
    response = handler_module.handler(event(), None)
    uri = response[4]["consolidatedAnnotation"]["content"][LAN]
    sidecar = json.loads(get_bytes(s3, uri[:-4] + ".json"))
    assert sidecar["method"] == "gtseg:batch-prior"
    assert [w["workerId"] for w in sidecar["workers"] if not w["excluded"]] == ["good-1"]
    np.testing.assert_array_equal(read_class_mask(get_bytes(s3, uri), scene.class_map), masks[0])
    # and the retry writes the same bytes
    png = get_bytes(s3, uri)
    assert handler_module.handler(event(), None) == response and get_bytes(s3, uri) == png


@pytest.mark.parametrize(
    ("labels", "why"),
    [(None, "no usable label list"), (["road", "road"], "duplicate label"), (["BACKGROUND"], "reserved")],
)
def test_a_batch_without_a_usable_label_list_answers_every_object_with_the_reason(s3, labels, why):
    items = [
        {"datasetObjectId": "0", "annotations": []},
        {"datasetObjectId": "1", "annotations": [{"workerId": "w", "annotationData": {"content": "{}"}}]},
    ]
    put_json(s3, PAYLOAD_URI, items)
    response = handler_module.handler(event(labels=labels), None)
    assert [r["datasetObjectId"] for r in response] == ["0", "1"]
    for entry in response:
        assert why in entry["consolidatedAnnotation"]["content"][f"{LAN}-metadata"]["failure-reason"]


def test_the_jobs_kms_key_from_the_event_wins_over_the_stack_default(s3, monkeypatch):
    monkeypatch.setenv("OUTPUT_KMS_KEY_ID", "stack-key")
    written = []
    real_put = handler_module.S3Store.put_bytes

    def put_bytes(self, uri, data, content_type="application/octet-stream"):
        written.append(self.kms_key_id)
        return real_put(self.__class__(client=self.client), uri, data, content_type)

    monkeypatch.setattr(handler_module.S3Store, "put_bytes", put_bytes)
    item, _, _ = crowd_item("0", seed=17, profiles=("careful",))
    put_json(s3, PAYLOAD_URI, [item])
    handler_module.handler(event(kmsKeyId="job-key"), None)
    assert written and set(written) == {"job-key"}
    written.clear()
    handler_module.handler(event(), None)
    assert set(written) == {"stack-key"}


# --------------------------------------------------------------------------- the batch's workforce


def _named_crowd(object_id: str, seed: int, workers: dict[str, str], extra_line=None):
    """An item whose workers have stable ids (the same people across objects) and profiles."""
    scene = make_scene(seed, 160, 120)
    masks = SimulatedCrowd(list(workers.values()), seed=seed).paint(scene)
    anns = [
        annotation(worker_id, worker_answer(mask, scene.class_map))
        for worker_id, mask in zip(workers, masks, strict=True)
    ]
    data_object = {"s3Uri": f"s3://in/img{object_id}.jpg", **(extra_line or {})}
    return {"datasetObjectId": object_id, "dataObject": data_object, "annotations": anns}, scene


def _sidecar(s3, mask_uri: str) -> dict:
    return json.loads(get_bytes(s3, mask_uri[: -len(".png")] + ".json"))


def test_a_gold_object_is_answered_with_its_known_mask_and_scores_every_worker(s3):
    from gtseg.core.gold import GOLD_KEY, GoldReference
    from gtseg.core.masks import encode_index_png

    workers = {"good": "careful", "fair": "average", "blobby": "blobs"}
    gold_scene = make_scene(41, 160, 120)
    known_uri = f"s3://{BUCKET}/prefix/gold/41.png"
    s3.put_object(
        Bucket=BUCKET, Key="prefix/gold/41.png", Body=encode_index_png(gold_scene.truth, gold_scene.class_map)
    )
    reference = GoldReference(mask=known_uri, internal_color_map=gold_scene.class_map.internal_color_map())
    gold_item, _ = _named_crowd("0", 41, workers, {GOLD_KEY: reference.to_line_value()})
    other_item, _ = _named_crowd("1", 42, workers)
    put_json(s3, PAYLOAD_URI, [gold_item, other_item])
    response = handler_module.handler(event(), None)

    gold_mask = response[0]["consolidatedAnnotation"]["content"][LAN]
    np.testing.assert_array_equal(
        read_class_mask(get_bytes(s3, gold_mask), gold_scene.class_map), gold_scene.truth
    )
    gold_sidecar = _sidecar(s3, gold_mask)
    assert gold_sidecar["method"] == "gold" and gold_sidecar["image-confidence"] == 1.0
    scores = {w["workerId"]: w["gold-iou"] for w in gold_sidecar["workers"]}
    assert scores["good"] > scores["fair"] > scores["blobby"]
    # the batch's other objects carry each worker's gold score too
    other = {
        w["workerId"]: w
        for w in _sidecar(s3, response[1]["consolidatedAnnotation"]["content"][LAN])["workers"]
    }
    assert other["good"]["gold-iou"] == scores["good"] and other["good"]["gold-objects"] == 1


def test_workers_shown_up_on_other_objects_decide_an_object_without_consensus(s3):
    # One real worker, a blob painter and a spammer agree with nobody on the last object; the
    # batch's earlier objects, where a second real worker was present, show who is who.
    pool = {"real": "average", "blobby": "blobs", "spam": "spammer"}
    items = [_named_crowd(str(i), 60 + i, {**pool, "other": "careful"})[0] for i in range(3)]
    last, scene = _named_crowd("3", 70, pool)
    put_json(s3, PAYLOAD_URI, [*items, last])
    response = handler_module.handler(event(), None)
    uri = response[3]["consolidatedAnnotation"]["content"][LAN]
    labels = read_class_mask(get_bytes(s3, uri), scene.class_map)
    real_mask = SimulatedCrowd(list(pool.values()), seed=70).paint(scene)[0]
    assert (
        mean_iou(labels, scene.truth, len(scene.class_map))
        >= mean_iou(real_mask, scene.truth, len(scene.class_map)) - 0.02
    )
    with_batch = _sidecar(s3, uri)
    assert with_batch["method"] == "gtseg:batch-prior"
    assert {w["workerId"]: w["excluded"] for w in with_batch["workers"]} == {
        "real": False, "blobby": True, "spam": True,
    }  # fmt: skip
    # alone, that object has no consensus: one worker's whole mask, chosen by agreement alone,
    # with the confidence of one of two masks nothing tells apart, so it stands out for review
    put_json(s3, PAYLOAD_URI, [last])
    alone_uri = handler_module.handler(event(), None)[0]["consolidatedAnnotation"]["content"][LAN]
    alone = _sidecar(s3, alone_uri)
    assert alone["method"] == "gtseg:no-consensus-pick" and 0.3 < alone["image-confidence"] < 0.7
    assert with_batch["image-confidence"] == 0.0  # one trusted worker: nobody cross-checked it


MIXED_JOB = "Seg-Job-20211118T021255"
MIXED_ROOT = f"s3://{BUCKET}/prefix/{MIXED_JOB}"


def test_the_exact_case_job_name_from_the_payload_path_is_described_and_written(s3, monkeypatch):
    """Real events carry the job name lower-cased in labelingJobArn while the S3 folder and the
    label attribute keep its case (docs/protocol.md §2.2): DescribeLabelingJob, the metadata's
    job-name and the sidecar get the name as it was created."""
    monkeypatch.setenv("DESCRIBE_LABELING_JOB", "true")
    s3.put_object(Bucket=BUCKET, Key="labels.json",
                  Body=json.dumps({"document-version": "2018-11-28",
                                   "labels": [{"label": "road"}, {"label": "car"}]}).encode())  # fmt: skip
    described: list[str] = []

    class CaseSensitiveSageMaker:
        def describe_labeling_job(self, LabelingJobName):
            described.append(LabelingJobName)
            if LabelingJobName != MIXED_JOB:
                raise botocore_not_found(LabelingJobName)
            return {"LabelCategoryConfigS3Uri": f"s3://{BUCKET}/labels.json"}

    real_client = boto3.session.Session.client
    monkeypatch.setattr(
        boto3.session.Session,
        "client",
        lambda self, name, *a, **k: (
            CaseSensitiveSageMaker() if name == "sagemaker" else real_client(self, name, *a, **k)
        ),
    )
    payload = f"{MIXED_ROOT}/annotations/consolidated-annotation/consolidation-request/iteration-1/t.json"
    item, _, _ = crowd_item("0", seed=4, profiles=("careful", "average"))
    put_json(s3, payload, [item])
    lan = f"{MIXED_JOB}-ref"
    response = handler_module.handler(
        event(
            labels=None,
            labelingJobArn=f"arn:aws:sagemaker:us-east-1:111122223333:labeling-job/{MIXED_JOB.lower()}",
            labelAttributeName=lan,
            payload={"s3Uri": payload},
            outputConfig=f"{MIXED_ROOT}/annotations",
        ),
        None,
    )
    assert described == [MIXED_JOB]
    content = response[0]["consolidatedAnnotation"]["content"]
    assert content[f"{lan}-metadata"]["job-name"] == f"labeling-job/{MIXED_JOB}"
    names = [v["class-name"] for v in content[f"{lan}-metadata"]["internal-color-map"].values()]
    assert names == ["BACKGROUND", "road", "car"]  # the job's own labels, from the described job
    sidecar = json.loads(get_bytes(s3, content[lan][:-4] + ".json"))
    assert sidecar["job-name"] == MIXED_JOB


def botocore_not_found(name: str) -> Exception:
    from botocore.exceptions import ClientError

    return ClientError(
        {"Error": {"Code": "ResourceNotFound", "Message": f"Could not find labeling job {name}"}},
        "DescribeLabelingJob",
    )


@pytest.mark.parametrize(
    ("modified", "status"),
    [((True, False), "adjusted"), ((False, False), "unadjusted"), ((None, None), None)],
)
def test_adjustment_tasks_say_whether_a_worker_changed_the_prior(s3, modified, status):
    scene = make_scene(21, 96, 64)
    masks = SimulatedCrowd(["careful", "average"], seed=21).paint(scene)
    annotations = []
    for i, (mask, flag) in enumerate(zip(masks, modified, strict=True)):
        answer = worker_answer(mask, scene.class_map)
        if flag is not None:
            answer["crowd-semantic-segmentation"]["initialValueModified"] = flag
        annotations.append(annotation(f"private.us-east-1.w{i}", answer))
    put_json(s3, PAYLOAD_URI, [{"datasetObjectId": "0", "dataObject": {"s3Uri": "s3://in/a.jpg"},
                                "annotations": annotations}])  # fmt: skip
    content = handler_module.handler(event(), None)[0]["consolidatedAnnotation"]["content"]
    meta = content[f"{LAN}-metadata"]
    sidecar = json.loads(get_bytes(s3, content[LAN][:-4] + ".json"))
    if status is None:
        assert "adjustment-status" not in meta and sidecar["adjustment-status"] is None
    else:
        assert meta["adjustment-status"] == status and sidecar["adjustment-status"] == status
