"""A complete labeling job with simulated workers, run on the local emulator (``gtseg simulate``).

Everything real except the AWS services and the people: the launcher, pre-annotation and
consolidation handlers run in awslambdaric sandboxes, the worker template is rendered and
checked, boto3 talks to moto's S3 and the SageMaker stand-in over HTTP, and the masks that come
out are scored against the known truth.

Sample data: synthetic street scenes (``gtseg.local.simulation``: several classes, small and thin
objects) with exact truth, or the user's own images (``images_dir``), for which the "truth" is a
colour-quantised stand-in so that simulated workers have something image-shaped to paint.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from gtseg.aws.s3 import S3Store, StorageError
from gtseg.core.consolidation import AppliedMethod, majority_vote
from gtseg.core.labels import ClassMap, LabelError
from gtseg.core.layout import sidecar_ref
from gtseg.core.manifest import safe_filename
from gtseg.core.masks import MaskError, read_class_mask
from gtseg.core.metrics import mean_iou
from gtseg.core.sidecar import ConsolidationSidecar
from gtseg.core.uris import parse_s3_prefix, parse_s3_uri
from gtseg.local.ground_truth import (
    GroundTruthBehaviour,
    GroundTruthEmulator,
    JobReport,
    WorkerSubmission,
    WorkerTask,
)
from gtseg.local.lambda_runtime import LocalLambda, function_arn
from gtseg.local.moto_server import LocalMotoServer
from gtseg.local.preview.answers import AnswerError, decode_answer
from gtseg.local.preview.human import HUMAN_PROFILE, HumanStopped, HumanWorker
from gtseg.local.sagemaker_standin import SageMakerStandin
from gtseg.local.simulation import DEFAULT_LABELS, PROFILES, WorkerProfile, make_scene, paint, worker_answer

DATA_BUCKET = "gtseg-demo-data"
OUTPUT_BUCKET = "gtseg-demo-output"
ROLE_ARN = "arn:aws:iam::123456789012:role/gtseg-demo-GroundTruthRole"
WORKTEAM_ARN = "arn:aws:sagemaker:us-east-1:123456789012:workteam/private-crowd/gtseg-demo"
TEMPLATE = Path(__file__).resolve().parents[1] / "templates" / "semantic-segmentation.liquid.html"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
DEFAULT_PROFILES = ("careful", "average", "average", "sloppy", "spammer")
MAX_WORKERS = 9  # NumberOfHumanWorkersPerDataObject (protocol doc §6)
JOB_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")  # LabelingJobName (botocore model)
CORS_RULE = {
    "AllowedHeaders": [],
    "AllowedMethods": ["GET"],
    "AllowedOrigins": ["*"],
    "ExposeHeaders": ["Access-Control-Allow-Origin"],
}

# (phase, done, total)
Progress = Callable[[str, int, int], None]


class SimulationError(ValueError):
    """Options or inputs the simulation cannot run with; the message says which."""


@dataclass(frozen=True)
class SimulationOptions:
    objects: int | None = None  # None: 8 synthetic scenes, or every image in images_dir
    workers: int | None = None  # None: one per profile
    profiles: tuple[str, ...] = DEFAULT_PROFILES
    seed: int = 0
    size: tuple[int, int] = (640, 480)
    images_dir: Path | None = None
    out_dir: Path = Path("demo-output")
    batch_size: int = 10
    job_name: str = "gtseg-demo"
    template: Path = TEMPLATE
    labels: tuple[str, ...] = DEFAULT_LABELS
    # --human: the person at the browser is the first of the K workers (HUMAN_PROFILE), the
    # simulated profiles fill the other K-1 places; K defaults to one per profile plus them.
    human: bool = False
    human_timeout: float | None = None  # seconds the job waits for each of their answers
    # Ground Truth's unconfirmed behaviours (docs/protocol.md); the defaults are what real jobs showed
    ground_truth: GroundTruthBehaviour = field(default_factory=GroundTruthBehaviour)
    force: bool = False  # replace an earlier job folder of the same name (one gtseg simulate wrote)

    def worker_profiles(self) -> tuple[str, ...]:
        """The profile of each of the K workers: ``profiles`` cycled (or cut) to K."""
        if not self.profiles:
            raise SimulationError("--profiles needs at least one profile")
        unknown = sorted({p for p in self.profiles if p not in PROFILES})
        if unknown:
            raise SimulationError(
                f"unknown worker profile(s) {', '.join(unknown)}; choose from {', '.join(PROFILES)}"
            )
        count = self.workers if self.workers is not None else len(self.profiles) + int(self.human)
        if not 1 <= count <= MAX_WORKERS:
            raise SimulationError(
                f"--workers must be 1..{MAX_WORKERS} (Ground Truth's limit per object), got {count}"
            )
        if self.human:
            simulated = tuple(self.profiles[i % len(self.profiles)] for i in range(count - 1))
            return (HUMAN_PROFILE, *simulated)
        return tuple(self.profiles[i % len(self.profiles)] for i in range(count))


@dataclass(frozen=True)
class Sample:
    """One data object: the picture workers see and the truth their masks are scored against."""

    name: str
    image_bytes: bytes
    truth: np.ndarray  # (H, W) uint8 class indices of ``class_map``
    class_map: ClassMap
    scene: Any = None  # gtseg.local.simulation.Scene for synthetic samples (workers redraw its shapes)


@dataclass
class ObjectScore:
    dataset_object_id: str
    source_ref: str
    status: str
    consolidated_iou: float | None = None
    majority_iou: float | None = None
    image_confidence: float | None = None
    worker_iou: list[tuple[str, str, float]] = field(default_factory=list)  # (worker id, profile, IoU)
    estimated_quality: dict[str, float] = field(default_factory=dict)  # worker id -> sidecar quality
    problem: str | None = None


@dataclass
class SimulationResult:
    report: JobReport
    job_dir: Path
    input_dir: Path
    scores: list[ObjectScore]
    worker_profiles: tuple[str, ...]
    truth_kind: str  # "synthetic" | "quantised"
    seconds: dict[str, float]
    launch: dict[str, Any]
    sagemaker_calls: list[str] = field(default_factory=list)  # operations the stand-in received, in order
    notes: list[str] = field(default_factory=list)  # what was skipped or changed on the way (images)

    def profile_summary(self) -> list[dict[str, Any]]:
        """Per profile: workers, mean IoU vs truth, mean quality the consolidation estimated."""
        rows = []
        for profile in dict.fromkeys(self.worker_profiles):
            ious = [iou for s in self.scores for _, p, iou in s.worker_iou if p == profile]
            ids = {w for s in self.scores for w, p, _ in s.worker_iou if p == profile}
            estimated = [q for s in self.scores for w, q in s.estimated_quality.items() if w in ids]
            rows.append(
                {
                    "profile": profile,
                    "workers": self.worker_profiles.count(profile),
                    "mean_iou": _mean(ious),
                    "estimated_quality": _mean(estimated),
                }
            )
        return rows

    def to_dict(self) -> dict[str, Any]:
        scored = [s for s in self.scores if s.consolidated_iou is not None]
        return {
            "jobName": self.report.job_name,
            "status": self.report.status,
            "failureReason": self.report.failure_reason,
            "truth": self.truth_kind,
            "objects": len(self.report.objects),
            "labeled": self.report.count("labeled"),
            "failed": self.report.count("failed"),
            "skipped": self.report.count("skipped"),
            "workerProfiles": list(self.worker_profiles),
            "meanIoU": {
                "consolidated": _mean([s.consolidated_iou for s in scored]),
                "majorityVote": _mean([s.majority_iou for s in scored]),
                "profiles": self.profile_summary(),
            },
            "confidenceVsIoU": {
                "pearson": confidence_correlation(self.scores),
                "objects": [
                    {
                        "datasetObjectId": s.dataset_object_id,
                        "imageConfidence": s.image_confidence,
                        "iou": s.consolidated_iou,
                    }
                    for s in scored
                ],
            },
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "contractProblems": list(self.report.contract_problems),
            "problems": [f"{s.dataset_object_id}: {s.problem}" for s in self.scores if s.problem],
            "notes": list(self.notes),
        }


def _mean(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def confidence_correlation(scores: Sequence[ObjectScore]) -> float | None:
    """Pearson r between image confidence and consolidated IoU (None with < 3 objects or no spread)."""
    pairs = [(s.image_confidence, s.consolidated_iou) for s in scores]
    pairs = [(c, q) for c, q in pairs if c is not None and q is not None]
    if len(pairs) < 3:
        return None
    conf, iou = np.array(pairs, dtype=np.float64).T
    if conf.std() < 1e-12 or iou.std() < 1e-12:
        return None
    return float(np.corrcoef(conf, iou)[0, 1])


# --------------------------------------------------------------------------- sample data


def synthetic_samples(count: int, seed: int, size: tuple[int, int], labels: Sequence[str]) -> list[Sample]:
    out = []
    for i in range(count):
        scene = make_scene(seed * 1000 + i, size[0], size[1], labels)
        buf = io.BytesIO()
        Image.fromarray(scene.image).save(buf, format="PNG", compress_level=1)
        out.append(Sample(f"scene-{i:03d}.png", buf.getvalue(), scene.truth, scene.class_map, scene))
    return out


def folder_samples(
    folder: Path, limit: int | None, labels: Sequence[str], notes: list[str] | None = None
) -> list[Sample]:
    """The user's images (subfolders included); truth = the picture quantised to one colour per
    class (a stand-in). A file that is not a readable image is skipped with a note in ``notes``,
    as the pre-annotation Lambda skips it; an EXIF-rotated JPEG is uploaded upright (its
    orientation applied, the tag dropped), so the workers, the masks and the truth all see the
    same pixels."""
    notes = [] if notes is None else notes
    if not folder.is_dir():
        raise SimulationError(f"--images {folder}: not a folder")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SimulationError(f"--images {folder}: no .jpg, .jpeg or .png files (subfolders included)")
    class_map = ClassMap.from_labels(labels)
    out: list[Sample] = []
    for path in files:
        if limit is not None and len(out) >= limit:
            break
        name = path.relative_to(folder).as_posix()  # a subfolder stays a prefix of the S3 key
        try:
            data = path.read_bytes()
            with Image.open(io.BytesIO(data)) as image:
                image.load()
                upright = ImageOps.exif_transpose(image)
                orientation = image.getexif().get(0x0112, 1)
                rgb = upright.convert("RGB")
        except (OSError, ValueError, SyntaxError) as exc:  # Pillow raises SyntaxError for some bad files
            notes.append(f"--images: skipped {name}: not a readable image ({exc.__class__.__name__})")
            continue
        if orientation not in (None, 1):
            buf = io.BytesIO()
            rgb.save(buf, format="PNG" if name.lower().endswith(".png") else "JPEG", quality=95)
            data = buf.getvalue()
            notes.append(f"--images: {name}: EXIF orientation {orientation} applied, uploaded upright")
        quantised = rgb.quantize(colors=len(class_map), method=Image.Quantize.MEDIANCUT)
        truth = np.asarray(quantised, dtype=np.uint8).copy()
        out.append(Sample(name, data, truth, class_map))
    if not out:
        raise SimulationError(f"--images {folder}: none of the {len(files)} image files is readable")
    return out


def paint_from_truth(
    truth: np.ndarray, profile: WorkerProfile, rng: np.random.Generator, n_classes: int
) -> np.ndarray:
    """A worker's mask when there are no shapes to redraw (``--images``): the truth, degraded.

    Offsets by the profile's shift, coarsens outlines like a hasty polygon, and relabels a few
    regions; spammers paint one class, blob painters random discs.
    """
    height, width = truth.shape
    if profile.behaviour == "constant":
        return np.full_like(truth, rng.integers(0, n_classes))
    if profile.behaviour == "blobs":
        yy, xx = np.mgrid[0:height, 0:width]
        out = np.zeros_like(truth)
        for _ in range(int(rng.integers(4, 12))):
            cy, cx = rng.uniform(0, height), rng.uniform(0, width)
            r = rng.uniform(0.05, 0.25) * min(height, width)
            out[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = rng.integers(1, n_classes)
        return out
    scale = min(height, width) / 480.0
    dy, dx = np.round(rng.normal(0.0, max(profile.offset, 0.5) * scale, size=2)).astype(int)
    out = np.roll(truth, (int(dy), int(dx)), axis=(0, 1))
    block = max(1, round(profile.vertex_jitter * scale))
    if block > 1:  # coarse outlines: paint at a lower resolution
        small = Image.fromarray(out).resize(
            (max(1, width // block), max(1, height // block)), Image.Resampling.NEAREST
        )
        out = np.asarray(small.resize((width, height), Image.Resampling.NEAREST), dtype=np.uint8).copy()
    # Whole regions mislabelled or left out, at the rates paint() uses for large regions.
    for cls in range(1, n_classes):
        if rng.random() < profile.confusion_rate / 5:
            out[out == cls] = rng.integers(1, n_classes)
        elif rng.random() < profile.miss_rate / 5:
            out[out == cls] = 0
    return out


def _remap(indices: np.ndarray, source: ClassMap, target: ClassMap) -> np.ndarray:
    """Class indices of ``source`` -> indices of ``target`` by class name (unknown -> background)."""
    lut = np.zeros(256, dtype=np.uint8)
    for i, name in enumerate(source.names):
        lut[i] = target.names.index(name) if name in target.names else 0
    return lut[indices]


# --------------------------------------------------------------------------- the workforce


class SimulatedWorkforce:
    """Answers each task with K simulated workers painting the sample behind its source-ref."""

    def __init__(
        self,
        samples_by_uri: dict[str, Sample],
        profiles: Sequence[str],
        seed: int,
        human: HumanWorker | None = None,
        human_timeout: float | None = None,
    ) -> None:
        self.samples = samples_by_uri
        self.profiles = tuple(profiles)
        self.seed = seed
        self.painted: dict[str, list[tuple[str, str, np.ndarray]]] = {}  # id -> (worker, profile, mask)
        self.class_maps: dict[str, ClassMap] = {}  # id -> the class map of the page workers saw
        self.human = human  # answers for the HUMAN_PROFILE place (--human)
        self.human_timeout = human_timeout
        self.human_problems: dict[str, str] = {}  # id -> why their answer could not be scored
        self._tasks_seen = 0

    @staticmethod
    def worker_id(k: int, profile: str) -> str:
        if profile == HUMAN_PROFILE:
            return f"private.us-east-1.person{k:02d}-{profile}"
        return f"private.us-east-1.sim{k:02d}-{profile}"

    def _human_answer(
        self, task: WorkerTask, page_map: ClassMap, worker: str
    ) -> tuple[WorkerSubmission | None, np.ndarray | None]:
        """The person's answer to ``task`` (None if they gave none) and their mask for scoring."""
        if self.human is None:
            raise SimulationError("the job has a human worker but nobody to ask (no HumanWorker)")
        element = task.rendered.element_name or "crowd-semantic-segmentation"

        def describe(content: Any) -> dict[str, Any]:
            return decode_answer(content, page_map, element_name=element).to_dict()

        try:
            answer = self.human.answer(
                task.rendered.html,
                title=f"Object {self._tasks_seen} of {len(self.samples)}",
                dataset_object_id=task.dataset_object_id,
                describe=describe,
                timeout=self.human_timeout,
            )
        except (TimeoutError, HumanStopped) as exc:
            self.human_problems[task.dataset_object_id] = f"{worker}: {exc}"
            return None, None
        try:
            mask = decode_answer(answer.answer_content, page_map, element_name=element).indices
        except AnswerError as exc:
            self.human_problems[task.dataset_object_id] = f"{worker}: your answer does not decode: {exc}"
            mask = None
        return WorkerSubmission(worker, answer.answer_content, answer.seconds), mask

    def __call__(self, task: WorkerTask) -> list[WorkerSubmission]:
        sample = self.samples.get(str(task.data_object.get("source-ref")))
        if sample is None:
            return []  # not our image: nobody works on it (the object fails as "no worker")
        # Workers paint with the labels and colours the page offered (Ground Truth's colour order).
        page_map = ClassMap.from_labels(task.rendered.labels)
        rng = np.random.default_rng([self.seed, int(task.dataset_object_id)])
        n_classes = len(sample.class_map)
        out = []
        painted = []
        self._tasks_seen += 1
        for k, name in enumerate(self.profiles[: task.workers_needed]):
            if name == HUMAN_PROFILE:
                worker = self.worker_id(k, name)
                submission, human_mask = self._human_answer(task, page_map, worker)
                if submission is not None:
                    out.append(submission)
                if human_mask is not None:
                    painted.append((worker, name, human_mask))
                continue
            profile = PROFILES[name]
            if sample.scene is not None:
                mask = paint(sample.scene, profile, rng)
            else:
                mask = paint_from_truth(sample.truth, profile, rng, n_classes)
            on_page = _remap(mask, sample.class_map, page_map)
            worker = self.worker_id(k, name)
            painted.append((worker, name, on_page))
            content = worker_answer(
                on_page, page_map, element_name=task.rendered.element_name or "crowd-semantic-segmentation"
            )
            out.append(WorkerSubmission(worker, content, float(rng.uniform(40, 400))))
        self.painted[task.dataset_object_id] = painted
        self.class_maps[task.dataset_object_id] = page_map
        return out


# --------------------------------------------------------------------------- the run


def _check_job_dir(path: Path, force: bool) -> None:
    """An earlier job folder is never replaced silently: only with ``force``, and only one that
    gtseg simulate wrote."""
    if not path.exists():
        return
    if not (path / "local-emulator").is_dir():
        raise SimulationError(f"{path} exists and was not written by gtseg simulate; choose another --out")
    if not force:
        raise SimulationError(
            f"{path} holds an earlier job; choose another --out or --job-name, or pass --force to replace it"
        )


def _move_into_place(staged: Path, final: Path) -> None:
    """``staged`` becomes ``final``; an earlier ``final`` (``--force``) is removed only afterwards."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.replaced-{staged.parent.name.rsplit('-', 1)[-1]}")
        final.rename(old)
    staged.rename(final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _noop(phase: str, done: int, total: int) -> None:
    return


# The job between the samples and the move into place (``_run_job``'s arguments; a streaming run
# brings its own: gtseg.local.streaming).
JobRunner = Callable[..., "SimulationResult"]


def run_simulation(
    options: SimulationOptions,
    progress: Progress = _noop,
    human: HumanWorker | None = None,
    *,
    job_runner: JobRunner | None = None,
) -> SimulationResult:
    """Run the whole job; raises SimulationError for bad options, else returns what happened.

    With ``options.human`` one worker of each object is the person at ``human``'s page (a
    started ``HumanWorker``; one on a free port is made when none is given). ``job_runner``
    replaces the one-time job (``gtseg simulate --streaming``)."""
    if options.human and human is None:
        with HumanWorker() as own:
            return run_simulation(options, progress, own)
    seconds: dict[str, float] = {}
    started = time.monotonic()
    profiles = options.worker_profiles()
    if not options.template.is_file():
        raise SimulationError(f"--template {options.template}: no such file")
    if options.batch_size < 1:
        raise SimulationError("--batch-size must be at least 1")
    if options.objects is not None and options.objects < 1:
        raise SimulationError("--objects must be at least 1")
    if options.seed < 0:
        raise SimulationError(f"--seed must be 0 or more, got {options.seed}")
    if not JOB_NAME.fullmatch(options.job_name):
        # checked here, not only by the launcher: the name is also a folder under --out
        raise SimulationError(
            f"--job-name {options.job_name!r}: letters, digits and hyphens, at most 63, "
            "starting and ending with a letter or digit (Ground Truth's rule)"
        )
    out_dir = Path(options.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise SimulationError(f"--out {out_dir} is a file, not a folder")
    try:
        labels = tuple(ClassMap.from_labels(options.labels).labels)
    except LabelError as exc:
        raise SimulationError(f"labels: {exc}") from exc
    notes: list[str] = []
    job_dir = out_dir / options.job_name
    _check_job_dir(job_dir, options.force)  # before the samples are made: a refusal costs nothing
    if options.images_dir is not None:
        samples = folder_samples(options.images_dir, options.objects, labels, notes)
        truth_kind = "quantised"
    else:
        # painting by hand takes longer than simulating: --human defaults to 3 scenes
        count = (3 if options.human else 8) if options.objects is None else options.objects
        samples = []
        progress("scenes", 0, count)
        for i, sample in enumerate(synthetic_samples(count, options.seed, options.size, labels), start=1):
            samples.append(sample)
            progress("scenes", i, count)
        truth_kind = "synthetic"
    seconds["samples"] = time.monotonic() - started

    # The job is written into a hidden staging folder beside its final place and moved there only
    # when the run has finished: an interrupted or failed run (Ctrl-C included) leaves nothing that
    # looks like a result, and an earlier job is replaced (--force) only by a complete one.
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{options.job_name}.partial-", dir=out_dir))
    try:
        result = (job_runner or _run_job)(
            options, profiles, labels, samples, truth_kind, staging, seconds, started, human, progress
        )
        result.notes[:0] = notes
        _move_into_place(staging / options.job_name, job_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    result.job_dir = job_dir
    result.input_dir = job_dir / "local-emulator" / "data-bucket"
    return result


def _run_job(
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
    """The job itself, written under ``out_dir/<job-name>/`` (the staging folder)."""
    job_dir = out_dir / options.job_name
    input_dir = job_dir / "local-emulator" / "data-bucket"  # a copy of the input bucket (images, manifest)
    logs = job_dir / "local-emulator" / "logs"

    behaviour = options.ground_truth
    with emulated_aws(behaviour) as (store, sagemaker):
        t0 = time.monotonic()
        template_uri = prepare_buckets(store, options)
        samples_by_uri = upload_samples(store, samples, progress)
        seconds["upload"] = time.monotonic() - t0

        names, arns, environments = function_settings(options.job_name, template_uri)
        with ExitStack() as functions:
            launcher, pre, acs = labeling_lambdas(functions, names, environments, logs)
            t0 = time.monotonic()
            spec = job_spec(options, labels, profiles, images_prefix="images/")
            launched = launcher.invoke(spec)
            seconds["launch"] = time.monotonic() - t0
            if not launched.ok:
                raise SimulationError(f"the launcher Lambda refused the job: {launched.describe_error()}")

            workforce = SimulatedWorkforce(
                samples_by_uri,
                profiles,
                options.seed,
                human=human if options.human else None,
                human_timeout=options.human_timeout,
            )
            emulator = GroundTruthEmulator(
                sagemaker=sagemaker,
                functions={arns["pre-annotation"]: pre, arns["consolidation"]: acs},
                workforce=workforce,
                store=store,
                batch_size=options.batch_size,
                progress=progress,
                behaviour=behaviour,
            )
            try:
                report = emulator.run(launched.payload["jobName"])
            finally:
                if options.human and human is not None:
                    human.finish()
            seconds.update(report.phase_seconds)

        scores, calls = collect_results(report, emulator, workforce, samples_by_uri, store, sagemaker,
                                        out_dir=out_dir, input_dir=input_dir, seconds=seconds,
                                        progress=progress)  # fmt: skip
    seconds["total"] = time.monotonic() - started
    result = SimulationResult(
        report, job_dir, input_dir, scores, profiles, truth_kind, seconds, launched.payload, calls
    )
    (job_dir / "local-emulator" / "summary.json").write_text(json.dumps(result.to_dict(), indent=1) + "\n")
    return result


@contextmanager
def emulated_aws(
    behaviour: GroundTruthBehaviour, *, initial_status: str = "InProgress"
) -> Iterator[tuple[S3Store, SageMakerStandin]]:
    """moto's server and the SageMaker stand-in on 127.0.0.1, this process's AWS clients pointed at
    them until the block ends."""
    standin = SageMakerStandin(
        arn_names=behaviour.arn_names, describe_names=behaviour.describe_names, initial_status=initial_status
    )
    with LocalMotoServer() as moto, standin as sagemaker:
        moto.set_service_endpoint("SAGEMAKER", sagemaker.endpoint_url or "")
        yield S3Store(), sagemaker


def labeling_lambdas(
    functions: ExitStack, names: dict[str, str], environments: dict[str, dict[str, str]], logs: Path
) -> tuple[LocalLambda, LocalLambda, LocalLambda]:
    """The launcher, pre-annotation and consolidation functions in their sandboxes, closed with ``functions``."""
    launcher, pre_annotation, consolidation = (
        functions.enter_context(
            LocalLambda(
                f"gtseg.handlers.{role.replace('-', '_')}.handler",
                function_name=names[role],
                environment=environments[role],
                log_path=logs / f"{role}.log",
            )
        )
        for role in ("launcher", "pre-annotation", "consolidation")
    )
    return launcher, pre_annotation, consolidation


def job_spec(
    options: SimulationOptions,
    labels: Sequence[str],
    profiles: Sequence[str],
    *,
    images_prefix: str,
    **extra: Any,
) -> dict[str, Any]:
    """The launcher spec of a simulated job: its images under ``images_prefix`` of the data bucket."""
    return {
        "jobName": options.job_name,
        "labels": list(labels),
        **extra,
        "images": {"prefix": f"s3://{DATA_BUCKET}/{images_prefix}"},
        "workersPerObject": len(profiles),
        "title": "Paint the street scene",
        "description": "Paint every pixel of the picture with the class it belongs to.",
    }


def collect_results(
    report: JobReport,
    emulator: GroundTruthEmulator,
    workforce: SimulatedWorkforce,
    samples_by_uri: dict[str, Sample],
    store: S3Store,
    sagemaker: SageMakerStandin,
    *,
    out_dir: Path,
    input_dir: Path,
    seconds: dict[str, float],
    progress: Progress = _noop,
) -> tuple[list[ObjectScore], list[str]]:
    """The job's output downloaded under ``out_dir`` and the data bucket into ``input_dir``, every
    object scored, and the SageMaker operations the job called."""
    t0 = time.monotonic()
    emulator.download(report, out_dir)
    _download_prefix(store, f"s3://{DATA_BUCKET}/", input_dir)
    seconds["download"] = time.monotonic() - t0
    t0 = time.monotonic()
    scores = score_job(report, workforce, samples_by_uri, store, progress)
    seconds["scoring"] = time.monotonic() - t0
    return scores, [operation for operation, _ in sagemaker.requests]


def prepare_buckets(store: S3Store, options: SimulationOptions) -> str:
    """The data and output buckets, the data bucket's CORS rule and the worker template (its URI)."""
    s3 = store.client
    for bucket in (DATA_BUCKET, OUTPUT_BUCKET):
        s3.create_bucket(Bucket=bucket)
    # The worker UI loads images from the data bucket: Ground Truth requires CORS (protocol §9.3).
    s3.put_bucket_cors(Bucket=DATA_BUCKET, CORSConfiguration={"CORSRules": [CORS_RULE]})
    template_uri = f"s3://{DATA_BUCKET}/templates/{options.template.name}"
    store.put_bytes(template_uri, options.template.read_bytes(), "text/html")
    return template_uri


def upload_samples(
    store: S3Store, samples: Sequence[Sample], progress: Progress = _noop, prefix: str = "images/"
) -> dict[str, Sample]:
    """Each sample's image under ``prefix`` of the data bucket; URI -> sample."""
    samples_by_uri: dict[str, Sample] = {}
    progress("upload", 0, len(samples))
    for i, sample in enumerate(samples, start=1):
        uri = f"s3://{DATA_BUCKET}/{prefix}{sample.name}"
        content_type = "image/png" if sample.name.lower().endswith(".png") else "image/jpeg"
        store.put_bytes(uri, sample.image_bytes, content_type)
        samples_by_uri[uri] = sample
        progress("upload", i, len(samples))
    return samples_by_uri


def function_settings(
    job_name: str, template_uri: str
) -> tuple[dict[str, str], dict[str, str], dict[str, dict[str, str]]]:
    """The local functions' names, ARNs and environments, by role (launcher, pre-annotation,
    consolidation), as the stack sets them."""
    names = {role: f"{job_name}-{role}" for role in ("launcher", "pre-annotation", "consolidation")}
    arns = {role: function_arn(name) for role, name in names.items()}
    common = {"POWERTOOLS_METRICS_NAMESPACE": "gtseg", "LOG_LEVEL": "INFO"}
    environments = {
        "launcher": {
            **common,
            "POWERTOOLS_SERVICE_NAME": "gtseg-launcher",
            "GROUND_TRUTH_ROLE_ARN": ROLE_ARN,
            "PRE_ANNOTATION_FUNCTION_ARN": arns["pre-annotation"],
            "CONSOLIDATION_FUNCTION_ARN": arns["consolidation"],
            "WORKER_TEMPLATE_URI": template_uri,
            "DATA_BUCKET": DATA_BUCKET,
            "OUTPUT_BUCKET": OUTPUT_BUCKET,
            "DEFAULT_WORKTEAM_ARN": WORKTEAM_ARN,
        },
        "pre-annotation": {
            **common,
            "POWERTOOLS_SERVICE_NAME": "gtseg-pre-annotation",
            "OUTPUT_BUCKET": OUTPUT_BUCKET,
        },
        "consolidation": {**common, "POWERTOOLS_SERVICE_NAME": "gtseg-consolidation"},
    }
    return names, arns, environments


def _download_prefix(store: S3Store, prefix_uri: str, target: Path) -> None:
    _, prefix = parse_s3_prefix(prefix_uri)
    for uri in store.list_keys(prefix_uri):
        _, key = parse_s3_uri(uri)
        path = target.joinpath(*[safe_filename(part) for part in key[len(prefix) :].split("/") if part])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(store.get_bytes(uri))


# --------------------------------------------------------------------------- scoring


def score_job(
    report: JobReport,
    workforce: SimulatedWorkforce,
    samples_by_uri: dict[str, Sample],
    store: S3Store,
    progress: Progress = _noop,
) -> list[ObjectScore]:
    """IoU vs truth of every consolidated mask, every worker and the majority vote of the same masks."""
    lan = report.label_attribute_name
    scores = []
    for done, outcome in enumerate(report.objects, start=1):
        source = str(outcome.data_object.get("source-ref"))
        score = ObjectScore(outcome.dataset_object_id, source, outcome.status)
        scores.append(score)
        progress("scoring", done, len(report.objects))
        sample = samples_by_uri.get(source)
        painted = workforce.painted.get(outcome.dataset_object_id)
        page_map = workforce.class_maps.get(outcome.dataset_object_id)
        if sample is None or not painted or page_map is None:
            score.problem = outcome.failure_reason
            continue
        if outcome.dataset_object_id in workforce.human_problems:
            score.problem = workforce.human_problems[outcome.dataset_object_id]
        truth = _remap(sample.truth, sample.class_map, page_map)
        n = len(page_map)
        score.worker_iou = [(w, p, mean_iou(mask, truth, n)) for w, p, mask in painted]
        score.majority_iou = mean_iou(majority_vote([m for _, _, m in painted], n), truth, n)
        content = outcome.content or {}
        mask_uri = content.get(lan)
        if outcome.status != "labeled" or not isinstance(mask_uri, str):
            score.problem = outcome.failure_reason or "no consolidated mask"
            continue
        try:
            metadata = content.get(f"{lan}-metadata") or {}
            job_map = ClassMap.from_internal_color_map(metadata["internal-color-map"])
            consolidated = read_class_mask(store.get_bytes(mask_uri), job_map)
        except (KeyError, LabelError, MaskError, StorageError) as exc:
            score.problem = f"cannot read the consolidated mask {mask_uri}: {exc}"
            continue
        if consolidated.shape != truth.shape:
            score.problem = f"consolidated mask is {consolidated.shape[::-1]}, the image {truth.shape[::-1]}"
            continue
        score.consolidated_iou = mean_iou(_remap(consolidated, job_map, page_map), truth, n)
        try:
            sidecar = ConsolidationSidecar.parse(store.get_bytes(sidecar_ref(mask_uri)))
        except StorageError:
            sidecar = None
        if sidecar is not None:
            score.image_confidence = sidecar.image_confidence
            # one worker: the consolidation writes quality 0.0 for "cannot be estimated", not "bad"
            if sidecar.method is not AppliedMethod.SINGLE_WORKER:
                for worker in sidecar.workers:
                    if worker.quality is not None:
                        score.estimated_quality[worker.worker_id] = worker.quality
        if score.image_confidence is None:
            color_map = metadata.get("internal-color-map") or {}
            first: dict[str, Any] = next(iter(color_map.values()), {})
            if isinstance(first.get("confidence"), int | float):
                score.image_confidence = float(first["confidence"])
    return scores
