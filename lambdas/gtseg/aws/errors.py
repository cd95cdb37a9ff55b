"""What an AWS failure means for the caller: missing, transient (retry later), or final.

botocore's standard retry mode already retried the transient ones a few times before any of
these is seen; what reaches here is what was left when its retries ran out.
"""

from __future__ import annotations

from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

MISSING_CODES = frozenset({"NoSuchKey", "NoSuchBucket", "404", "NotFound"})
# What botocore's standard retry mode retries (throttling and transient errors); plus HTTP 429 and
# 5xx (see is_transient).
TRANSIENT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)


def client_error(exc: BaseException) -> ClientError | None:
    """The ``ClientError`` itself, or the one a wrapper (``StorageError``) was raised from."""
    if isinstance(exc, ClientError):
        return exc
    return exc.__cause__ if isinstance(exc.__cause__, ClientError) else None


def error_code(exc: BaseException) -> str | None:
    error = client_error(exc)
    if error is None:
        return None
    code = error.response.get("Error", {}).get("Code")
    return None if code is None else str(code)


def is_missing(exc: BaseException) -> bool:
    return error_code(exc) in MISSING_CODES


def is_transient(exc: BaseException) -> bool:
    """Throttling, a server error or a network failure: the same call may well succeed later."""
    error = client_error(exc)
    if error is not None:
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return error_code(error) in TRANSIENT_CODES or (
            isinstance(status, int) and (status == 429 or status >= 500)
        )
    cause = exc if isinstance(exc, BotoConnectionError | HTTPClientError) else exc.__cause__
    return isinstance(cause, BotoConnectionError | HTTPClientError)
