"""Typed settings of the gtseg stack, read from CDK context.

Every setting is one top-level context key (camelCase), set in ``cdk.json`` or on the command line:
``npx cdk deploy -c workteamArn=arn:aws:sagemaker:... -c encryption=kms -c retention=destroy``.
Values from ``-c`` arrive as strings; pydantic coerces them ("3008" -> 3008) and rejects bad ones
with a message naming the key. A camelCase key that is not a setting is an error, so a typo
(``-c workTeamArn=...``) cannot be silently ignored.

The Lambda target platform (Python version, pip platform tags) is NOT a context setting: it must
match the wheelhouse ``make setup`` downloaded, so it is read from the Makefile (the single source).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from aws_cdk import RemovalPolicy
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from gtseg.core.consolidation import DEFAULT_NEIGHBOURHOOD_RADIUS

REPO_ROOT = Path(__file__).resolve().parent.parent
MAKEFILE = REPO_ROOT / "Makefile"
LAMBDAS_DIR = REPO_ROOT / "lambdas"
LAMBDA_REQUIREMENTS = LAMBDAS_DIR / "requirements.txt"
REPORT_REQUIREMENTS = LAMBDAS_DIR / "requirements-report.txt"  # the finalize function's second layer
WORKER_TEMPLATES_DIR = LAMBDAS_DIR / "gtseg" / "templates"
WHEELHOUSE_DIR = REPO_ROOT / "build" / "wheelhouse"

# Consolidation is the one memory/CPU-heavy function: it decodes K worker PNGs per object and runs
# the EM on the vote counts, several objects of a batch in parallel threads. Lambda CPU scales with
# memory (one full vCPU at 1769 MB, ~1.7 at 3008 MB), so memory buys decode/encode speed too.
# Sized from make bench (1920x1080, K=5): peak ~15-18 bytes per pixel per worker for one object,
# ~0.13 s per object on one core. With 2 objects in flight (CONSOLIDATION_THREADS) and ~300 MB for
# the runtime and the payload, 3008 MB holds objects up to ~90 M pixel-workers each (12 MP x 7
# workers); 600 s covers thousands of 2 MP objects or ~700 objects of 12 MP per batch. For images
# near Ground Truth's 100 MP limit set CONSOLIDATION_THREADS=1 and raise the memory (10240 MB).
CONSOLIDATION_MEMORY_MB = 3008
CONSOLIDATION_TIMEOUT_SECONDS = 600

# Finalizing a finished job (infra/finalize.py, docs/finalize.md). One function runs every step.
# Sized for a 100,000-object job: 50 lines per map batch (2,000 batches; a line is ~1-2 KB, so a
# batch's input stays far below Step Functions' 256 KiB). The work per object, measured with local
# files on one core: 5.5 ms at 640x480, 0.3 s at 12 MP (docs/finalize.md); in Lambda add ~7 S3 round
# trips per object (sidecar, mask, image, three writes), overlapped on 4 threads: a batch takes
# seconds to well under a minute against the 900 s timeout. 40 batches at once take a
# 100,000-object job through in tens of minutes without crowding an account's default 1,000 Lambda
# concurrency (throttled calls are retried). The reduce streams the 2,000 parts (tens of seconds);
# the report draws at most FINALIZE_REPORT_OBJECTS objects (~0.1 s each at 640x480 with 5 workers,
# seconds at 12 MP: lower it for large images; a report that runs out
# of time is reported in the summary, the rest still written).
FINALIZE_MEMORY_MB = 3008
FINALIZE_TIMEOUT_SECONDS = 900
FINALIZE_BATCH_SIZE = 50
FINALIZE_MAX_BATCH_BYTES = 200_000  # Step Functions' own limit for a batch is 256 KiB
FINALIZE_MAX_CONCURRENCY = 40
FINALIZE_REPORT_OBJECTS = 100
# /tmp for the reduce's temporary files (the job's COCO annotations can reach gigabytes)
FINALIZE_EPHEMERAL_STORAGE_MB = 10240

# Lambda's limits for memory and timeout (service quotas, not tunable).
LAMBDA_MIN_MEMORY_MB = 128
LAMBDA_MAX_MEMORY_MB = 10240
LAMBDA_MAX_TIMEOUT_SECONDS = 900

# pydantic's `pattern` searches (unanchored), so every pattern is anchored here.
_STAGE = r"^[a-z][a-z0-9-]{0,15}$"
_WORKTEAM_ARN = r"^arn:aws[a-z\-]*:sagemaker:[a-z0-9\-]+:\d{12}:workteam/.+$"
_KMS_KEY_ARN = (
    r"^arn:aws[a-z\-]*:kms:[a-z0-9\-]+:\d{12}:key/"
    r"(mrk-[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$"
)
_ENDPOINT_NAME = r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$"
_LABEL_ATTRIBUTE = r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,126}$"
# An S3 key prefix of the data bucket: S3's safe characters, ending in "/", not starting with one.
_UPLOAD_PREFIX = r"^[A-Za-z0-9!_.*'()-][A-Za-z0-9!_.*'()/-]{0,200}/$"
# One address, as SNS takes it for an e-mail subscription (a local part, @, a dotted domain); a
# list or a display name ("Ops <ops@example.com>") is refused rather than half-subscribed.
_DOMAIN_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_EMAIL = rf"^[A-Za-z0-9.!#$%&'*+/=?^_`{{|}}~-]{{1,64}}@{_DOMAIN_LABEL}(?:\.{_DOMAIN_LABEL})+$"


class Retention(StrEnum):
    """What happens to buckets, keys and log groups when the stack is deleted."""

    RETAIN = "retain"  # keep the data (default: labels cost money to make)
    DESTROY = "destroy"  # dev stacks: delete, emptying buckets first

    @property
    def removal_policy(self) -> RemovalPolicy:
        return RemovalPolicy.RETAIN if self is Retention.RETAIN else RemovalPolicy.DESTROY


class Encryption(StrEnum):
    S3_MANAGED = "s3"  # SSE-S3 (default, no key cost)
    KMS = "kms"  # a customer-managed KMS key (created, or kmsKeyArn)


class GtsegSettings(BaseModel):
    """Everything a team may want to change without editing code. Defaults synthesize."""

    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True)

    stage: str = Field("main", pattern=_STAGE, description="part of the stack name: Gtseg-<stage>")
    workteam_arn: str | None = Field(
        None, pattern=_WORKTEAM_ARN, description="default private/vendor workteam for the launcher"
    )
    encryption: Encryption = Encryption.S3_MANAGED
    kms_key_arn: str | None = Field(
        None, pattern=_KMS_KEY_ARN, description="use this existing key instead of creating one"
    )
    retention: Retention = Retention.RETAIN
    log_retention_days: int = 30
    pre_annotation_memory_mb: int = Field(512, ge=LAMBDA_MIN_MEMORY_MB, le=LAMBDA_MAX_MEMORY_MB)
    consolidation_memory_mb: int = Field(
        CONSOLIDATION_MEMORY_MB, ge=LAMBDA_MIN_MEMORY_MB, le=LAMBDA_MAX_MEMORY_MB
    )
    consolidation_timeout_seconds: int = Field(
        CONSOLIDATION_TIMEOUT_SECONDS, ge=30, le=LAMBDA_MAX_TIMEOUT_SECONDS
    )
    launcher_memory_mb: int = Field(512, ge=LAMBDA_MIN_MEMORY_MB, le=LAMBDA_MAX_MEMORY_MB)
    consolidation_method: Literal["gtseg", "majority", "simple", "dawid-skene"] = "gtseg"  # gtseg METHODS
    # The handler's own default radius (make bench's best); 0 turns the neighbourhood step off.
    consolidation_smoothing: int = Field(DEFAULT_NEIGHBOURHOOD_RADIUS, ge=0, le=8)  # handler: 0..8
    prelabel_endpoint_name: str | None = Field(None, pattern=_ENDPOINT_NAME)
    prior_label_attribute: str | None = Field(None, pattern=_LABEL_ATTRIBUTE)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    streaming_upload_prefix: str | None = Field(
        None,
        pattern=_UPLOAD_PREFIX,
        description="images uploaded under this prefix of the data bucket go to the streaming input topic "
        "(Ground Truth's S3 mode; docs/streaming.md)",
    )
    alarm_email: str | None = Field(
        None,
        pattern=_EMAIL,
        max_length=254,
        description="subscribe this address to the alarm topic (SNS sends a confirmation mail first)",
    )
    # Finalizing finished jobs (docs/finalize.md)
    finalize_jobs: bool = Field(True, description="finalize every job of this stack when it ends")
    finalize_memory_mb: int = Field(FINALIZE_MEMORY_MB, ge=1024, le=LAMBDA_MAX_MEMORY_MB)
    finalize_batch_size: int = Field(FINALIZE_BATCH_SIZE, ge=1, le=500)
    finalize_max_concurrency: int = Field(FINALIZE_MAX_CONCURRENCY, ge=1, le=1000)
    finalize_copy_images: bool = Field(
        True, description="copy each image into the dataset (else reference it)"
    )
    finalize_report_objects: int = Field(FINALIZE_REPORT_OBJECTS, ge=0, le=1000)
    notification_email: str | None = Field(
        None,
        pattern=_EMAIL,
        max_length=254,
        description="subscribe this address to the job-finished topic (SNS sends a confirmation mail first)",
    )

    @field_validator("log_retention_days")
    @classmethod
    def _known_retention(cls, days: int) -> int:
        allowed = _retention_days_by_number()
        if days not in allowed:
            raise ValueError(f"must be one of CloudWatch's retention periods: {sorted(allowed)}")
        return days

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, level: Any) -> Any:
        return level.upper() if isinstance(level, str) else level

    @field_validator("streaming_upload_prefix")
    @classmethod
    def _not_a_gtseg_prefix(cls, prefix: str | None) -> str | None:
        # jobs/ holds the launcher's manifests (and Ground Truth's input must not be gtseg's own
        # files); templates/ is the deployment's. Any other prefix of the data bucket will do.
        if prefix is not None and prefix.split("/", 1)[0] in ("jobs", "templates"):
            raise ValueError(f"must not be under jobs/ or templates/ (gtseg writes there), got {prefix!r}")
        return prefix

    @model_validator(mode="after")
    def _key_needs_kms(self) -> GtsegSettings:
        if self.kms_key_arn and self.encryption is not Encryption.KMS:
            raise ValueError("kmsKeyArn is set but encryption is not 'kms': set encryption=kms too")
        return self

    @property
    def stack_name(self) -> str:
        return f"Gtseg-{self.stage}"

    @property
    def log_retention(self) -> logs.RetentionDays:
        return _retention_days_by_number()[self.log_retention_days]

    @property
    def removal_policy(self) -> RemovalPolicy:
        return self.retention.removal_policy

    @property
    def destroy_on_delete(self) -> bool:
        return self.retention is Retention.DESTROY

    @classmethod
    def context_keys(cls) -> tuple[str, ...]:
        return tuple(field.alias or name for name, field in cls.model_fields.items())

    @classmethod
    def from_context(cls, context: dict[str, Any]) -> GtsegSettings:
        """Build from a CDK context mapping (``node.get_all_context()``); unknown camelCase keys fail.

        CDK's own keys (feature flags ``@aws-cdk/...``, ``aws:cdk:...``, ``cli-telemetry``) contain
        ``@``, ``:`` or ``-`` and are left alone.
        """
        known = set(cls.context_keys())
        ours = {k: v for k, v in context.items() if re.fullmatch(r"[a-z][a-zA-Z0-9]*", k)}
        unknown = sorted(set(ours) - known)
        if unknown:
            raise SettingsError(
                f"unknown gtseg setting(s) in CDK context: {', '.join(unknown)}; "
                f"valid keys: {', '.join(sorted(known))}"
            )
        # `-c key=` (empty) means "unset": fall back to the default.
        values = {k: v for k, v in ours.items() if v is not None and v != ""}
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}" for err in exc.errors()
            )
            raise SettingsError(f"invalid gtseg settings in CDK context: {problems}") from None


class SettingsError(ValueError):
    """A context setting that cannot be used; the message names the key."""


# CloudWatch Logs' allowed retention periods (PutRetentionPolicy), by day count. INFINITE is left
# out on purpose: logs must not grow forever by default.
_RETENTION_DAYS = {
    1: "ONE_DAY", 3: "THREE_DAYS", 5: "FIVE_DAYS", 7: "ONE_WEEK", 14: "TWO_WEEKS", 30: "ONE_MONTH",
    60: "TWO_MONTHS", 90: "THREE_MONTHS", 120: "FOUR_MONTHS", 150: "FIVE_MONTHS", 180: "SIX_MONTHS",
    365: "ONE_YEAR", 400: "THIRTEEN_MONTHS", 545: "EIGHTEEN_MONTHS", 731: "TWO_YEARS",
    1096: "THREE_YEARS", 1827: "FIVE_YEARS", 2192: "SIX_YEARS", 2557: "SEVEN_YEARS",
    2922: "EIGHT_YEARS", 3288: "NINE_YEARS", 3653: "TEN_YEARS",
}  # fmt: skip


def _retention_days_by_number() -> dict[int, logs.RetentionDays]:
    return {days: logs.RetentionDays[name] for days, name in _RETENTION_DAYS.items()}


@dataclass(frozen=True)
class LambdaPlatform:
    """The Lambda target the layer is bundled for; must match the wheelhouse from ``make setup``."""

    python_version: str  # "3.14"
    pip_platforms: tuple[str, ...]  # ("manylinux_2_28_aarch64", "manylinux2014_aarch64")

    @property
    def runtime(self) -> lambda_.Runtime:
        name = "PYTHON_" + self.python_version.replace(".", "_")
        runtime = getattr(lambda_.Runtime, name, None)
        if runtime is None:
            raise SettingsError(
                f"LAMBDA_PYTHON_VERSION={self.python_version}: aws-cdk-lib has no Runtime.{name}"
            )
        return runtime

    @property
    def architecture(self) -> lambda_.Architecture:
        if not all(p.endswith("_aarch64") for p in self.pip_platforms):
            raise SettingsError(f"LAMBDA_PLATFORMS must all be aarch64 tags, got {self.pip_platforms}")
        return lambda_.Architecture.ARM_64

    @property
    def abi_tag(self) -> str:
        """The CPython tag of compiled modules, e.g. ``cpython-314-aarch64-linux-gnu``."""
        return f"cpython-{self.python_version.replace('.', '')}-aarch64-linux-gnu"


def read_lambda_platform(makefile: Path = MAKEFILE, environ: dict[str, str] | None = None) -> LambdaPlatform:
    """``LAMBDA_PYTHON_VERSION`` / ``LAMBDA_PLATFORMS`` from the Makefile.

    ``make synth LAMBDA_PYTHON_VERSION=3.13`` exports the override, so the environment wins for the
    version (the Makefile uses ``?=`` and ``export``); the platform tags come from the Makefile only.
    """
    environ = dict(os.environ) if environ is None else environ
    text = makefile.read_text(encoding="utf-8")
    version_match = re.search(r"^LAMBDA_PYTHON_VERSION\s*\??=\s*(\S+)\s*$", text, re.MULTILINE)
    platforms_match = re.search(r"^LAMBDA_PLATFORMS\s*:?=\s*(.+?)\s*$", text, re.MULTILINE)
    if not version_match or not platforms_match:
        raise SettingsError(f"{makefile} must define LAMBDA_PYTHON_VERSION and LAMBDA_PLATFORMS")
    version = environ.get("LAMBDA_PYTHON_VERSION") or version_match.group(1)
    if not re.fullmatch(r"3\.\d{1,2}", version):
        raise SettingsError(f"LAMBDA_PYTHON_VERSION must look like 3.14, got {version!r}")
    platforms = tuple(re.findall(r"--platform\s+(\S+)", platforms_match.group(1)))
    if not platforms:
        raise SettingsError(f"LAMBDA_PLATFORMS in {makefile} has no --platform tags")
    return LambdaPlatform(python_version=version, pip_platforms=platforms)
