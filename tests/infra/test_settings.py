"""Settings from CDK context, and the Lambda platform read from the Makefile."""

from __future__ import annotations

from pathlib import Path

import pytest
from aws_cdk import RemovalPolicy
from aws_cdk import aws_logs as logs
from hypothesis import given, settings
from hypothesis import strategies as st

from infra.settings import (
    CONSOLIDATION_MEMORY_MB,
    Encryption,
    GtsegSettings,
    Retention,
    SettingsError,
    read_lambda_platform,
)

KEY_ARN = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def test_defaults_synthesize_a_retained_s3_encrypted_main_stack() -> None:
    s = GtsegSettings.from_context({})
    assert s.stack_name == "Gtseg-main"
    assert s.encryption is Encryption.S3_MANAGED and s.kms_key_arn is None
    assert s.retention is Retention.RETAIN and s.removal_policy == RemovalPolicy.RETAIN
    assert s.consolidation_memory_mb == CONSOLIDATION_MEMORY_MB
    assert s.log_retention == logs.RetentionDays.ONE_MONTH
    assert s.workteam_arn is None


def test_command_line_strings_are_coerced() -> None:
    s = GtsegSettings.from_context(
        {
            "stage": "dev",
            "retention": "destroy",
            "encryption": "kms",
            "kmsKeyArn": KEY_ARN,
            "consolidationMemoryMb": "4096",
            "logRetentionDays": "90",
            "logLevel": "debug",
            "workteamArn": "",  # `-c workteamArn=` means unset
        }
    )
    assert s.stack_name == "Gtseg-dev"
    assert s.removal_policy == RemovalPolicy.DESTROY and s.destroy_on_delete
    assert s.kms_key_arn == KEY_ARN
    assert s.consolidation_memory_mb == 4096
    assert s.log_retention == logs.RetentionDays.THREE_MONTHS
    assert s.log_level == "DEBUG"
    assert s.workteam_arn is None


@pytest.mark.parametrize(
    "address", ["ops@example.com", "labeling.ops+gtseg@mail.example.co.uk", "a_b-c@x-y.io"]
)
def test_alarm_email_takes_one_address(address: str) -> None:
    assert GtsegSettings.from_context({"alarmEmail": address}).alarm_email == address


def test_no_alarm_email_by_default_and_empty_means_unset() -> None:
    assert GtsegSettings.from_context({}).alarm_email is None
    assert GtsegSettings.from_context({"alarmEmail": ""}).alarm_email is None


def test_every_consolidation_method_of_the_handler_is_a_valid_setting() -> None:
    from gtseg.core.consolidation import METHODS

    for method in METHODS:
        assert GtsegSettings.from_context({"consolidationMethod": method}).consolidation_method == method


def test_cdk_own_context_keys_are_ignored() -> None:
    s = GtsegSettings.from_context(
        {
            "@aws-cdk/aws-s3:createDefaultLoggingPolicy": True,
            "cli-telemetry": False,
            "aws:cdk:bundling-stacks": [],
        }
    )
    assert s == GtsegSettings()


@pytest.mark.parametrize(
    ("context", "names"),
    [
        ({"workTeamArn": "x"}, "workTeamArn"),  # typo of workteamArn
        ({"consolidationMemoryMb": "lots"}, "consolidationMemoryMb"),
        ({"consolidationMemoryMb": "64"}, "consolidationMemoryMb"),  # below Lambda's 128 MB
        ({"consolidationTimeoutSeconds": "901"}, "consolidationTimeoutSeconds"),
        ({"logRetentionDays": "31"}, "logRetentionDays"),
        ({"retention": "forever"}, "retention"),
        ({"stage": "Prod_1"}, "stage"),
        ({"stage": "dev/../x"}, "stage"),
        ({"prelabelEndpointName": "model name"}, "prelabelEndpointName"),
        ({"workteamArn": "arn:aws:sagemaker:eu-west-1:111122223333:labeling-job/x"}, "workteamArn"),
        ({"kmsKeyArn": KEY_ARN}, "kmsKeyArn"),  # without encryption=kms
        ({"encryption": "kms", "kmsKeyArn": "alias/mine"}, "kmsKeyArn"),
        ({"consolidationMethod": "vote"}, "consolidationMethod"),
        ({"alarmEmail": "ops"}, "alarmEmail"),
        ({"alarmEmail": "ops@localhost"}, "alarmEmail"),  # SNS needs a dotted domain
        ({"alarmEmail": "Ops <ops@example.com>"}, "alarmEmail"),  # a display name
        ({"alarmEmail": "a@example.com,b@example.com"}, "alarmEmail"),  # one address only
        ({"alarmEmail": "ops@example.com "}, "alarmEmail"),
        ({"alarmEmail": "o" * 65 + "@example.com"}, "alarmEmail"),  # local part over 64
    ],
)
def test_bad_settings_fail_naming_the_key(context: dict[str, str], names: str) -> None:
    with pytest.raises(SettingsError, match=names):
        GtsegSettings.from_context(context)


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from([*GtsegSettings.context_keys(), "bogus", "@aws-cdk/x:y"]),
        st.one_of(st.none(), st.text(max_size=40), st.integers(-10, 20000), st.booleans()),
        max_size=6,
    )
)
def test_any_context_gives_settings_or_a_settings_error(context: dict[str, object]) -> None:
    try:
        GtsegSettings.from_context(context)
    except SettingsError as exc:
        assert str(exc)


def write_makefile(tmp_path: Path, version: str = "3.14", platforms: str | None = None) -> Path:
    platforms = platforms or "--platform manylinux_2_28_aarch64 --platform manylinux2014_aarch64"
    makefile = tmp_path / "Makefile"
    makefile.write_text(f"X := 1\nLAMBDA_PYTHON_VERSION ?= {version}\nLAMBDA_PLATFORMS := {platforms}\n")
    return makefile


def test_platform_comes_from_the_makefile(tmp_path: Path) -> None:
    platform = read_lambda_platform(write_makefile(tmp_path, "3.13"), environ={})
    assert platform.python_version == "3.13"
    assert platform.pip_platforms == ("manylinux_2_28_aarch64", "manylinux2014_aarch64")
    assert platform.runtime.name == "python3.13"
    assert platform.abi_tag == "cpython-313-aarch64-linux-gnu"


def test_make_variable_override_wins(tmp_path: Path) -> None:
    platform = read_lambda_platform(write_makefile(tmp_path), environ={"LAMBDA_PYTHON_VERSION": "3.12"})
    assert platform.runtime.name == "python3.12"


def test_the_repository_makefile_targets_a_runtime_cdk_knows() -> None:
    platform = read_lambda_platform(environ={})
    assert platform.runtime.name == f"python{platform.python_version}"
    assert platform.architecture.name == "arm64"


@pytest.mark.parametrize(
    ("version", "platforms", "message"),
    [
        ("3.99", None, "no Runtime.PYTHON_3_99"),
        ("three", None, "must look like 3.14"),
        ("3.14", "--platform manylinux_2_28_x86_64", "aarch64"),
    ],
)
def test_bad_platform_is_explained(tmp_path: Path, version: str, platforms: str | None, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        p = read_lambda_platform(write_makefile(tmp_path, version, platforms), environ={})
        _ = p.runtime, p.architecture
