"""Fixtures for the local Ground Truth emulator: moto's S3 server, the SageMaker stand-in, and
helpers to set up a small job."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gtseg.local.moto_server import LocalMotoServer
from gtseg.local.sagemaker_standin import SageMakerStandin

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def local_aws() -> Iterator[tuple[LocalMotoServer, SageMakerStandin]]:
    """moto S3 on 127.0.0.1 and the SageMaker stand-in, with boto3 pointed at both (this test only)."""
    with LocalMotoServer() as moto, SageMakerStandin() as sagemaker:
        moto.set_service_endpoint("SAGEMAKER", sagemaker.endpoint_url)
        yield moto, sagemaker
