"""cdk-nag (AwsSolutions) and cfn-lint on the synthesized template, for every settings case."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk import aws_s3 as s3
from infra_testkit import REPO_ROOT, SETTINGS_CASES, Synthesized, new_app

from app import build_app

CFN_LINT = REPO_ROOT / ".venv" / "bin" / "cfn-lint"


def test_nag_finds_nothing_unacknowledged(synthesized: Synthesized) -> None:
    # With the AwsSolutions plugin registered, a finding makes synth raise ValidationFailed.
    assembly = synthesized.app.synth()
    assert assembly.get_stack_by_name(synthesized.stack.stack_name).template


def test_nag_is_really_on(tmp_path: Path) -> None:
    """Control: the same app with one careless bucket must fail synth, so the test above can fail."""
    app, stack = build_app(new_app(SETTINGS_CASES["default"], outdir=str(tmp_path)))
    s3.Bucket(stack, "CarelessBucket")  # no access logs, no TLS enforcement
    with pytest.raises(RuntimeError, match=r"Validation failed|ValidationFailed"):
        app.synth()
    report = json.loads((tmp_path / "validation-report.json").read_text())
    assert "AwsSolutions-S1" in json.dumps(report)  # the finding names the careless bucket's problem
    assert "CarelessBucket" in json.dumps(report)


def test_every_acknowledgement_has_a_specific_reason(synthesized: Synthesized) -> None:
    acknowledged: dict[str, str] = {}
    ours: set[str] = set()
    for construct in synthesized.stack.node.find_all():
        for entry in construct.node.metadata:
            if entry.type == cdk.Validations.ACKNOWLEDGED_RULES_METADATA_KEY:
                acknowledged.update(entry.data)
                # CDK's own singletons: the deployment handler, the bucket-notifications handler
                if not any(
                    c in construct.node.path for c in ("CDKBucketDeployment", "BucketNotificationsHandler")
                ):
                    ours |= set(entry.data)
    assert acknowledged, "no acknowledgement metadata found (did the cdk-nag API move?)"
    generic = {"ok", "acknowledged", "n/a", "not applicable", "suppressed"}
    for rule, reason in acknowledged.items():
        assert "AwsSolutions-" in rule
        assert reason.strip().lower() not in generic and len(reason) >= 40, f"{rule}: {reason!r}"
    # Nothing is acknowledged that is avoidable for our own resources: only object-ARN/log-stream
    # wildcards, labeling-job ARNs, PutMetricData and the CDK-managed handlers.
    assert ours
    assert not [r for r in ours if r.endswith(("-S1", "-S10", "-L1")) or "IAM4" in r]


@pytest.mark.parametrize("case", list(SETTINGS_CASES))
def test_cfn_lint_has_no_errors(case: str, tmp_path: Path) -> None:
    from infra_testkit import synthesize

    template = tmp_path / "template.json"
    template.write_text(json.dumps(synthesize(case).json))
    result = subprocess.run(
        [str(CFN_LINT), "--ignore-checks", "W3005", "--", str(template)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    # Exit code is a bitmask: 2 errors, 4 warnings, 8 informational. W3005 is the only ignored check.
    assert result.returncode == 0, result.stdout + result.stderr


def test_cfn_lint_catches_a_broken_template(tmp_path: Path) -> None:
    """Control: cfn-lint as invoked above does report errors."""
    broken = tmp_path / "broken.json"
    broken.write_text(
        json.dumps({"Resources": {"B": {"Type": "AWS::S3::Bucket", "Properties": {"Nope": 1}}}})
    )
    result = subprocess.run(
        [str(CFN_LINT), "--ignore-checks", "W3005", "--", str(broken)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode & 2, result.stdout


def test_settings_reach_the_app_through_cdk_context() -> None:
    _, stack = build_app(new_app({"stage": "qa", "consolidationMemoryMb": "5120"}))
    assert stack.stack_name == "Gtseg-qa"
    assert stack.settings.consolidation_memory_mb == 5120


@pytest.mark.slow
def test_the_real_cdk_cli_synthesizes_offline_without_credentials(tmp_path: Path) -> None:
    """`npx cdk synth` as `make synth` runs it: cdk.json's app command, nag on, bundling on."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}  # toolchain P10: no STS
    env.update(
        PATH=f"{REPO_ROOT / 'node_modules' / '.bin'}:{REPO_ROOT / '.venv' / 'bin'}:{env.get('PATH', '')}",
        CDK_DISABLE_VERSION_CHECK="1",
        CDK_DISABLE_CLI_TELEMETRY="true",
        JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="20",
    )
    result = subprocess.run(
        ["npx", "cdk", "synth", "-q", "--output", str(tmp_path / "cdk.out")],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "cdk.out" / "Gtseg-main.template.json").is_file()
    assert "feature flags are not configured" not in result.stderr  # cdk.json sets them all
