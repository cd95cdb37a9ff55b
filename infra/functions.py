"""The three Lambdas (pre-annotation, consolidation, launcher) and their dependency layers.

Packaging never uses Docker: the layer is ``pip install``-ed for the Lambda platform (aarch64,
CPython of ``LAMBDA_PYTHON_VERSION``) from the wheelhouse ``make setup`` downloaded, so synth works
offline. The function code is an allow-list of the ``gtseg`` packages the handlers need. The
finalize function (``infra/finalize.py``) has a second layer, the report's templating
(``lambdas/requirements-report.txt``), which the labeling Lambdas neither have nor import
(pyproject's contract "labeling-lambdas").

Reserved concurrency: none, on purpose. A reservation is carved out of the account's pool; accounts
whose Lambda concurrency quota is still the new-account default (10) cannot reserve anything
(Lambda keeps 100 unreserved), so the deploy would fail there, and Ground Truth's own batching is
the natural throttle. Nothing downstream (S3) needs protecting from our fan-out.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import jsii
from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from gtseg.launcher.settings import LauncherSettings
from infra.settings import (
    LAMBDA_REQUIREMENTS,
    LAMBDAS_DIR,
    REPORT_REQUIREMENTS,
    WHEELHOUSE_DIR,
    GtsegSettings,
    LambdaPlatform,
)
from infra.storage import Storage

# Bump when the bundler's pip flags or pruning change: cdk.out caches assets by hash (toolchain P5).
LAYER_BUNDLER_VERSION = "1"

PRE_ANNOTATION_HANDLER = "gtseg.handlers.pre_annotation.handler"
CONSOLIDATION_HANDLER = "gtseg.handlers.consolidation.handler"
LAUNCHER_HANDLER = "gtseg.handlers.launcher.handler"

# What ships to Lambda, as an allow-list: the handlers and every layer below them, the after-the-job
# tools included (the finalize function runs export's and report's code, and the report's template
# in tools/templates/). The local emulator, the CLI and the worker template stay out (worker_ui.py
# uploads that to S3). pyproject's import-linter contract "shipped-code" forbids these packages to
# import anything else, and "labeling-lambdas" keeps the tools out of the labeling Lambdas' imports.
SHIPPED_PACKAGES = (
    "core", "aws", "pre_annotation", "consolidation", "launcher", "streaming", "finalize", "tools", "handlers",
)  # fmt: skip
SHIPPED_MODULES = ("__init__.py", "py.typed", "protocol.py")


def function_code_excludes() -> list[str]:
    """CDK asset globs (last match wins): exclude everything, re-include the allow-list, then drop
    bytecode caches. A directory must be re-included itself for CDK to descend into it."""
    allowed = ["!gtseg"]
    allowed += [f"!gtseg/{name}" for name in SHIPPED_MODULES]
    for package in SHIPPED_PACKAGES:
        allowed += [f"!gtseg/{package}", f"!gtseg/{package}/**"]
    return ["*", *allowed, "**/__pycache__", "**/*.pyc"]


# Ground Truth's pre-annotation invoke timeout is undocumented; AWS's recipe uses 30 s. 60 s leaves
# room for an optional pre-label endpoint call, which the handler itself bounds well below this.
PRE_ANNOTATION_TIMEOUT = Duration.seconds(60)
# The launcher lists up to Ground Truth's 20,000-object quota (1,000 keys per page) and writes the
# manifest; a few seconds in practice, 5 minutes as the ceiling.
LAUNCHER_TIMEOUT = Duration.minutes(5)
METRICS_NAMESPACE = "gtseg"
# POWERTOOLS_SERVICE_NAME of each function: Powertools Metrics puts it in the "service" dimension of
# every metric the function emits, so the alarms (infra/monitoring.py) select by it.
PRE_ANNOTATION_SERVICE = "gtseg-pre-annotation"
CONSOLIDATION_SERVICE = "gtseg-consolidation"
LAUNCHER_SERVICE = "gtseg-launcher"


def layer_asset_hash(requirements: Path, platform: LambdaPlatform, wheelhouse: Path) -> str:
    """Changes whenever what the layer would contain could change: pins, target, wheels, bundler."""
    digest = hashlib.sha256()
    digest.update(f"bundler={LAYER_BUNDLER_VERSION}\n".encode())
    digest.update(f"python={platform.python_version}\n".encode())
    digest.update(("platforms=" + ",".join(platform.pip_platforms) + "\n").encode())
    digest.update(requirements.read_bytes())
    wheels = sorted(p.name for p in wheelhouse.glob("*.whl")) if wheelhouse.is_dir() else []
    digest.update(("\n".join(wheels)).encode())
    return digest.hexdigest()


@jsii.implements(cdk.ILocalBundling)
class WheelhouseLayerBundler:
    """Builds ``python/`` for a Lambda layer with pip for the Lambda platform, never Docker.

    Returning False would make CDK fall back to Docker (no daemon here: an opaque exit 125), so a
    missing wheelhouse is an error that says what to run.
    """

    def __init__(
        self,
        *,
        requirements: Path,
        wheelhouse: Path,
        platform: LambdaPlatform,
        python: str = sys.executable,
    ) -> None:
        self.requirements = requirements
        self.wheelhouse = wheelhouse
        self.platform = platform
        self.python = python

    def pip_command(self, target: Path) -> list[str]:
        platform_flags: list[str] = []
        for tag in self.platform.pip_platforms:
            platform_flags += ["--platform", tag]
        return [
            self.python, "-m", "pip", "install",
            "--no-index", "--find-links", str(self.wheelhouse),
            "--only-binary=:all:", "--implementation", "cp",
            "--python-version", self.platform.python_version,
            *platform_flags,
            "--target", str(target),
            # No .pyc: the host's Python (3.11) would write bytecode the Lambda's Python cannot use.
            "--no-compile", "--disable-pip-version-check", "--quiet",
            "-r", str(self.requirements),
        ]  # fmt: skip

    def try_bundle(self, output_dir: str, options: Any = None) -> bool:  # jsii passes options positionally
        if not any(self.wheelhouse.glob("*.whl")):
            raise RuntimeError(
                f"no wheels in {self.wheelhouse}: run `make setup` (downloads the Lambda wheels once)"
            )
        target = Path(output_dir) / "python"
        # Ignore the machine's pip config (extra indexes, find-links): only the wheelhouse counts.
        env = {**os.environ, "PIP_CONFIG_FILE": os.devnull}
        result = subprocess.run(
            self.pip_command(target), env=env, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"pip could not build the Lambda layer for python{self.platform.python_version} "
                f"{'/'.join(self.platform.pip_platforms)} from {self.wheelhouse} "
                f"(run `make setup` after changing requirements):\n{result.stderr.strip()}"
            )
        prune_layer(target)
        return True


def prune_layer(site_packages: Path) -> None:
    """Drop what never runs in Lambda: console scripts, bytecode caches and packages' test suites."""
    shutil.rmtree(site_packages / "bin", ignore_errors=True)
    for pattern in ("__pycache__", "tests"):
        for directory in sorted(site_packages.rglob(pattern), reverse=True):
            if directory.is_dir():
                shutil.rmtree(directory, ignore_errors=True)


def dependency_layer_code(platform: LambdaPlatform, requirements: Path = LAMBDA_REQUIREMENTS) -> lambda_.Code:
    bundler = WheelhouseLayerBundler(requirements=requirements, wheelhouse=WHEELHOUSE_DIR, platform=platform)
    return lambda_.Code.from_asset(
        str(LAMBDAS_DIR),
        exclude=["*", f"!{requirements.name}"],
        asset_hash=layer_asset_hash(requirements, platform, WHEELHOUSE_DIR),
        asset_hash_type=cdk.AssetHashType.CUSTOM,
        bundling=cdk.BundlingOptions(
            # Never pulled: the local bundler always succeeds or raises.
            image=cdk.DockerImage.from_registry(f"public.ecr.aws/sam/build-python{platform.python_version}"),
            local=bundler,  # type: ignore[arg-type]  # @jsii.implements(ILocalBundling), checked by jsii
        ),
    )


def function_code() -> lambda_.Code:
    return lambda_.Code.from_asset(str(LAMBDAS_DIR), exclude=function_code_excludes())


class Functions(Construct):
    """Three functions sharing one code asset and one dependency layer, plus the report layer for the
    finalize function; each has its own role and log group. The roles only get log access here;
    ``access.GroundTruthAccess`` adds the data rights."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: GtsegSettings,
        platform: LambdaPlatform,
        storage: Storage,
        label_category_config_uri: str,
    ) -> None:
        super().__init__(scope, construct_id)
        self._settings = settings
        self._platform = platform
        self._code = function_code()
        self.layer = lambda_.LayerVersion(
            self,
            "DependencyLayer",
            code=dependency_layer_code(platform),
            compatible_runtimes=[platform.runtime],
            compatible_architectures=[platform.architecture],
            description=f"gtseg runtime dependencies (lambdas/requirements.txt) for "
            f"python{platform.python_version} arm64",
            removal_policy=cdk.RemovalPolicy.DESTROY if settings.destroy_on_delete else None,
        )
        output_kms_env = (
            {"OUTPUT_KMS_KEY_ID": storage.encryption_key.key_arn} if storage.encryption_key else {}
        )

        pre_annotation_env = {
            "LABEL_CATEGORY_CONFIG_URI": label_category_config_uri,
            "OUTPUT_BUCKET": storage.output_bucket.bucket_name,
        }
        if settings.prior_label_attribute:
            pre_annotation_env["PRIOR_LABEL_ATTRIBUTE"] = settings.prior_label_attribute
        if settings.prelabel_endpoint_name:
            pre_annotation_env["PRELABEL_ENDPOINT_NAME"] = settings.prelabel_endpoint_name
        self.pre_annotation = self.add_function(
            "PreAnnotation",
            service_name=PRE_ANNOTATION_SERVICE,
            handler=PRE_ANNOTATION_HANDLER,
            description="Ground Truth pre-annotation: task input per data object",
            memory_mb=settings.pre_annotation_memory_mb,
            timeout=PRE_ANNOTATION_TIMEOUT,
            environment=pre_annotation_env,
        )
        self.consolidation = self.add_function(
            "Consolidation",
            service_name=CONSOLIDATION_SERVICE,
            handler=CONSOLIDATION_HANDLER,
            description="Ground Truth annotation consolidation: merged masks per batch",
            memory_mb=settings.consolidation_memory_mb,
            timeout=Duration.seconds(settings.consolidation_timeout_seconds),
            environment={
                "CONSOLIDATION_METHOD": settings.consolidation_method,
                "CONSOLIDATION_SMOOTHING": str(settings.consolidation_smoothing),
                **output_kms_env,
            },
        )
        # The finalize function's second layer (infra/finalize.py adds that function).
        self.report_layer = lambda_.LayerVersion(
            self,
            "ReportLayer",
            code=dependency_layer_code(platform, REPORT_REQUIREMENTS),
            compatible_runtimes=[platform.runtime],
            compatible_architectures=[platform.architecture],
            description=f"gtseg report templating (lambdas/{REPORT_REQUIREMENTS.name}) for "
            f"python{platform.python_version} arm64",
            removal_policy=cdk.RemovalPolicy.DESTROY if settings.destroy_on_delete else None,
        )
        # The launcher's stack wiring (role ARN, function ARNs, ...) arrives via configure_launcher.
        self.launcher = self.add_function(
            "Launcher",
            service_name=LAUNCHER_SERVICE,
            handler=LAUNCHER_HANDLER,
            description="Starts gtseg labeling jobs from a job spec",
            memory_mb=settings.launcher_memory_mb,
            timeout=LAUNCHER_TIMEOUT,
            environment={},
        )

    @property
    def all(self) -> tuple[lambda_.Function, ...]:
        return (self.pre_annotation, self.consolidation, self.launcher)

    def configure_launcher(self, environment: LauncherSettings) -> None:
        for name, value in environment.as_env().items():
            self.launcher.add_environment(name, value)

    def add_function(
        self,
        construct_id: str,
        *,
        handler: str,
        service_name: str,
        description: str,
        memory_mb: int,
        timeout: Duration,
        environment: dict[str, str],
        layers: list[lambda_.ILayerVersion] | None = None,
        ephemeral_storage_mb: int | None = None,
    ) -> lambda_.Function:
        """A function of this code asset and layer (plus ``layers``), with its own role and log
        group: the three here, and those a construct of another concern adds (``infra/streaming.py``,
        ``infra/finalize.py``)."""
        settings = self._settings
        log_group = logs.LogGroup(
            self,
            f"{construct_id}Logs",
            retention=settings.log_retention,
            removal_policy=settings.removal_policy,
        )
        # Own role without the AWSLambdaBasicExecutionRole managed policy: logs for this group only.
        role = iam.Role(
            self,
            f"{construct_id}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"gtseg {construct_id} Lambda",
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[log_group.log_group_arn],
            )
        )
        return lambda_.Function(
            self,
            construct_id,
            runtime=self._platform.runtime,
            architecture=self._platform.architecture,
            handler=handler,
            code=self._code,
            layers=[self.layer, *(layers or [])],
            ephemeral_storage_size=cdk.Size.mebibytes(ephemeral_storage_mb) if ephemeral_storage_mb else None,
            role=role,
            log_group=log_group,
            memory_size=memory_mb,
            timeout=timeout,
            description=description,
            environment={
                "POWERTOOLS_SERVICE_NAME": service_name,
                "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
                "LOG_LEVEL": settings.log_level,
                **environment,
            },
        )
