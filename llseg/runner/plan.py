"""``llseg bench -f JOB --plan``: what a job will compute and how long it should take, before training.

Per test case and round: the images a stage trains on (as the learner counts them: repeated index
lines once, ``joint``'s images so far, ``data_ratio``, round 0's single line seen twice), × epochs,
the evaluation images of the round (every eval chunk, the report samples; the test index twice at
the end), the counted FLOPs (``torch.utils.flop_counter`` on the model's forward at the size a
training sample really has after augmentation; training = 3 × forward, + 1 forward with a teacher;
evaluation at the size the model predicts at, the ``eval_crop`` square when set)
and the estimated time from a short calibration on this machine: a few timed training steps
(loading real samples, forward, backward, optimiser; the engine's device and precision) and timed
evaluations of one image as Ianvs runs them (prediction, record, two scorings). Replayed
exemplars (SSUL-M's memory: half of every batch, :func:`replayed_samples`) count as training
samples; a recipe's teacher pass before training (PLOP's thresholds, LAG's prototypes) as one
forward per training image. Counts are those of one process (``devices``/``accumulate`` split the
same global batches).
"""
from __future__ import annotations

import copy
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from llseg.data.dataset import SegmentationPairs, channel_lut
from llseg.data.imageio import image_size, read_label_png
from llseg.data.labels import get_dataset_info
from llseg.data.predictions import load_prediction, save_prediction
from llseg.data.transforms import TrainAugment
from llseg.methods.config import TrainConfig, resolve_config
from llseg.methods.engine import Engine
from llseg.methods.learner import PRETRAINED_FILES, ContinualLearner
from llseg.methods.registry import make_recipe
from llseg.metrics.incremental import IncrementalScorer
from llseg.models import create_model
from llseg.report.capture import SAMPLE_COUNT
from llseg.runner.config import BASEMODEL, load_job
from llseg.runner.dataset import process_index
from llseg.runner.job import build_cases, resolve_job
from llseg.runner.splitting import fwt_chunks
from llseg.runtime import format_seconds

CALIBRATION_STEPS = 3


@dataclass(frozen=True)
class RoundPlan:
    """One round of one test case."""

    case: str
    round: int
    images: int
    epochs: int
    eval_images: int
    replayed: int  # exemplar samples mixed into the stage's batches, over all its epochs
    teacher_pass: int  # images the teacher runs over before training
    train_flops: float
    eval_flops: float
    seconds: float


@dataclass(frozen=True)
class Calibration:
    """Measured seconds per training image and per predicted image; forward FLOPs per image at the
    training and the prediction size."""

    train_seconds: float
    eval_seconds: float
    train_flops: float
    eval_flops: float


def batches(n: int, batch_size: int) -> list[int]:
    """Sizes of one epoch's batches of ``n`` samples at ``batch_size`` in one process: a last
    1-sample batch is dropped (``Engine.loader``)."""
    size = min(batch_size, n)
    full, rest = divmod(n, size)
    return [size] * full + ([rest] if rest and not (n > size and rest == 1) else [])


def replayed_samples(images: int, batch_size: int, memory: int, epochs: int) -> int:
    """Exemplars a stage mixes in (``ContinualLearner._fit``): its ``images`` come in batches of
    ``batch_size − batch_size // 2``, each extended by the next batch of ``batch_size // 2`` of the
    ``memory`` exemplars, cycled over the stage's epochs; 0 without memory."""
    if memory == 0:
        return 0
    steps = len(batches(images, batch_size - batch_size // 2)) * epochs
    pattern = batches(memory, batch_size // 2)
    passes, rest = divmod(steps, len(pattern))
    return passes * sum(pattern) + sum(pattern[:rest])


def _rows(lines: list[str]) -> list[tuple[str, str, str]]:
    return [(t[0], t[1], t[2] if len(t) > 2 else t[1]) for t in (line.split() for line in lines)]


def _forward_flops(model: torch.nn.Module, image: torch.Tensor) -> float:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(image)
    return float(counter.get_total_flops())


def eval_input_size(config: TrainConfig, image: Path) -> tuple[int, int]:
    """(H, W) the model sees when evaluating ``image``: the ``eval_crop`` square, else ``input_size``,
    else the image's own size."""
    return config.eval_size or image_size(image)


def calibrate(config: TrainConfig, row: tuple[str, str, str], num_classes: int) -> Calibration:
    """Time ``CALIBRATION_STEPS`` training steps at ``batch_size`` on samples of ``row`` (after one
    warm-up step), and as many evaluations of its image as Ianvs runs them (prediction at the image's
    size, record written, scored twice)."""
    engine = Engine(config)
    augment = TrainAugment(base_size=config.input_size, crop_size=config.crop_size, scale=config.scale,
                           flip=config.flip, jitter=config.jitter)
    data = SegmentationPairs([Path(row[0])], [Path(row[2])], lut=channel_lut(range(num_classes)), augment=augment)
    learner = ContinualLearner(config)  # its model_kwargs: the recipe's (e.g. SSUL's unknown channel)
    model = create_model(config.model, num_classes=num_classes, **{k: v for k, v in learner.model_kwargs.items()
                                                                    if k not in PRETRAINED_FILES}).to(engine.device)
    model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-6)
    batch = max(2, config.batch_size)
    loads, steps = 0.0, 0.0
    for step in range(CALIBRATION_STEPS + 1):
        start = time.perf_counter()
        samples = [data[0] for _ in range(batch)]
        loaded = time.perf_counter()
        image = torch.stack([s[0] for s in samples]).to(engine.device).contiguous(memory_format=torch.channels_last)
        target = torch.stack([s[1] for s in samples]).to(engine.device)
        with engine.autocast():
            loss = torch.nn.functional.cross_entropy(model(image), target, ignore_index=255)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if engine.device.type == "cuda":
            torch.cuda.synchronize(engine.device)
        if step:  # the first step warms up allocators and kernels
            loads, steps = loads + loaded - start, steps + time.perf_counter() - loaded
    model.eval()  # one image: BatchNorm after global pooling (DeepLabV3's ASPP) needs eval mode; same FLOPs
    train_flops = _forward_flops(model, image[:1])
    learner.model, learner.groups = model, [list(range(num_classes))]
    eval_seconds = 0.0
    with tempfile.TemporaryDirectory(prefix="llseg-plan-") as tmp:
        record = Path(tmp) / "record.npz"
        for step in range(CALIBRATION_STEPS + 1):  # as an Ianvs evaluation: predict, write, score twice
            start = time.perf_counter()
            (prediction,) = learner.predict([row[0]])
            save_prediction(record, pred=prediction.pred, group_pred=prediction.group_pred,
                            prefix_pred=prediction.prefix_pred, classes=prediction.classes.tolist(),
                            group_sizes=prediction.group_sizes.tolist(), num_classes=num_classes)
            for _ in range(2):
                IncrementalScorer(num_classes).update(load_prediction(record), read_label_png(Path(row[1])))
            if step:
                eval_seconds += time.perf_counter() - start
    probe = torch.zeros(1, 3, *eval_input_size(config, Path(row[0])), device=engine.device)
    n = CALIBRATION_STEPS
    return Calibration((loads + steps) / (n * batch), eval_seconds / n, train_flops, _forward_flops(model, probe))


def plan_job(path: str) -> list[RoundPlan]:
    """The plan of every round of every test case of the job at ``path`` (nothing is trained or written)."""
    job = load_job(path)
    resolved = resolve_job(job)
    lines = process_index(job.testenv.train_index)
    test_images = len(dict.fromkeys(line.split()[0] for line in process_index(job.testenv.test_index)))
    rounds = job.testenv.incremental_rounds
    calibrations: dict[str, Calibration] = {}
    plans: list[RoundPlan] = []
    for case in build_cases(job):
        alg = case.algorithm
        hps = copy.deepcopy(next(h for m, h in zip(alg.modules, case.hyperparameters) if m.type == BASEMODEL))
        hps.setdefault("model", getattr(resolved.estimators[alg.name], "architectures", ("erfnet",))[0])
        hps.pop("output_dir", None)
        config = resolve_config(hps, source=f"{alg.file} hyperparameters")
        info = get_dataset_info(config.dataset)
        chunks = fwt_chunks(lines, alg.train_ratio, rounds)
        key = repr((config.model, config.model_kwargs, config.input_size, config.crop_size, config.scale,
                    config.batch_size, config.precision, config.device))
        if key not in calibrations:
            calibrations[key] = calibrate(config, _rows(chunks[1][0])[0], info.num_classes)
        cal = calibrations[key]
        recipe = make_recipe(config)
        eval_per_round = sum(len(dict.fromkeys(line.split()[0] for line in ev)) for _, ev in chunks[1:])
        seen: set[tuple[str, str]] = set()  # (image, full label) pairs of earlier rounds: memory candidates
        for r, (train, _) in enumerate(chunks):
            rows = list(dict.fromkeys(_rows(train)))
            if r >= 2 and config.data_ratio < 1.0:
                rows = rows[: max(1, round(config.data_ratio * len(rows)))]
            memory = min(recipe.replay_capacity, len(seen)) if r >= 1 else 0
            seen.update((image, full) for image, full, _ in rows)
            pairs = len(recipe.stage_pairs(rows))
            images = pairs if memory else max(2, pairs)  # a single image is trained as two views
            replayed = replayed_samples(images, config.batch_size, memory, config.epochs)
            teacher = 1.0 if recipe.keeps_teacher and r >= 1 else 0.0
            passed = images if teacher and recipe.teacher_pass else 0
            evals = eval_per_round + (min(SAMPLE_COUNT, test_images) if r >= 1 else 0) + (2 * test_images if r == rounds else 0)
            samples = images * config.epochs + replayed
            seconds = (samples * (1 + teacher / 3) + passed / 3) * cal.train_seconds + evals * cal.eval_seconds
            plans.append(RoundPlan(alg.name, r, images, config.epochs, evals, replayed, passed,
                                   (samples * (3 + teacher) + passed) * cal.train_flops, evals * cal.eval_flops, seconds))
    return plans


def format_plan(plans: list[RoundPlan]) -> str:
    """A Markdown table of ``plans`` with a total per test case and for the job."""
    head = "| test case | round | images × epochs | eval images | training TFLOPs | eval TFLOPs | estimated time |"
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|"]
    for name in dict.fromkeys(p.case for p in plans):
        own = [p for p in plans if p.case == name]
        for p in own:
            extra = f" + {p.replayed} replayed" if p.replayed else ""
            extra += f" + {p.teacher_pass} teacher pass" if p.teacher_pass else ""
            lines.append(f"| {p.case} | {p.round} | {p.images} × {p.epochs} = {p.images * p.epochs}{extra} | {p.eval_images} | "
                         f"{p.train_flops / 1e12:.3f} | {p.eval_flops / 1e12:.3f} | {format_seconds(p.seconds)} |")
        samples = sum(p.images * p.epochs + p.replayed for p in own)
        lines.append(f"| {name} | all | {samples} | {sum(p.eval_images for p in own)} | "
                     f"{sum(p.train_flops for p in own) / 1e12:.3f} | {sum(p.eval_flops for p in own) / 1e12:.3f} | "
                     f"{format_seconds(sum(p.seconds for p in own))} |")
    total = sum(p.seconds for p in plans)
    lines.append(f"\njob total: {sum(p.train_flops + p.eval_flops for p in plans) / 1e12:.3f} TFLOPs, estimated "
                 f"{format_seconds(total)} ({total:.0f} s) on this machine")
    return "\n".join(lines)

