"""S3 access for the handlers and tools: one small interface so tests and the local emulator can
swap the endpoint (boto3 honours ``AWS_ENDPOINT_URL``) and handlers stay free of boto3 details.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

_S3_URI = re.compile(r"s3://([a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])/(.+)", re.IGNORECASE | re.DOTALL)

# Bounded retries with backoff for every S3 call (throttling, 5xx, connection resets).
BOTO_CONFIG = Config(
    retries={"max_attempts": 5, "mode": "standard"},
    connect_timeout=5,
    read_timeout=30,
    max_pool_connections=32,
)


class StorageError(RuntimeError):
    """An S3 object that could not be read or written; the message names it."""


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key). Raises ValueError naming the problem."""
    if not isinstance(uri, str):
        raise ValueError(f"not an S3 URI: {uri!r}")
    match = _S3_URI.fullmatch(uri.strip())
    if not match:
        raise ValueError(f"not an s3://bucket/key URI: {uri!r}")
    return match.group(1), match.group(2)


def parse_s3_prefix(uri: str) -> tuple[str, str]:
    """Like ``parse_s3_uri`` but the key part may be empty (``s3://bucket`` or ``s3://bucket/``)."""
    if isinstance(uri, str) and uri.startswith("s3://") and "/" not in uri[5:].rstrip("/"):
        bucket = uri[5:].rstrip("/")
        parse_s3_uri(f"s3://{bucket}/x")  # validates the bucket name
        return bucket, ""
    return parse_s3_uri(uri)


def join_uri(prefix: str, *parts: str) -> str:
    out = prefix.rstrip("/")
    for part in parts:
        out += "/" + part.strip("/")
    return out


def s3_client(session: boto3.session.Session | None = None, config: Config = BOTO_CONFIG) -> Any:
    return (session or boto3.session.Session()).client("s3", config=config)


def assumed_role_session(role_arn: str, session_name: str = "gtseg-consolidation") -> boto3.session.Session:
    """A session with the labeling job's execution role (protocol doc §2.6, pattern A)."""
    sts = boto3.client("sts", config=BOTO_CONFIG)
    creds = sts.assume_role(RoleArn=role_arn, RoleSessionName=session_name[:64])["Credentials"]
    return boto3.session.Session(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )


@dataclass
class S3Store:
    client: Any = field(default_factory=s3_client)
    kms_key_id: str | None = None

    def get_bytes(self, uri: str) -> bytes:
        bucket, key = parse_s3_uri(uri)
        try:
            return self.client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "?")
            raise StorageError(f"cannot read {uri}: {code}") from exc

    def get_object(self, uri: str) -> tuple[bytes, dict[str, Any]]:
        """Bytes and the GetObject response metadata (LastModified, ContentLength, ...)."""
        bucket, key = parse_s3_uri(uri)
        try:
            response = self.client.get_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "?")
            raise StorageError(f"cannot read {uri}: {code}") from exc
        body = response.pop("Body").read()
        return body, response

    def get_range(self, uri: str, first: int, last: int) -> tuple[bytes, int | None]:
        """Bytes ``first..last`` (inclusive) and the object's total size (from Content-Range)."""
        bucket, key = parse_s3_uri(uri)
        try:
            response = self.client.get_object(Bucket=bucket, Key=key, Range=f"bytes={first}-{last}")
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "?")
            raise StorageError(f"cannot read {uri}: {code}") from exc
        total = None
        content_range = response.get("ContentRange") or ""
        if "/" in content_range and content_range.rsplit("/", 1)[1].isdigit():
            total = int(content_range.rsplit("/", 1)[1])
        return response["Body"].read(), total

    def get_json(self, uri: str) -> Any:
        data = self.get_bytes(uri)
        try:
            return json.loads(data)
        except ValueError as exc:
            raise StorageError(f"{uri} is not valid JSON: {exc}") from exc

    def put_bytes(self, uri: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        bucket, key = parse_s3_uri(uri)
        extra: dict[str, Any] = {}
        if self.kms_key_id:
            extra = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self.kms_key_id}
        try:
            self.client.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type, **extra)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "?")
            raise StorageError(f"cannot write {uri}: {code}") from exc

    def put_json(self, uri: str, value: Any) -> None:
        body = json.dumps(value, indent=1, sort_keys=True, ensure_ascii=False).encode("utf-8")
        self.put_bytes(uri, body, "application/json")

    def exists(self, uri: str) -> bool:
        bucket, key = parse_s3_uri(uri)
        try:
            self.client.head_object(Bucket=bucket, Key=key)
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise StorageError(f"cannot check {uri}: {exc}") from exc

    def list_keys(self, prefix_uri: str) -> list[str]:
        """Every object URI under ``prefix_uri`` (paginated), in key order."""
        bucket, prefix = parse_s3_prefix(prefix_uri)
        paginator = self.client.get_paginator("list_objects_v2")
        out = []
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            out.extend(f"s3://{bucket}/{obj['Key']}" for obj in page.get("Contents", []))
        return out


class AwsClients:
    """Clients created on first use and kept for the container's life (creating one costs ~0.2 s);
    tests assign fakes to the attributes, ``reset()`` forgets them."""

    def __init__(
        self, *, s3_config: Config | None = None, sagemaker_runtime_config: Config | None = None
    ) -> None:
        self._s3_config = s3_config or BOTO_CONFIG
        self._runtime_config = sagemaker_runtime_config or BOTO_CONFIG
        self.reset()

    def reset(self) -> None:
        self.store: S3Store | None = None
        self.sagemaker: Any = None
        self.sagemaker_runtime: Any = None

    def get_store(self) -> S3Store:
        if self.store is None:
            self.store = S3Store(client=s3_client(config=self._s3_config))
        return self.store

    def get_sagemaker(self) -> Any:
        if self.sagemaker is None:
            # honours AWS_ENDPOINT_URL_SAGEMAKER, so the local emulator can stand in
            self.sagemaker = boto3.client("sagemaker", config=BOTO_CONFIG)
        return self.sagemaker

    def get_sagemaker_runtime(self) -> Any:
        if self.sagemaker_runtime is None:
            self.sagemaker_runtime = boto3.client("sagemaker-runtime", config=self._runtime_config)
        return self.sagemaker_runtime
