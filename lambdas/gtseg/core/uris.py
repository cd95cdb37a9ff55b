"""S3 URIs as strings: parse, validate, join. Pure: no boto3, nothing is fetched."""

from __future__ import annotations

import re

_S3_URI = re.compile(r"s3://([a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])/(.+)", re.IGNORECASE | re.DOTALL)


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
