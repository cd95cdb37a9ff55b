"""``gtseg launch SPEC.json [--stack NAME | --direct] [--dry-run]``: start a labeling job.

* --stack NAME invokes the deployed launcher Lambda (its name is the stack output
  LauncherFunctionName) with the spec as the event;
* --direct runs the same code (gtseg.launcher.launch) here with local credentials; the stack's
  settings come from flags or the launcher's environment-variable names;
* --dry-run validates, reads the input (and the gold manifest) and prints the
  CreateLabelingJob request, the object count and how many of them are gold objects, without
  writing or sending anything (with --stack it takes the settings from the deployed
  launcher's configuration). It works offline with no credentials: --map reads the spec's s3://
  inputs from local folders, and settings that are not given get placeholder values (named on
  stderr).

Without --stack or --direct: --stack $GTSEG_STACK_NAME when that is set, else direct.
The spec is checked here first either way, so a typo fails before any AWS call.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from gtseg.aws.s3 import S3Store, StorageError
from gtseg.cli.common import add_map_option, aws_problem, described, job_data_from_args, make_client
from gtseg.launcher.errors import LaunchError
from gtseg.launcher.launch import launch, plan_launch
from gtseg.launcher.settings import ENVIRONMENT, LauncherSettings
from gtseg.launcher.spec import SpecError, parse_job_spec
from gtseg.tools.jobdata import JobData, JobDataError

STACK_OUTPUT_KEY = "LauncherFunctionName"
STACK_ENV = "GTSEG_STACK_NAME"
# The launcher lists prefixes and writes the manifest before answering: wait as long as a Lambda
# may run. One retry is safe because a relaunch of the same spec returns the same job.
INVOKE_CONFIG = Config(read_timeout=905, connect_timeout=10, retries={"total_max_attempts": 2})

# flag -> LauncherSettings attribute (defaults come from the environment variable of that setting)
SETTING_FLAGS = {
    "--role-arn": "ground_truth_role_arn",
    "--pre-annotation-arn": "pre_annotation_function_arn",
    "--consolidation-arn": "consolidation_function_arn",
    "--template-uri": "worker_template_uri",
    "--data-bucket": "data_bucket",
    "--output-bucket": "output_bucket",
    "--workteam-arn": "default_workteam_arn",
    "--kms-key-id": "output_kms_key_id",
    "--input-topic-arn": "streaming_input_topic_arn",
    "--output-topic-arn": "streaming_output_topic_arn",
}
# --dry-run without a stack's settings: what each missing required setting becomes in the printed
# request ({region}: AWS_REGION, else us-east-1). Valid values, obviously not a real account's.
DRY_RUN_PLACEHOLDERS = {
    "ground_truth_role_arn": "arn:aws:iam::000000000000:role/dry-run-GroundTruthRole",
    "pre_annotation_function_arn": "arn:aws:lambda:{region}:000000000000:function:dry-run-pre-annotation",
    "consolidation_function_arn": "arn:aws:lambda:{region}:000000000000:function:dry-run-consolidation",
    "worker_template_uri": "s3://dry-run-data-bucket/templates/semantic-segmentation.liquid.html",
    "data_bucket": "dry-run-data-bucket",
    "output_bucket": "dry-run-output-bucket",
    "default_workteam_arn": "arn:aws:sagemaker:{region}:000000000000:workteam/private-crowd/dry-run",
}
# ...and for a streaming spec (docs/streaming.md), its input topic.
DRY_RUN_STREAMING_PLACEHOLDERS = {
    "streaming_input_topic_arn": "arn:aws:sns:{region}:000000000000:dry-run-streaming-input",
}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "launch",
        help="start a labeling job from a job spec",
        description=described(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("spec", metavar="SPEC.json", help="the job spec ('-' reads stdin)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--stack", metavar="NAME", help="invoke the launcher Lambda of this deployed stack")
    mode.add_argument("--direct", action="store_true", help="run the launcher here with local credentials")
    parser.add_argument(
        "--dry-run", action="store_true", help="validate and print the CreateLabelingJob request only"
    )
    parser.add_argument("--json", action="store_true", help="print the whole result as JSON")
    add_map_option(parser)
    settings = parser.add_argument_group("settings for --direct (default: the environment variable named)")
    for flag, attr in SETTING_FLAGS.items():
        settings.add_argument(flag, dest=attr, metavar="VALUE", help=ENVIRONMENT[attr])
    parser.set_defaults(func=run)


def _read_spec(path: str) -> Any:
    text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except ValueError as exc:
        raise SpecError([f"spec: {path} is not valid JSON ({exc})"]) from None


def settings_from_args(args: argparse.Namespace, environ: dict[str, str] | None = None) -> LauncherSettings:
    environ = dict(os.environ if environ is None else environ)
    values = {var: getattr(args, attr, None) or environ.get(var) for attr, var in ENVIRONMENT.items()}
    return LauncherSettings.from_mapping(values)


def dry_run_settings(
    args: argparse.Namespace, environ: dict[str, str] | None = None, *, streaming: bool = False
) -> tuple[LauncherSettings, list[str]]:
    """The settings of a dry run without a stack: flags and environment variables, and a
    placeholder for each required one that is missing; returns the names that got one."""
    environ = dict(os.environ if environ is None else environ)
    region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    values = {var: getattr(args, attr, None) or environ.get(var) for attr, var in ENVIRONMENT.items()}
    placeholders = []
    wanted = {**DRY_RUN_PLACEHOLDERS, **(DRY_RUN_STREAMING_PLACEHOLDERS if streaming else {})}
    for attr, placeholder in wanted.items():
        if not values.get(ENVIRONMENT[attr]):
            values[ENVIRONMENT[attr]] = placeholder.format(region=region)
            placeholders.append(ENVIRONMENT[attr])
    return LauncherSettings.from_mapping(values), placeholders


@dataclass
class MappedStore(S3Store):
    """The launcher's reads through JobData: an s3:// URI under a --map prefix is read from the
    local folder, any other from S3 (a client is made only then). A dry run writes nothing."""

    client: Any = None
    data: JobData = field(default_factory=JobData)

    def get_bytes(self, uri: str) -> bytes:
        try:
            return self.data.read_bytes(uri)
        except JobDataError as exc:
            raise _storage_error(exc) from exc

    def exists(self, uri: str) -> bool:
        try:
            return self.data.exists(uri)
        except JobDataError as exc:
            raise _storage_error(exc) from exc

    def list_keys(self, prefix_uri: str) -> list[str]:
        try:
            return self.data.list_files(prefix_uri)
        except JobDataError as exc:
            raise _storage_error(exc) from exc


def _storage_error(exc: JobDataError) -> StorageError:
    """The launcher names the URI itself: only the reason, an SDK one in the CLI's words."""
    cause = exc.__cause__
    if isinstance(cause, BotoCoreError | ClientError):
        return StorageError(f"{aws_problem(cause)}; a dry run can read it from a local folder with --map")
    return StorageError(str(exc))


class LazyClient:
    """A boto3 client made on first use: a dry run that never asks SageMaker needs no region."""

    def __init__(self, service: str) -> None:
        self.service = service
        self._client: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._client is None:
            self._client = make_client(self.service)
        return getattr(self._client, name)


def launcher_function_name(cloudformation: Any, stack: str) -> str:
    try:
        stacks = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    except ClientError as exc:
        raise LaunchError(f"stack {stack!r}: {exc.response.get('Error', {}).get('Message', exc)}") from None
    outputs = {o["OutputKey"]: o["OutputValue"] for o in (stacks[0].get("Outputs") or [])} if stacks else {}
    if STACK_OUTPUT_KEY not in outputs:
        raise LaunchError(f"stack {stack!r} has no output {STACK_OUTPUT_KEY!r}: is it a gtseg stack?")
    return outputs[STACK_OUTPUT_KEY]


def settings_from_function(lambda_client: Any, function_name: str) -> LauncherSettings:
    """The deployed launcher's own settings (its environment variables), for ``--stack --dry-run``."""
    config = lambda_client.get_function_configuration(FunctionName=function_name)
    return LauncherSettings.from_mapping((config.get("Environment") or {}).get("Variables") or {})


def invoke_launcher(lambda_client: Any, function_name: str, spec: Any) -> dict[str, Any]:
    response = lambda_client.invoke(
        FunctionName=function_name,
        InvocationType="RequestResponse",
        Payload=json.dumps(spec).encode("utf-8"),
    )
    body = response["Payload"].read()
    try:
        payload = json.loads(body or b"null")
    except ValueError:
        payload = {"errorMessage": body.decode("utf-8", errors="replace")}
    if response.get("FunctionError"):
        payload = payload if isinstance(payload, dict) else {}
        kind = payload.get("errorType", response["FunctionError"])
        raise LaunchError(f"{function_name}: {kind}: {payload.get('errorMessage', 'no message')}")
    if not isinstance(payload, dict) or "jobArn" not in payload:
        raise LaunchError(f"{function_name} answered without a job: {payload!r}")
    return payload


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except SpecError as exc:
        print(f"gtseg launch: invalid job spec: {'; '.join(exc.problems)}", file=sys.stderr)
        return 1
    except (LaunchError, StorageError) as exc:
        print(f"gtseg launch: {exc}", file=sys.stderr)
        return 1
    except (ClientError, BotoCoreError) as exc:
        print(f"gtseg launch: {aws_problem(exc)}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    raw = _read_spec(args.spec)
    spec = parse_job_spec(raw)  # fail on the spec before any AWS call, whatever the mode
    stack = None if args.direct else (args.stack or os.environ.get(STACK_ENV) or None)
    if args.dry_run:
        placeholders: list[str] = []
        if stack:
            lambda_client = make_client("lambda")
            function = launcher_function_name(make_client("cloudformation"), stack)
            settings = settings_from_function(lambda_client, function)
        else:
            settings, placeholders = dry_run_settings(args, streaming=spec.streaming)
        plan = plan_launch(
            spec, settings, MappedStore(data=job_data_from_args(args)), LazyClient("sagemaker")
        )
        print(json.dumps(plan.request, indent=2, sort_keys=True))
        if placeholders:
            print(
                f"dry run: placeholders for the settings not given: {', '.join(placeholders)}",
                file=sys.stderr,
            )
        print(
            f"dry run: {plan.object_count} objects ({plan.gold_count} gold); would write "
            f"{plan.manifest_uri + ' and ' if plan.manifest_uri else ''}"
            f"{plan.label_category_config_uri}; {len(plan.skipped)} input lines skipped",
            file=sys.stderr,
        )
        for reason in plan.skipped[:10]:
            print(f"  skipped {reason}", file=sys.stderr)
        return 0
    if stack:
        function = launcher_function_name(make_client("cloudformation"), stack)
        result = invoke_launcher(make_client("lambda", INVOKE_CONFIG), function, raw)
    else:
        settings = settings_from_args(args)
        result = launch(spec, settings, S3Store(client=make_client("s3")), make_client("sagemaker")).to_dict()
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
    else:
        print(result["jobArn"])
        verb = "started" if result.get("created", True) else "already running from this same spec"
        gold = f" ({result['goldCount']} gold)" if result.get("goldCount") else ""
        print(f"{result['jobName']}: {verb}; {result.get('objectCount')} objects{gold}", file=sys.stderr)
        if result.get("inputTopicArn"):
            print(f"  streaming: send images with `gtseg send {result['jobName']} s3://...`", file=sys.stderr)
        if result.get("skippedCount"):
            print(
                f"  {result['skippedCount']} input lines skipped, e.g. {result['skipped'][0]}",
                file=sys.stderr,
            )
    return 0
