"""Fixtures for the CDK tests (helpers live in infra_testkit, a name no other test folder uses)."""

from __future__ import annotations

import pytest
from infra_testkit import SETTINGS_CASES, Synthesized, synthesize


@pytest.fixture(params=list(SETTINGS_CASES), ids=list(SETTINGS_CASES))
def synthesized(request: pytest.FixtureRequest) -> Synthesized:
    """Every test using this runs once per settings case."""
    return synthesize(request.param)


@pytest.fixture
def default() -> Synthesized:
    return synthesize("default")


@pytest.fixture
def kms() -> Synthesized:
    return synthesize("kms")


@pytest.fixture
def options() -> Synthesized:
    return synthesize("options")


@pytest.fixture
def dev() -> Synthesized:
    return synthesize("dev")
