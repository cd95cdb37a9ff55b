"""AWS clients, created once per container and shared by a handler's invocations."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

from gtseg.aws.s3 import BOTO_CONFIG, S3Store, s3_client


def assumed_role_session(role_arn: str, session_name: str = "gtseg-consolidation") -> boto3.session.Session:
    """A session with the labeling job's execution role (protocol doc §2.6, pattern A)."""
    sts = boto3.client("sts", config=BOTO_CONFIG)
    creds = sts.assume_role(RoleArn=role_arn, RoleSessionName=session_name[:64])["Credentials"]
    return boto3.session.Session(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )


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
