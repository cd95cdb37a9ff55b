"""Helpers to set up a small labeling job against the local emulator (moto S3 + stand-in)."""

from __future__ import annotations

import json

import boto3


def create_bucket(name: str, *, cors: bool = True) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=name)
    if cors:
        s3.put_bucket_cors(
            Bucket=name,
            CORSConfiguration={
                "CORSRules": [
                    {"AllowedHeaders": [], "AllowedMethods": ["GET"], "AllowedOrigins": ["*"],
                     "ExposeHeaders": ["Access-Control-Allow-Origin"]}
                ]
            },
        )  # fmt: skip


def labeling_job_request(
    name: str,
    *,
    manifest_uri: str,
    template_uri: str,
    output_path: str,
    labels_uri: str | None = None,
    pre_arn: str | None = None,
    acs_arn: str | None = None,
    workers: int = 3,
) -> dict:
    task = {
        "WorkteamArn": "arn:aws:sagemaker:us-east-1:123456789012:workteam/private-crowd/local",
        "UiConfig": {"UiTemplateS3Uri": template_uri},
        "TaskTitle": "Paint the scene",
        "TaskDescription": "Paint every pixel with its class",
        "NumberOfHumanWorkersPerDataObject": workers,
        "TaskTimeLimitInSeconds": 600,
    }
    if pre_arn:
        task["PreHumanTaskLambdaArn"] = pre_arn
    if acs_arn:
        task["AnnotationConsolidationConfig"] = {"AnnotationConsolidationLambdaArn": acs_arn}
    request = {
        "LabelingJobName": name,
        "LabelAttributeName": f"{name}-ref",
        "InputConfig": {"DataSource": {"S3DataSource": {"ManifestS3Uri": manifest_uri}}},
        "OutputConfig": {"S3OutputPath": output_path},
        "RoleArn": "arn:aws:iam::123456789012:role/GroundTruthLocal",
        "HumanTaskConfig": task,
    }
    if labels_uri:
        request["LabelCategoryConfigS3Uri"] = labels_uri
    return request


def put_json_lines(uri: str, lines: list[dict]) -> None:
    bucket, _, key = uri[5:].partition("/")
    body = "".join(json.dumps(line) + "\n" for line in lines)
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=body.encode())
