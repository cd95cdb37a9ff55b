"""LocalMotoServer: boto3 reaches moto whatever endpoint settings the user's shell has."""

from __future__ import annotations

import os

import boto3

from gtseg.local.moto_server import LocalMotoServer


def test_user_endpoint_settings_cannot_send_calls_past_moto_and_are_restored(monkeypatch):
    user = {
        "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9",  # e.g. left over from LocalStack
        "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "true",  # would make boto3 call AWS itself
    }
    for name, value in user.items():
        monkeypatch.setenv(name, value)
    with LocalMotoServer() as moto:
        s3 = boto3.client("s3")
        assert s3.meta.endpoint_url == moto.endpoint_url
        s3.create_bucket(Bucket="gtseg-endpoint-check")
        assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["gtseg-endpoint-check"]
    assert {name: os.environ.get(name) for name in user} == user
