"""S3 access for the features and tools: one small interface so tests and the local emulator can
swap the endpoint (boto3 honours ``AWS_ENDPOINT_URL``) and nothing above it sees boto3 details.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import boto3
import boto3.exceptions
from botocore.config import Config
from botocore.exceptions import ClientError

from gtseg.core.uris import parse_s3_prefix, parse_s3_uri

# Bounded retries with backoff for every S3 call (throttling, 5xx, connection resets).
BOTO_CONFIG = Config(
    retries={"max_attempts": 5, "mode": "standard"},
    connect_timeout=5,
    read_timeout=30,
    max_pool_connections=32,
)


class StorageError(RuntimeError):
    """An S3 object that could not be read or written; the message names it."""


def s3_client(session: boto3.session.Session | None = None, config: Config = BOTO_CONFIG) -> Any:
    return (session or boto3.session.Session()).client("s3", config=config)


@dataclass
class S3Store:
    client: Any = field(default_factory=s3_client)
    kms_key_id: str | None = None

    def _get(self, uri: str, **extra: Any) -> dict[str, Any]:
        """GetObject; a ClientError becomes a StorageError naming the object and the error code
        (the ClientError stays its cause, so callers can classify it)."""
        bucket, key = parse_s3_uri(uri)
        try:
            response: dict[str, Any] = self.client.get_object(Bucket=bucket, Key=key, **extra)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "?")
            raise StorageError(f"cannot read {uri}: {code}") from exc
        return response

    def get_bytes(self, uri: str) -> bytes:
        body: bytes = self._get(uri)["Body"].read()
        return body

    def get_object(self, uri: str) -> tuple[bytes, dict[str, Any]]:
        """Bytes and the GetObject response metadata (LastModified, ContentLength, ...)."""
        response = self._get(uri)
        body = response.pop("Body").read()
        return body, response

    def get_range(self, uri: str, first: int, last: int) -> tuple[bytes, int | None]:
        """Bytes ``first..last`` (inclusive) and the object's total size (from Content-Range)."""
        response = self._get(uri, Range=f"bytes={first}-{last}")
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

    def upload_file(self, path: str, uri: str, content_type: str = "application/octet-stream") -> None:
        """A local file to S3 in parts (boto3's managed transfer): never held in memory whole."""
        bucket, key = parse_s3_uri(uri)
        extra: dict[str, Any] = {"ContentType": content_type}
        if self.kms_key_id:
            extra.update(ServerSideEncryption="aws:kms", SSEKMSKeyId=self.kms_key_id)
        try:
            self.client.upload_file(path, bucket, key, ExtraArgs=extra)
        except (ClientError, boto3.exceptions.S3UploadFailedError) as exc:
            raise StorageError(f"cannot write {uri}: {exc}") from exc

    def list_folders(self, prefix_uri: str) -> list[str]:
        """The 'folders' directly under ``prefix_uri`` (common prefixes), as URIs ending in '/'."""
        bucket, prefix = parse_s3_prefix(prefix_uri)
        paginator = self.client.get_paginator("list_objects_v2")
        out: list[str] = []
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
            out.extend(f"s3://{bucket}/{p['Prefix']}" for p in page.get("CommonPrefixes", []))
        return out

    def list_keys(self, prefix_uri: str) -> list[str]:
        """Every object URI under ``prefix_uri`` (paginated), in key order."""
        bucket, prefix = parse_s3_prefix(prefix_uri)
        paginator = self.client.get_paginator("list_objects_v2")
        out: list[str] = []
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            out.extend(f"s3://{bucket}/{obj['Key']}" for obj in page.get("Contents", []))
        return out
