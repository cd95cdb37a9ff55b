"""``gtseg simulate --streaming``: a streaming labeling job run locally, objects sent while it runs.

What Ground Truth does for a streaming job (developer guide, "Ground Truth streaming labeling
jobs"), reproduced against moto's SNS and SQS next to its S3:

* when the job starts it creates the queue ``GroundTruth-<job name in lower case>`` and subscribes
  it to the job's input topic; it labels the initial manifest's objects (if any), then each object
  that arrives: a manifest line published to the topic (``gtseg send``), or an upload the bucket
  announces (S3 event notification); S3's ``s3:TestEvent`` is not a data object;
* each object gets a de-duplication ID (``dataset-objectid-attribute-name``, else the SNS message
  ID, or for S3 the URI plus the event's sequencer); an ID seen before is not labeled again;
* every labeled object is announced on the output topic as its output line; the job's S3 output
  (``manifests/output/output.manifest``, counters) is brought up to date as it goes;
* the job runs until StopLabelingJob: Stopping, then Stopped; Ground Truth unsubscribes its queue
  and leaves it (and whatever is still in it) behind.

``StreamingGroundTruthEmulator`` is that engine (the per-object steps are ``GroundTruthEmulator``'s:
pre-annotation, the worker page, the workers, consolidation). ``run_streaming_job`` is the run
``gtseg simulate --streaming`` makes: the stack's topics and upload wiring, gtseg's launcher with a
``"streaming": true`` spec whose ``images`` are the first objects, then, while the job runs, images
sent to the input topic the way ``gtseg send`` sends them (one twice, to show the de-duplication),
more uploaded under the upload prefix, each announcement finalized by the streaming-output Lambda
into the job's streaming dataset, and the job stopped the way ``gtseg stop --wait`` stops it.
Emulator choices are marked as such (docs/local-run.md lists them).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from gtseg.aws.s3 import S3Store
from gtseg.aws.streaming import publish_lines
from gtseg.core.manifest import iso_timestamp
from gtseg.core.streaming import (
    DEDUPE_KEY,
    STREAMING_DATASET_DIR,
    input_line,
    input_topic_of,
    output_topic_of,
    parse_input_message,
    queue_name,
)
from gtseg.core.uris import join_uri
from gtseg.local.ground_truth import (
    GroundTruthEmulator,
    JobFailed,
    JobReport,
    ObjectOutcome,
    WorkerSubmission,
)
from gtseg.local.lambda_runtime import LocalLambda
from gtseg.local.preview.human import HumanWorker
from gtseg.local.simulated_job import (
    DATA_BUCKET,
    Progress,
    Sample,
    SimulatedWorkforce,
    SimulationError,
    SimulationOptions,
    SimulationResult,
    _noop,
    collect_results,
    emulated_aws,
    function_settings,
    job_spec,
    labeling_lambdas,
    prepare_buckets,
    upload_samples,
)
from gtseg.streaming.output import gather_lines

UPLOAD_PREFIX = "incoming/"  # the stack's streamingUploadPrefix, in the demo
SENT_PREFIX = "sent/"  # where the images `gtseg send` sends are (anywhere in the data bucket will do)
INITIAL_PREFIX = "images/"  # the spec's images: the job's first objects
OUTPUT_SUBSCRIBER = "gtseg-streaming-output"  # an SQS queue standing in for the Lambda subscription
POLL_SECONDS = 0.05
RUN_TIMEOUT_SECONDS = 600.0


@dataclass
class StreamingLog:
    """What the engine saw on the input side and said on the output side."""

    messages: int = 0
    origins: Counter[str] = field(default_factory=Counter)  # objects by how they came: sns, s3, manifest
    duplicates: list[str] = field(default_factory=list)  # de-duplication IDs seen again (not labeled)
    test_events: int = 0
    problems: list[str] = field(default_factory=list)  # messages that held no data object
    announced: int = 0
    left_in_queue: int = 0  # messages still in Ground Truth's queue when the job stopped

    def to_dict(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "objects": dict(self.origins),
            "duplicates": list(self.duplicates),
            "testEvents": self.test_events,
            "problems": list(self.problems),
            "announced": self.announced,
            "leftInQueue": self.left_in_queue,
        }


class StreamingGroundTruthEmulator(GroundTruthEmulator):
    """Runs a streaming labeling job recorded by the stand-in until it is stopped (see the module
    docstring); ``run(job_name) -> JobReport``, like the one-time engine."""

    def __init__(self, *, sns: Any, sqs: Any, poll_seconds: float = POLL_SECONDS, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sns = sns
        self.sqs = sqs
        self.poll_seconds = poll_seconds
        self.log = StreamingLog()
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self.report: JobReport | None = None

    def processed(self) -> int:
        """Objects that are done (labeled, failed or skipped): safe to call from another thread."""
        with self._lock:
            report = self.report
            return 0 if report is None else sum(1 for o in report.objects if o.status != "pending")

    def run(self, job_name: str) -> JobReport:
        record = self.sagemaker.job(job_name)
        request = record.request
        topic = input_topic_of(request)
        if topic is None:
            raise ValueError(f"{job_name} is not a streaming job (no SnsDataSource): use GroundTruthEmulator")
        report = JobReport(
            job_name=record.name, job_arn=record.arn, label_attribute_name=request["LabelAttributeName"]
        )
        report.job_prefix = join_uri(request["OutputConfig"]["S3OutputPath"], record.name)
        self.report = report
        queue_url, subscription = self._subscribe(topic, record.name)
        self.sagemaker.update_job(record.name, status="InProgress")
        try:
            self._stream(record.name, record.arn, request, report, queue_url)
            report.status = "Stopped"
        except JobFailed as exc:
            report.status = "Failed"
            report.failure_reason = str(exc)
        finally:
            # Ground Truth unsubscribes its queue and leaves it behind (it may hold objects)
            self.sns.unsubscribe(SubscriptionArn=subscription)
        self._write_output_manifest(record.name, report)
        self._report(record.name, report)
        return report

    # ------------------------------------------------------------------ the input side

    def _subscribe(self, topic: str, job_name: str) -> tuple[str, str]:
        queue_url = self.sqs.create_queue(QueueName=queue_name(job_name))["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        subscription = self.sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)["SubscriptionArn"]
        return queue_url, subscription

    def _receive(self, queue_url: str, report: JobReport) -> list[ObjectOutcome]:
        """The new data objects of the messages waiting now (each message deleted once read)."""
        messages = self.sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
        found: list[ObjectOutcome] = []
        for message in messages:
            self.log.messages += 1
            try:
                envelope = json.loads(message["Body"])
                parsed = parse_input_message(
                    envelope["Message"], envelope["MessageId"], report.label_attribute_name
                )
            except (ValueError, KeyError, TypeError) as exc:
                self.log.problems.append(f"a message without SNS's envelope ({exc})")
                parsed = None
            if parsed is not None:
                if parsed.test_event:
                    # Emulator choice: S3's test event is not labeled (the guide warns it may be when
                    # the bucket is wired after the job started; gtseg wires it at deploy time).
                    self.log.test_events += 1
                if parsed.problem:
                    self.log.problems.append(parsed.problem)
                for item in parsed.objects:
                    if item.dedupe_id in self._seen:
                        self.log.duplicates.append(item.dedupe_id)
                        continue
                    self._seen.add(item.dedupe_id)
                    self.log.origins[item.origin] += 1
                    with self._lock:
                        outcome = ObjectOutcome(str(len(report.objects)), item.line)
                        report.objects.append(outcome)
                    found.append(outcome)
            self.sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        return found

    def _stream(
        self, job_name: str, job_arn: str, request: Mapping[str, Any], report: JobReport, queue_url: str
    ) -> None:
        task_config = request["HumanTaskConfig"]
        report.labels = self._read_label_categories(request)
        template = self._read_template(task_config)
        pending: list[ObjectOutcome] = []
        if (request["InputConfig"]["DataSource"].get("S3DataSource") or {}).get("ManifestS3Uri"):
            self._read_manifest(request, report)  # the initial objects, labeled first
            for outcome in report.objects:
                key = outcome.data_object.get(DEDUPE_KEY)
                if isinstance(key, str) and isinstance(outcome.data_object.get(key), str):
                    self._seen.add(outcome.data_object[key])
                self.log.origins["manifest"] += 1
            pending = list(report.objects)
        record = self.sagemaker.job(job_name)
        started = time.monotonic()
        while True:
            if record.stop_requested:
                attributes = self.sqs.get_queue_attributes(
                    QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"]
                )["Attributes"]
                self.log.left_in_queue = int(attributes.get("ApproximateNumberOfMessages", 0))
                break
            if pending:
                for first in range(0, len(pending), self.batch_size):
                    self._label_batch(
                        pending[first : first + self.batch_size], job_name, job_arn, request, report, template
                    )
                pending = []
                continue
            pending = self._receive(queue_url, report)
            if not pending:
                time.sleep(self.poll_seconds)
        report.phase_seconds["streaming"] = time.monotonic() - started

    # ------------------------------------------------------------------ one batch of new objects

    def _label_batch(
        self,
        batch: list[ObjectOutcome],
        job_name: str,
        job_arn: str,
        request: Mapping[str, Any],
        report: JobReport,
        template: Any,
    ) -> None:
        task_config = request["HumanTaskConfig"]
        role_arn = request["RoleArn"]
        for outcome in batch:
            self._pre_annotate(outcome, task_config.get("PreHumanTaskLambdaArn"), job_arn, role_arn)
        answers: dict[str, list[WorkerSubmission]] = {}
        workers = int(task_config["NumberOfHumanWorkersPerDataObject"])
        for outcome in batch:
            if outcome.status == "pending":
                submissions = self._label(outcome, template, report.labels or None, workers, job_name, report)
                if submissions:
                    answers[outcome.dataset_object_id] = submissions
        ready = [o for o in batch if o.dataset_object_id in answers]
        acs = (task_config.get("AnnotationConsolidationConfig") or {}).get("AnnotationConsolidationLambdaArn")
        if ready:
            self._consolidate(ready, answers, acs, job_arn, role_arn, request, report)
        output_topic = output_topic_of(request)
        created = iso_timestamp(self.clock())
        for outcome in batch:
            if outcome.status == "labeled" and output_topic:
                line = self.output_line(outcome, job_name, report, created)
                self.sns.publish(TopicArn=output_topic, Message=json.dumps(line, ensure_ascii=False))
                self.log.announced += 1
        # Emulator choice: the S3 output and the counters are brought up to date after each batch
        # (Ground Truth: "periodically").
        self._write_output_manifest(job_name, report)
        self._report(job_name, report)
        self.progress("streaming", self.processed(), len(report.objects))

    def _report(self, job_name: str, report: JobReport) -> None:
        with self._lock:
            counters = {
                "TotalLabeled": report.count("labeled"),
                "HumanLabeled": report.count("labeled"),
                "MachineLabeled": 0,
                "FailedNonRetryableError": report.count("failed"),
                "Unlabeled": report.count("skipped") + report.count("pending"),
            }
        status = None if report.status == "InProgress" else report.status
        self.sagemaker.update_job(
            job_name,
            status=status,
            counters=counters,
            failure_reason=report.failure_reason,
            output_manifest_uri=report.output_manifest_uri,
        )


# --------------------------------------------------------------------------- gtseg simulate --streaming


@dataclass
class StreamingSimulationResult(SimulationResult):
    streaming: dict[str, Any] = field(default_factory=dict)

    def summary_lines(self) -> list[str]:
        s = self.streaming
        log = s.get("log", {})
        objects = log.get("objects", {})
        lines = [
            "\n  Streaming: the job ran until it was stopped; objects arrived while it ran",
            f"  first objects (spec 'images'): {objects.get('manifest', 0)}; sent to the input topic like "
            f"`gtseg send`: {objects.get('sns', 0)}; uploaded under {s.get('uploadPrefix')}: {objects.get('s3', 0)}",
            f"  resent and de-duplicated (not labeled twice): {len(log.get('duplicates', []))}; "
            f"S3 test events ignored: {log.get('testEvents', 0)}",
            f"  announced on the output topic: {log.get('announced', 0)}; finalized into the streaming dataset: "
            f"{s.get('finalized', 0)} ({s.get('rejected', 0)} refused)",
            f"  dataset: {self.job_dir}/{STREAMING_DATASET_DIR}/ (manifest {s.get('datasetManifest')})",
            f"  time streaming (sent to stopped): {self.seconds.get('streaming', 0.0):.1f}s",
        ]
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "streaming": self.streaming}


def split_waves(samples: list[Sample]) -> tuple[list[Sample], list[Sample], list[Sample]]:
    """The samples as the first objects, the ones sent to the topic and the ones uploaded."""
    first = -(-len(samples) // 3)  # a third (rounded up) first, then half the rest each way
    sent = -(-(len(samples) - first) // 2)
    return samples[:first], samples[first : first + sent], samples[first + sent :]


def run_streaming_job(
    options: SimulationOptions,
    profiles: tuple[str, ...],
    labels: tuple[str, ...],
    samples: list[Sample],
    truth_kind: str,
    out_dir: Path,
    seconds: dict[str, float],
    started: float,
    human: HumanWorker | None,
    progress: Progress = _noop,
) -> SimulationResult:
    """``simulated_job._run_job`` for a streaming job (``run_simulation(job_runner=...)``)."""
    if human is not None or options.human:
        raise SimulationError("--human is not available with --streaming")
    job_dir = out_dir / options.job_name
    logs = job_dir / "local-emulator" / "logs"
    behaviour = options.ground_truth
    # the job is Initializing until the engine has subscribed its queue to the input topic: what is
    # sent once it is InProgress reaches the job however slowly the engine's thread starts
    with emulated_aws(behaviour, initial_status="Initializing") as (store, sagemaker):
        t0 = time.monotonic()
        sns, sqs = boto3.client("sns"), boto3.client("sqs")
        template_uri = prepare_buckets(store, options)
        first, sent, uploaded = split_waves(samples)
        samples_by_uri = upload_samples(store, first, progress, INITIAL_PREFIX)
        sent_uris = list(upload_samples(store, sent, progress, SENT_PREFIX))
        topics = _stack_topics(sns, sqs, store, options.job_name)
        seconds["upload"] = time.monotonic() - t0

        names, arns, environments = function_settings(options.job_name, template_uri)
        environments["launcher"].update(
            STREAMING_INPUT_TOPIC_ARN=topics["input"], STREAMING_OUTPUT_TOPIC_ARN=topics["output"]
        )
        output_env = {**environments["consolidation"], "POWERTOOLS_SERVICE_NAME": "gtseg-streaming-output"}
        with ExitStack() as functions:
            launcher, pre, acs = labeling_lambdas(functions, names, environments, logs)
            finalizer = functions.enter_context(
                LocalLambda("gtseg.handlers.streaming_output.handler", function_name=f"{options.job_name}-streaming-output",
                            environment=output_env, log_path=logs / "streaming-output.log")
            )  # fmt: skip
            t0 = time.monotonic()
            spec = job_spec(options, labels, profiles, images_prefix=INITIAL_PREFIX, streaming=True)
            launched = launcher.invoke(spec)
            seconds["launch"] = time.monotonic() - t0
            if not launched.ok:
                raise SimulationError(f"the launcher Lambda refused the job: {launched.describe_error()}")
            job_name = launched.payload["jobName"]
            # every image the workers may get, whichever way it arrives
            samples_by_uri.update(
                {uri: s for uri, s in zip(sent_uris, sent, strict=True)}
                | {f"s3://{DATA_BUCKET}/{UPLOAD_PREFIX}{s.name}": s for s in uploaded}
            )
            workforce = SimulatedWorkforce(samples_by_uri, profiles, options.seed)
            emulator = StreamingGroundTruthEmulator(
                sagemaker=sagemaker, sns=sns, sqs=sqs,
                functions={arns["pre-annotation"]: pre, arns["consolidation"]: acs},
                workforce=workforce, store=store, batch_size=options.batch_size, progress=progress,
                behaviour=behaviour,
            )  # fmt: skip
            engine = _Engine(emulator, job_name)
            engine.start()
            t0 = time.monotonic()
            client = boto3.client("sagemaker")
            _wait(lambda: client.describe_labeling_job(LabelingJobName=job_name)["LabelingJobStatus"] == "InProgress",
                  engine, "the job to start")  # fmt: skip
            # While it runs: images sent the way `gtseg send` sends them, one of them twice ...
            lines = [input_line(uri) for uri in sent_uris]
            publish_lines(sns, topics["input"], lines + lines[:1])
            # ... and more uploaded under the upload prefix (the bucket announces them itself)
            upload_samples(store, uploaded, progress, UPLOAD_PREFIX)
            finalized = _Finalized()
            _wait(lambda: finalized.drain(sqs, topics["output_queue"], finalizer)
                  and emulator.processed() >= len(samples) and finalized.count >= emulator.log.announced,
                  engine, "every object to be labeled and finalized")  # fmt: skip
            client.stop_labeling_job(LabelingJobName=job_name)  # what `gtseg stop` asks
            report = engine.join()
            finalized.drain(sqs, topics["output_queue"], finalizer)
            manifest, gathered = gather_lines(store, report.job_prefix)  # what `gtseg stop --wait` adds
            seconds.update(report.phase_seconds)
            seconds["streaming"] = time.monotonic() - t0

        scores, calls = collect_results(report, emulator, workforce, samples_by_uri, store, sagemaker,
                                        out_dir=out_dir, input_dir=job_dir / "local-emulator" / "data-bucket",
                                        seconds=seconds, progress=progress)  # fmt: skip
    seconds["total"] = time.monotonic() - started
    result = StreamingSimulationResult(
        report, job_dir, job_dir / "local-emulator" / "data-bucket", scores, profiles, truth_kind, seconds,
        launched.payload, calls,
        streaming={
            "inputTopicArn": topics["input"], "outputTopicArn": topics["output"], "uploadPrefix": f"s3://{DATA_BUCKET}/{UPLOAD_PREFIX}",
            "log": emulator.log.to_dict(), "finalized": finalized.count, "rejected": finalized.rejected,
            "datasetManifest": manifest, "datasetObjects": gathered,
        },
    )  # fmt: skip
    (job_dir / "local-emulator" / "summary.json").write_text(json.dumps(result.to_dict(), indent=1) + "\n")
    return result


def _stack_topics(sns: Any, sqs: Any, store: S3Store, job_name: str) -> dict[str, str]:
    """What infra/streaming.py deploys: the two topics, uploads under the prefix wired to the input
    topic (before any job: S3's test event reaches no job), and a subscriber of the output topic
    (an SQS queue here; the stack subscribes the streaming-output Lambda)."""
    topics = {
        "input": sns.create_topic(Name=f"{job_name}-StreamingInput")["TopicArn"],
        "output": sns.create_topic(Name=f"{job_name}-StreamingOutput")["TopicArn"],
    }
    rules = [
        {
            "TopicArn": topics["input"],
            "Events": ["s3:ObjectCreated:*"],
            "Filter": {
                "Key": {
                    "FilterRules": [
                        {"Name": "prefix", "Value": UPLOAD_PREFIX},
                        {"Name": "suffix", "Value": suffix},
                    ]
                }
            },
        }
        for suffix in (".png", ".jpg", ".jpeg")
    ]
    store.client.put_bucket_notification_configuration(
        Bucket=DATA_BUCKET, NotificationConfiguration={"TopicConfigurations": rules}
    )
    queue_url = sqs.create_queue(QueueName=OUTPUT_SUBSCRIBER)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=topics["output"], Protocol="sqs", Endpoint=queue_arn)
    return {**topics, "output_queue": queue_url}


class _Engine(threading.Thread):
    """The streaming engine on a thread of its own: the job runs while objects are sent to it."""

    def __init__(self, emulator: StreamingGroundTruthEmulator, job_name: str) -> None:
        super().__init__(name="streaming-ground-truth", daemon=True)
        self.emulator = emulator
        self.job_name = job_name
        self.result: JobReport | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.emulator.run(self.job_name)
        except BaseException as exc:  # handed to the main thread by join()
            self.error = exc

    def join(self, timeout: float | None = RUN_TIMEOUT_SECONDS) -> JobReport:  # type: ignore[override]
        super().join(timeout)
        if self.error is not None:
            raise self.error
        if self.result is None:
            raise SimulationError(f"the streaming job did not stop within {timeout} s")
        return self.result


@dataclass
class _Finalized:
    """The output topic's subscriber: each announcement handed to the streaming-output Lambda in
    the event shape SNS gives a subscribed function."""

    count: int = 0
    rejected: int = 0

    def drain(self, sqs: Any, queue_url: str, finalizer: LocalLambda) -> bool:
        while True:
            messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
            if not messages:
                return True
            records = []
            for message in messages:
                envelope = json.loads(message["Body"])
                records.append({"EventSource": "aws:sns", "EventVersion": "1.0", "Sns": {
                    "Type": "Notification", "MessageId": envelope.get("MessageId"),
                    "TopicArn": envelope.get("TopicArn"), "Message": envelope.get("Message"),
                    "Timestamp": envelope.get("Timestamp"),
                }})  # fmt: skip
            invocation = finalizer.invoke({"Records": records})
            if not invocation.ok:
                raise SimulationError(f"the streaming-output Lambda failed: {invocation.describe_error()}")
            self.count += int(invocation.payload.get("finalized", 0))
            self.rejected += int(invocation.payload.get("rejected", 0))
            for message in messages:
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def _wait(done: Callable[[], bool], engine: _Engine, what: str, timeout: float = RUN_TIMEOUT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if not engine.is_alive():
            engine.join(0)  # raises the engine's error, or says it ended
            raise SimulationError(f"the streaming job ended while waiting for {what}")
        if time.monotonic() > deadline:
            raise SimulationError(f"gave up waiting {timeout:.0f} s for {what}")
        time.sleep(POLL_SECONDS)
