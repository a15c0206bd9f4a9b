"""Training, inference and metric speed of llseg next to plain reference loops, on this machine.

Measures, each against two plain loops written here (PIL decode + resize every step, ``torch.optim``): the
fp32 loop (contiguous NCHW) and the main reference, the loop a careful user writes (autocast in the peer
precision: bf16 on CPUs with native bf16, fp16 on CUDA, fp32 elsewhere; channels_last model and input; fused
optimizer): training images/s of ``ContinualLearner.learn`` for ERFNet (19 classes, synthetic street
scenes, Adam) and DeepLabV3 (MobileNetV3-L and R101, 21 classes, synthetic VOC-style objects, SGD) in fp32
and in the precision ``auto`` resolves to; the share of a step spent waiting for data; inference images/s of
``ContinualLearner.predict``; ``IncrementalScorer.update`` against a per-image numpy reference; Adam step
times; training FLOPs against the measured ``torch.mm`` peak; optionally the default benchmark job's wall
time. Every number is the median of timed repetitions after a warm-up, each training and inference
measurement in a fresh process (:func:`fresh_process`). llseg and the honest peer run in interleaved rounds
(peer then llseg, llseg then peer in the next round; ``--rounds``), and their ratio is the median of the
rounds' ratios, stated with the load averages seen: a shared machine's load then moves both sides alike. With CUDA (``--device
auto`` picks it like the learner) everything runs on the GPU and the GPU-only rows are added.

Run from the repository root::

    .venv/bin/python benchmarks/speed.py            # full run, ~15 minutes on a quiet 2-core CPU
    .venv/bin/python benchmarks/speed.py --quick    # fewer repetitions, no ERFNet 512x1024, no R101 512x512
    .venv/bin/python benchmarks/speed.py --job      # also time the default benchmark job (~3 min)
    .venv/bin/python benchmarks/speed.py --models deeplabv3_mobilenet_v3_large   # only these training rows
    .venv/bin/python benchmarks/speed.py --smoke --out /tmp/speed.md  # tiny sizes: checks the code paths only
    .venv/bin/python benchmarks/speed.py --models erfnet --sizes 256x512 --threads 1 --rounds 5   # busy machine

It writes ``benchmarks/RESULTS.md`` (``--out`` to change), which also records the machine and the results.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import multiprocessing
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

from llseg.data.cityscapes.synthetic import render_scene

# Every llseg name this script uses (another engineer adapts these when llseg's API moves).
from llseg.data.dataset import SegmentationPairs, channel_lut
from llseg.data.imageio import read_label_png, read_rgb, write_label_png
from llseg.data.labels import get_dataset_info
from llseg.data.predictions import Prediction
from llseg.data.transforms import TrainAugment, normalize
from llseg.data.voc.synthetic import render_objects
from llseg.methods.config import TrainConfig
from llseg.methods.learner import ContinualLearner
from llseg.metrics.incremental import IncrementalScorer
from llseg.models import create_model
from llseg.runtime import cpu_has_native_bf16, pick_device, resolve_precision

ROOT = Path(__file__).resolve().parents[1]
NUM_CLASSES = 19
NATIVE = (512, 1024)  # size of the generated PNGs (Cityscapes at half resolution)
JOB_NATIVE, JOB_INPUT, JOB_BATCH = (128, 256), (48, 96), 4  # the default benchmark job's data and settings
LEAD_JOB = "3m11s with precision auto (bf16 autocast), 6m13s with fp32 (measured by the lead engineer)"

VOC_CLASSES = 21  # background + 20 objects
VOC_NATIVE = (512, 512)  # size of the generated VOC-style PNGs (VOC images are about 500x375)
DEEPLAB = {"deeplabv3_mobilenet_v3_large": "DeepLabV3-MobileNetV3-L", "deeplabv3_resnet101": "DeepLabV3-R101"}
MODELS = ("erfnet", *DEEPLAB)
DEEPLAB_KWARGS = {"head": "expanding"}
SGD_LR, WEIGHT_DECAY = 0.01, 3e-4  # DeepLabV3 rows; weight decay is TrainConfig's default

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

Size = tuple[int, int]


# ----------------------------------------------------------------------------------- helpers
def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so that wall times include it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_time(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in seconds over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


T = TypeVar("T")


def _with_env(env: dict[str, str], fn: Callable[..., T], args: tuple, kwargs: dict[str, Any]) -> T:
    os.environ.update(env)
    # a spawned process inherits "spawn" as its default start method; give DataLoader workers the
    # platform's default (fork on Linux), as in a user's process
    multiprocessing.set_start_method(None, force=True)
    return fn(*args, **kwargs)


def fresh_process(fn: Callable[..., T], *args: Any, _env: dict[str, str] | None = None, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` in a new Python process (spawn), so that every timed measurement starts from
    the same state whatever ran before it: glibc heap, oneDNN primitive caches, thread pools. llseg's
    learner changes process-wide malloc settings (``llseg.runtime.keep_freed_memory``) that would
    otherwise also speed up the reference loops timed after it, and a heap fragmented by earlier
    measurements slows later ones. ``_env``: environment variables to set in that process first."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_with_env, _env or {}, fn, args, kwargs).result()


def maxrss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def cpu_has_amx() -> bool:
    """Whether the CPU advertises AMX-BF16 (the ``amx_bf16`` flag of /proc/cpuinfo, as lscpu shows it)."""
    try:
        return "amx_bf16" in Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False


def log(text: str) -> None:
    print(text, flush=True)


def fmt_size(size: Size) -> str:
    return f"{size[0]}x{size[1]}"


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()


def write_dataset(out: Path, count: int, size: Size) -> tuple[list[str], list[str]]:
    """``count`` synthetic street scenes of ``size`` as RGB PNGs and train-id label PNGs."""
    rng = np.random.default_rng(0)
    to_train = get_dataset_info("cityscapes").id_to_train_id
    images, labels = [], []
    for i in range(count):
        rgb, raw = render_scene(rng, *size, "clear")
        image, label = out / f"img{fmt_size(size)}_{i}.png", out / f"lab{fmt_size(size)}_{i}.png"
        Image.fromarray(rgb).save(image)
        write_label_png(label, to_train[raw])
        images.append(str(image))
        labels.append(str(label))
    return images, labels


def write_voc_dataset(out: Path, count: int, size: Size) -> tuple[list[str], list[str]]:
    """``count`` synthetic VOC-style object images of ``size`` as RGB PNGs and label PNGs (ids 0..20, 255).

    The first pixels of every label's top row hold ids 0..20, so that the learner's first stage
    sees all 21 classes and builds the 21-channel model whose FLOPs are counted.
    """
    rng = np.random.default_rng(0)
    images, labels = [], []
    for i in range(count):
        rgb, label = render_objects(rng, *size)
        label[0, :VOC_CLASSES] = np.arange(VOC_CLASSES, dtype=np.uint8)
        image, label_path = out / f"voc{fmt_size(size)}_{i}.png", out / f"voclab{fmt_size(size)}_{i}.png"
        Image.fromarray(rgb).save(image)
        write_label_png(label_path, label)
        images.append(str(image))
        labels.append(str(label_path))
    return images, labels


# ---------------------------------------------------------------------------- machine limit
def matmul_gflops(dtype: torch.dtype, device: torch.device, sizes: Sequence[int], repeats: int = 7) -> float:
    """The machine's matmul limit in GFLOP/s: the best ``torch.mm`` throughput of an n×n product over
    ``sizes``, each from its fastest of ``repeats`` runs (a limit, so the best, not the typical, run)."""
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n, device=device).to(dtype), torch.randn(n, n, device=device).to(dtype)
        times = []
        for _ in range(repeats + 2):  # two warm-up runs
            start = time.perf_counter()
            torch.mm(a, b)
            sync(device)
            times.append(time.perf_counter() - start)
        best = max(best, 2 * n**3 / min(times[2:]) / 1e9)
    return best


def conv_backward_flops(grad_out_shape: Sequence[int], x_shape: Sequence[int], w_shape: Sequence[int], _bias: Any,
                        _stride: Any, _padding: Any, _dilation: Any, transposed: bool, _output_padding: Any,
                        _groups: int, output_mask: Sequence[bool], **_: Any) -> int:
    """FLOPs of ``aten.convolution_backward``: the input gradient and the weight gradient each cost what
    the forward convolution did. Replaces torch's formula, which (torch 2.14) ignores ``groups`` in the
    weight-gradient term and so counts a depthwise convolution's backward ``channels`` times too high
    (MobileNetV3's count came out 3.3x too high with it)."""
    forward = conv_flop_count(x_shape, w_shape, grad_out_shape, transposed)
    return forward * (int(output_mask[0]) + int(output_mask[1]))


def train_flops_per_image(size: Size, model_name: str = "erfnet", num_classes: int = NUM_CLASSES,
                          **kwargs: Any) -> float:
    """Forward + backward FLOPs of one training image (convolutions and matmuls), counted on the meta
    device (shapes only, nothing computed). Batch of 2 halved: BatchNorm after DeepLabV3's ASPP
    pooling (1x1 maps) refuses a training batch of one."""
    with torch.device("meta"):
        model = create_model(model_name, num_classes=num_classes, **kwargs).train()
        x = torch.randn(2, 3, *size)
    custom = {torch.ops.aten.convolution_backward: conv_backward_flops}
    with FlopCounterMode(display=False, custom_mapping=custom) as counter:
        model(x).sum().backward()
    return counter.get_total_flops() / 2


# ----------------------------------------------------------------------------------- training
def llseg_measure(images: list[str], labels: list[str], size: Size, batch: int, precision: str, repeats: int,
                  workers: int = 0, device: str = "auto", *, data: bool = False, infer: bool = False,
                  **config_kwargs: Any) -> dict[str, Any]:
    """Run in a fresh process: ``train`` images/s of ``ContinualLearner.learn`` (one epoch per call; the
    first call is the warm-up), ``classes`` the model learned, ``nonfinite`` the number of those calls
    whose loss was not finite; with ``data`` also ``data_s`` (seconds per batch of the data pipeline,
    :func:`llseg_data_seconds`), with ``infer`` also ``infer`` (images/s of ``learner.predict``).

    ``config_kwargs`` go to ``TrainConfig`` (model, dataset, optimizer, ...; default: ERFNet on Cityscapes
    train ids with Adam); the recipe is ``finetune`` unless given. ``learn`` times its ``_fit``, whose
    per-step ``float(loss)`` waits for the GPU.
    """
    config_kwargs.setdefault("recipe", "finetune")
    load = os.getloadavg()[0]
    config = TrainConfig(epochs=1, batch_size=batch, input_size=size, precision=precision, num_workers=workers,
                         device=device, **config_kwargs)
    learner = ContinualLearner(config)
    # the warm-up decodes into the cache and fills oneDNN's primitive caches
    summaries = [learner.learn(images, labels, labels) for _ in range(repeats + 1)]
    result: dict[str, Any] = {
        "train": len(images) / statistics.median(s["seconds"] for s in summaries[1:]),
        "classes": learner.classes,
        "nonfinite": sum(not np.isfinite(s["final_loss"]) for s in summaries),
        "load": load,
    }
    if data:
        result["data_s"] = llseg_data_seconds(learner, images, labels, size, batch, repeats)
    if infer:
        result["infer"] = len(images) / median_time(lambda: list(learner.predict(images)), repeats)
    if learner.device.type == "cuda":
        result["gpu_mib"] = torch.cuda.max_memory_allocated(learner.device) / 2**20
    return result


def llseg_data_seconds(learner: ContinualLearner, images: list[str], labels: list[str], size: Size, batch: int,
                       repeats: int) -> float:
    """Seconds per batch to produce what ``_fit``'s DataLoader yields (same dataset, warm cache, num_workers=0)."""
    data = SegmentationPairs(
        [Path(i) for i in images], [Path(lab) for lab in labels], lut=channel_lut(learner.classes),
        augment=TrainAugment(base_size=size), cache=learner.cache,
    )
    loader = DataLoader(data, batch_size=batch, shuffle=True, num_workers=0)
    batches = len(loader)
    return median_time(lambda: [None for _ in loader], repeats) / batches


def decode_ms(images: list[str], labels: list[str]) -> float:
    """Median milliseconds to decode one image/label PNG pair (what the in-memory cache saves per epoch)."""
    times = []
    for image, label in zip(images, labels, strict=True):
        start = time.perf_counter()
        read_rgb(image)
        read_label_png(label)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def reference_batches(images: list[str], labels: list[str], size: Size, batch: int,
                      rng: np.random.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Plain data path: decode the PNGs with PIL and resize every time, random flip, NCHW float."""
    order = rng.permutation(len(images))
    for start in range(0, len(order) - batch + 1, batch):
        xs, ys = [], []
        for i in order[start : start + batch]:
            image = Image.open(images[i]).convert("RGB").resize(size[::-1], Image.BILINEAR)
            label = Image.open(labels[i]).resize(size[::-1], Image.NEAREST)
            x = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float() / 255
            y = torch.from_numpy(np.asarray(label).astype(np.int64))
            if rng.random() < 0.5:
                x, y = x.flip(-1), y.flip(-1)
            xs.append(x)
            ys.append(y)
        yield normalize(torch.stack(xs)).contiguous(), torch.stack(ys)


def peer_context(precision: str | None, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """Autocast in ``precision`` (the peer loops), or nothing for ``None`` / fp32."""
    if precision in (None, "fp32"):
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=DTYPES[precision])


def reference_train(images: list[str], labels: list[str], size: Size, batch: int, repeats: int,
                    model_name: str = "erfnet", num_classes: int = NUM_CLASSES, optimizer_name: str = "adam",
                    device: torch.device = torch.device("cpu"), peer: str | None = None,
                    **model_kwargs: Any) -> tuple[float, float]:
    """(images/s, data share) of a plain loop: one epoch over ``images`` per repetition.

    ERFNet with ``torch.optim.Adam`` (Klingner's settings) or, with ``optimizer_name="sgd"``, e.g.
    DeepLabV3 with ``torch.optim.SGD`` (Nesterov, momentum 0.9). ``peer=None``: fp32, contiguous NCHW,
    torch's default optimizer implementation. ``peer="bf16"|"fp16"|"fp32"``: the honest peer, autocast in
    that precision (fp32 logits into the loss), channels_last model and input, ``fused=True`` optimizer.
    """
    model = create_model(model_name, num_classes=num_classes, **model_kwargs).to(device).train()
    fused: dict[str, Any] = {}
    if peer is not None:
        model = model.to(memory_format=torch.channels_last)
        fused = {"fused": True}
    if optimizer_name == "adam":
        optimizer: torch.optim.Optimizer = torch.optim.Adam(model.parameters(), lr=5e-4, weight_decay=3e-4, **fused)
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=SGD_LR, momentum=0.9, nesterov=True,
                                    weight_decay=WEIGHT_DECAY, **fused)
    layout = torch.channels_last if peer is not None else torch.contiguous_format
    rng = np.random.default_rng(0)
    data_time = [0.0]

    def epoch() -> None:
        batches = reference_batches(images, labels, size, batch, rng)
        while True:
            start = time.perf_counter()
            item = next(batches, None)
            data_time[0] += time.perf_counter() - start
            if item is None:
                sync(device)
                return
            image, target = item[0].to(device, memory_format=layout), item[1].to(device)
            with peer_context(peer, device):
                logits = model(image)
            loss = F.cross_entropy(logits.float(), target, ignore_index=255)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    epoch()  # warm-up
    data_time[0] = 0.0
    per_epoch = median_time(epoch, repeats, warmup=0)
    return len(images) / per_epoch, data_time[0] / repeats / per_epoch


def peer_measure(images: list[str], labels: list[str], size: Size, batch: int, repeats: int, peer: str,
                 device: str = "cpu", optimizer_name: str = "adam", **model: Any) -> dict[str, float]:
    """Run in a fresh process: ``train`` images/s of the honest peer's training loop (:func:`reference_train`
    with ``peer``) and ``infer`` images/s of its inference loop (:func:`reference_predict`), as
    :func:`llseg_measure` measures llseg in one process; ``load`` the 1-minute load average at its start."""
    load = os.getloadavg()[0]
    dev = torch.device(device)
    train, _ = reference_train(images, labels, size, batch, repeats, optimizer_name=optimizer_name, device=dev,
                               peer=peer, **model)
    return {"train": train, "infer": reference_predict(images, size, repeats, dev, peer=peer, **model), "load": load}


def adam_step_ms(device: torch.device = torch.device("cpu"), **options: Any) -> float:
    """Milliseconds of one Adam step over ERFNet's parameters (channels_last, as in ``_fit``)."""
    model = create_model("erfnet", num_classes=NUM_CLASSES).to(device, memory_format=torch.channels_last)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-4, weight_decay=3e-4, **options)

    def step() -> None:
        optimizer.step()
        sync(device)

    return 1000 * median_time(step, 20, warmup=3)


# ---------------------------------------------------------------------------------- inference
def reference_predict(images: list[str], size: Size, repeats: int, device: torch.device = torch.device("cpu"),
                      model_name: str = "erfnet", num_classes: int = NUM_CLASSES, peer: str | None = None,
                      **kwargs: Any) -> float:
    """Images/s of plain inference: decode, resize, forward, upsample to the image size, argmax.

    ``peer=None``: fp32, contiguous NCHW; otherwise autocast in ``peer`` and channels_last (as in training).
    """
    model = create_model(model_name, num_classes=num_classes, **kwargs).to(device).eval()
    layout = torch.contiguous_format if peer is None else torch.channels_last
    model = model.to(memory_format=layout)

    def run() -> None:
        with torch.no_grad():
            for path in images:
                pil = Image.open(path).convert("RGB")
                x = torch.from_numpy(np.asarray(pil.resize(size[::-1], Image.BILINEAR)).copy()
                                     ).permute(2, 0, 1).float() / 255
                with peer_context(peer, device):
                    logits = model(normalize(x)[None].to(device, memory_format=layout)).float()
                F.interpolate(logits, size=(pil.height, pil.width), mode="bilinear",
                              align_corners=False).argmax(1).cpu().numpy()

    return len(images) / median_time(run, repeats)


# ------------------------------------------------------------------------------------ metrics
def numpy_confusion(pred: np.ndarray, target: np.ndarray, c: int) -> np.ndarray:
    """Textbook per-image confusion matrix (rows = ground truth)."""
    keep = target != 255
    return np.bincount(c * target[keep].astype(np.int64) + pred[keep], minlength=c * c).reshape(c, c)


def reference_scorer(records: Sequence[Prediction], targets: Sequence[np.ndarray], c: int) -> list[np.ndarray]:
    """Every matrix IncrementalScorer keeps, built one restricted numpy confusion at a time."""
    groups = records[0].groups
    full, learned = np.zeros((c, c), np.int64), np.zeros((c, c), np.int64)
    per_group = [np.zeros((c, c), np.int64) for _ in groups]
    per_prefix = [np.zeros((c, c), np.int64) for _ in groups]
    for record, target in zip(records, targets, strict=True):
        full += numpy_confusion(record.pred, target, c)
        union: list[int] = []
        for k, classes in enumerate(groups):
            union = union + classes
            per_group[k] += numpy_confusion(record.group_pred[k], np.where(np.isin(target, classes), target, 255), c)
            per_prefix[k] += numpy_confusion(record.prefix_pred[k], np.where(np.isin(target, union), target, 255), c)
        learned += numpy_confusion(record.pred, np.where(np.isin(target, union), target, 255), c)
    return [full, learned, *per_group, *per_prefix]


def llseg_scorer(records: Sequence[Prediction], targets: Sequence[np.ndarray], c: int) -> list[np.ndarray]:
    scorer = IncrementalScorer(c)
    for record, target in zip(records, targets, strict=True):
        scorer.update(record, target)
    return [scorer.full, scorer.learned, *scorer.per_group, *scorer.per_prefix]


def metric_inputs(count: int, size: Size) -> tuple[list[Prediction], list[np.ndarray]]:
    """Random records of a 3-group model (10+5+4 classes) and targets with 10% ignored pixels."""
    rng = np.random.default_rng(0)
    groups = [list(range(10)), list(range(10, 15)), list(range(15, 19))]
    records, targets = [], []
    for _ in range(count):
        target = rng.integers(0, NUM_CLASSES, size, dtype=np.uint8)
        target[rng.random(size) < 0.1] = 255
        group_pred = np.stack([rng.choice(np.array(g, np.uint8), size) for g in groups])
        prefix_pred = np.stack([rng.integers(0, 10 + 5 * k if k < 2 else NUM_CLASSES, size, dtype=np.uint8)
                                for k in range(3)])
        records.append(Prediction(prefix_pred[-1], group_pred, prefix_pred, np.arange(NUM_CLASSES),
                                  np.array([10, 5, 4]), NUM_CLASSES))
        targets.append(target)
    return records, targets


# -------------------------------------------------------------------------------- default job
@dataclass(frozen=True)
class JobTiming:
    """The default benchmark job: wall seconds and the peak RSS (MiB) of the child processes."""

    seconds: float
    peak_rss_mib: float


def children_maxrss_mib() -> float:
    """Peak resident memory of the largest child process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def run_job() -> JobTiming:
    """Wall time of ``llseg bench -f benchmarkingjob.yaml`` in a scratch workspace."""
    if not (ROOT / "data/synthetic-city-cil3/train_index.txt").is_file():
        for args in (["synth", "--out", "data/synthetic-city", "--seed", "0"],
                     ["prepare", "--dataset", "cityscapes", "--root", "data/synthetic-city", "--split", "cil-3",
                      "--out", "data/synthetic-city-cil3"]):
            subprocess.run([sys.executable, "-m", "llseg", *args], cwd=ROOT, check=True)
    with tempfile.TemporaryDirectory(prefix="llseg-job-") as tmp:
        # Same relative paths as the repository root, but the job's workspace lands in tmp.
        for name in ("benchmarkingjob.yaml", "testenv", "testalgorithms", "data"):
            os.symlink(ROOT / name, Path(tmp) / name)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "llseg", "bench", "-f", "benchmarkingjob.yaml"], cwd=tmp, check=True,
                       stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - start
    return JobTiming(seconds, children_maxrss_mib())


# --------------------------------------------------------------------------------- the run
@dataclass(frozen=True)
class TrainingConfig:
    """One training/inference row of the report."""

    model: str  # a key of MODELS
    label: str  # note after the row's name ("default job", "GPU run only") or ""
    native: Size  # size of the generated PNGs
    size: Size  # input size
    batch: int
    images: int  # images per timed epoch
    repeats: int

    @property
    def deeplab(self) -> bool:
        return self.model in DEEPLAB

    @property
    def dataset(self) -> str:
        """Which synthetic images the row trains on: "voc" (objects) or "city" (street scenes)."""
        return "voc" if self.deeplab else "city"

    @property
    def name(self) -> str:
        return f"{fmt_size(self.size)} batch {self.batch}" + (f" ({self.label})" if self.label else "")


@dataclass(frozen=True)
class Settings:
    """What a run measures, from the command line."""

    models: list[str]
    quick: bool
    smoke: bool
    job: bool
    device_option: str  # --device as given
    device: torch.device
    auto: str  # the precision "auto" resolves to on device
    reps: int
    rounds: int  # interleaved peer / llseg rounds per training row
    extras: bool = True  # also llseg with one DataLoader worker and with LLSEG_KEEP_FREED_MEMORY=0 (ERFNet)

    @property
    def peer(self) -> str:
        """The honest peer's autocast precision: fp16 on CUDA, bf16 on CPUs with native bf16, else fp32."""
        return "fp16" if self.cuda else "bf16" if cpu_has_native_bf16() else "fp32"

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def precisions(self) -> list[str]:
        """fp32 and the precision auto resolves to (once if they are the same)."""
        return list(dict.fromkeys(("fp32", self.auto)))


def training_configs(models: Sequence[str], *, quick: bool, smoke: bool, cuda: bool, reps: int) -> list[TrainingConfig]:
    """The training rows of this run: ERFNet on street scenes, DeepLabV3 on VOC-style objects.

    CPU: batches of 4 (2 at 512x512), two batches per timed epoch (16 images for the default-job config,
    one batch at 512x1024). GPU: 4x the images per epoch, plus ERFNet 512x1024 (also with --quick) and
    DeepLabV3-R101 at 513x513 batch 8. --quick drops ERFNet 512x1024 (CPU) and R101 512x512.
    """
    configs: list[TrainingConfig] = []
    if smoke:
        if "erfnet" in models:
            configs.append(TrainingConfig("erfnet", "", (64, 128), (32, 64), 2, 4, 1))
        configs += [TrainingConfig(m, "", (64, 64), (64, 64), 2, 4, 1) for m in DEEPLAB if m in models]
        return configs
    more = 4 if cuda else 1
    fewer = max(1, reps - 1)
    if "erfnet" in models:
        configs += [TrainingConfig("erfnet", "default job", JOB_NATIVE, JOB_INPUT, JOB_BATCH, 16 * more, reps),
                    TrainingConfig("erfnet", "", NATIVE, (256, 512), 4, 8 * more, reps)]
        if not quick or cuda:
            label = "GPU run only" if quick else ""
            configs.append(TrainingConfig("erfnet", label, NATIVE, NATIVE, 4, 4 * more, fewer))
    for model in (m for m in DEEPLAB if m in models):
        configs.append(TrainingConfig(model, "", VOC_NATIVE, (256, 256), 4, 8 * more, reps))
        if not (quick and model == "deeplabv3_resnet101"):
            configs.append(TrainingConfig(model, "", VOC_NATIVE, (512, 512), 2, 4 * more, fewer))
        if cuda and model == "deeplabv3_resnet101":
            configs.append(TrainingConfig(model, "GPU run only", VOC_NATIVE, (513, 513), 8, 8 * more, fewer))
    return configs


@dataclass(frozen=True)
class LlsegRun:
    """What :func:`llseg_measure` returns, by name."""

    train: float  # images/s
    classes: list[int]
    nonfinite: int  # training epochs (warm-up included) whose loss was not finite
    data_s: float | None = None  # seconds per batch of the data pipeline
    infer: float | None = None  # images/s of learner.predict
    gpu_mib: float = 0.0  # peak GPU memory allocated
    load: float = 0.0  # 1-minute load average when its process started


@dataclass(frozen=True)
class Round:
    """One interleaved round: the honest peer and llseg (auto), each in its own fresh process, back to back
    (in alternating order from round to round), so that both see about the same load of a shared machine."""

    peer: float  # training images/s of the peer
    llseg: float  # training images/s of llseg in the precision auto resolves to
    peer_infer: float  # inference images/s of the peer
    llseg_infer: float  # inference images/s of learner.predict
    loads: tuple[float, float]  # 1-minute load averages at the start of the two processes

    @property
    def ratio(self) -> float:
        return self.llseg / self.peer


@dataclass(frozen=True)
class Measurement:
    """Everything measured for one training configuration."""

    config: TrainingConfig
    flops: float  # training FLOPs per image
    reference: float  # images/s of the plain fp32 training loop
    reference_data_share: float  # share of its epoch spent decoding and resizing
    rounds: list[Round]  # interleaved peer / llseg (auto) trials: the main comparison
    runs: dict[str, LlsegRun]  # llseg training by precision (fp32 and auto; auto: the first round's, with data_s)
    auto: str
    workers1: float | None  # llseg auto images/s with one DataLoader worker (ERFNet below NATIVE only)
    not_kept: float | None  # llseg auto images/s with LLSEG_KEEP_FREED_MEMORY=0 (ERFNet below NATIVE, CPU only)
    reference_infer: float  # images/s of the plain fp32 inference loop
    decode_ms: float  # PNG decode per image/label pair

    @property
    def fp32(self) -> float:
        """llseg's fp32 training images/s (the median of the rounds when auto is fp32)."""
        return self.best if self.auto == "fp32" else self.runs["fp32"].train

    @property
    def best(self) -> float:
        """llseg's training images/s in the precision auto resolves to (median of the rounds)."""
        return statistics.median(r.llseg for r in self.rounds)

    @property
    def peer(self) -> float:
        """The honest peer's training images/s (median of the rounds)."""
        return statistics.median(r.peer for r in self.rounds)

    @property
    def peer_infer(self) -> float:
        return statistics.median(r.peer_infer for r in self.rounds)

    @property
    def infer(self) -> float:
        """llseg's inference images/s (median of the rounds)."""
        return statistics.median(r.llseg_infer for r in self.rounds)

    @property
    def ratio(self) -> float:
        """llseg over the peer in training: the median of the rounds' ratios."""
        return statistics.median(r.ratio for r in self.rounds)

    @property
    def infer_ratio(self) -> float:
        return statistics.median(r.llseg_infer / r.peer_infer for r in self.rounds)

    @property
    def loads(self) -> list[float]:
        return [load for r in self.rounds for load in r.loads]


def write_datasets(configs: Sequence[TrainingConfig], out: Path) -> dict[tuple[str, Size], tuple[list[str], list[str]]]:
    """PNGs for every config: (dataset, native size) -> (images, labels), as many as the largest config needs."""
    wanted: dict[tuple[str, Size], int] = {}
    for config in configs:
        key = (config.dataset, config.native)
        wanted[key] = max(wanted.get(key, 0), config.images)
    writers = {"city": write_dataset, "voc": write_voc_dataset}
    return {key: writers[key[0]](out, n, key[1]) for key, n in wanted.items()}


def measure_training(config: TrainingConfig, images: list[str], labels: list[str], settings: Settings) -> Measurement:
    """Train and predict with llseg and the reference loops on ``config``, each run in a fresh process."""
    size, batch, repeats, device, auto = config.size, config.batch, config.repeats, settings.device, settings.auto
    if config.deeplab:
        log(f"training {model_label(config.model)} {config.name} ...")
        model: dict[str, Any] = dict(model_name=config.model, num_classes=VOC_CLASSES, **DEEPLAB_KWARGS)
        optimizer = "sgd"
        llseg_kwargs: dict[str, Any] = dict(recipe="finetune", model=config.model, dataset="voc", optimizer="sgd",
                                            lr=SGD_LR, weight_decay=WEIGHT_DECAY, model_kwargs=dict(DEEPLAB_KWARGS))
    else:  # the functions' defaults: ERFNet, 19 classes, Adam
        log(f"training and inference, ERFNet {config.name} ...")
        model, optimizer, llseg_kwargs = {}, "adam", {}
    flops = train_flops_per_image(size, **model)
    reference, share = fresh_process(reference_train, images, labels, size, batch, repeats, optimizer_name=optimizer,
                                     device=device, **model)

    def llseg(precision: str, **options: Any) -> LlsegRun:
        return LlsegRun(**fresh_process(llseg_measure, images, labels, size, batch, precision, repeats,
                                        device=str(device), **options, **llseg_kwargs))

    def peer() -> dict[str, float]:
        return fresh_process(peer_measure, images, labels, size, batch, repeats, settings.peer, str(device),
                             optimizer, **model)

    rounds, runs = [], {}
    for k in range(settings.rounds):  # peer, llseg, llseg, peer, ...: both see the same drift of the load
        if k % 2 == 0:
            theirs, ours = peer(), llseg(auto, data=k == 0, infer=True)
        else:
            ours = llseg(auto, infer=True)
            theirs = peer()
        runs.setdefault(auto, ours)
        assert ours.infer is not None
        rounds.append(Round(theirs["train"], ours.train, theirs["infer"], ours.infer, (theirs["load"], ours.load)))
        log(f"  round {k + 1}: peer {rounds[-1].peer:.2f} img/s, llseg {auto} {rounds[-1].llseg:.2f} "
            f"({rounds[-1].ratio:.2f}x), load {theirs['load']:.1f} / {ours.load:.1f}")
    if auto != "fp32":
        runs["fp32"] = llseg("fp32")
    if config.deeplab:  # the model whose FLOPs are counted
        assert runs[auto].classes == list(range(VOC_CLASSES)), runs[auto].classes
    workers1 = not_kept = None
    if settings.extras and not config.deeplab and size != NATIVE:
        workers1 = llseg(auto, workers=1).train
        if not settings.cuda:
            not_kept = llseg(auto, _env={"LLSEG_KEEP_FREED_MEMORY": "0"}).train
    reference_infer = fresh_process(reference_predict, images, size, repeats, device, **model)
    result = Measurement(config=config, flops=flops, reference=reference, reference_data_share=share, rounds=rounds,
                         runs=runs, auto=auto, workers1=workers1, not_kept=not_kept, reference_infer=reference_infer,
                         decode_ms=decode_ms(images, labels))
    log(f"  reference fp32 {reference:.2f} img/s, peer {result.peer:.2f}, llseg fp32 {result.fp32:.2f}"
        + (f", llseg {auto} {result.best:.2f}" if auto != "fp32" else "") + f", llseg / peer {result.ratio:.2f}x")
    return result


@dataclass(frozen=True)
class MatmulPeak:
    sizes: tuple[int, ...]  # n of the n x n products tried
    gflops: dict[str, float]  # by precision


def measure_matmul_peak(settings: Settings) -> MatmulPeak:
    log("matmul peak ...")
    sizes = (256,) if settings.smoke else (4096, 8192) if settings.cuda else (1024, 2048, 4096)
    gflops = {name: matmul_gflops(DTYPES[name], settings.device, sizes) for name in settings.precisions}
    return MatmulPeak(sizes, gflops)


@dataclass(frozen=True)
class MetricSpeed:
    """Images/s of the metric paths on ``size`` images."""

    size: Size
    reference: float  # the per-image numpy reference (8 matrices)
    llseg: float  # IncrementalScorer.update
    plain: float  # one textbook numpy confusion matrix per image


def measure_metrics(settings: Settings) -> MetricSpeed:
    log("metrics ...")
    size = (64, 128) if settings.smoke else NATIVE
    records, targets = metric_inputs(2 if settings.smoke else 8 if settings.quick else 16, size)
    for a, b in zip(reference_scorer(records, targets, NUM_CLASSES), llseg_scorer(records, targets, NUM_CLASSES),
                    strict=True):
        np.testing.assert_array_equal(a, b)  # same matrices, or the comparison means nothing

    def rate(fn: Callable[[], Any]) -> float:
        return len(records) / median_time(fn, settings.reps)

    def plain() -> list[np.ndarray]:
        return [numpy_confusion(r.pred, t, NUM_CLASSES) for r, t in zip(records, targets, strict=True)]

    return MetricSpeed(size, reference=rate(lambda: reference_scorer(records, targets, NUM_CLASSES)),
                       llseg=rate(lambda: llseg_scorer(records, targets, NUM_CLASSES)), plain=rate(plain))


def measure_adam(device: torch.device) -> dict[str, float]:
    """Milliseconds per Adam step over ERFNet's parameters, by implementation."""
    log("optimizer ...")
    return {name: adam_step_ms(device, **opts) for name, opts in
            (("default (for-loop)", {}), ("foreach=True", {"foreach": True}), ("fused=True", {"fused": True}))}


# ------------------------------------------------------------------------------------- report
def minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}m{seconds % 60:02.0f}s"


def table(header: str, rows: list[str], empty: str = "Not measured in this run (see `--models`).") -> list[str]:
    """A markdown table (header line, separator, rows), or ``empty`` without rows."""
    if not rows:
        return [empty]
    return [header, "|" + "---|" * (header.count("|") - 1), *rows]


def model_label(model: str) -> str:
    return DEEPLAB.get(model, "ERFNet")


def speedup(value: float, reference: float) -> str:
    return f"{value:.2f} ({value / reference:.2f}x)"


def training_rows(results: Sequence[Measurement], *, deeplab: bool) -> list[str]:
    """Training throughput rows of one model family; DeepLabV3 rows start with the model."""
    rows = []
    for m in results:
        if m.config.deeplab == deeplab:
            model = f" {model_label(m.config.model)} |" if deeplab else ""
            best = f"{m.best:.2f} ({m.ratio:.2f}x)"  # the median of the rounds' ratios, as in the peer lines
            fp32 = best if m.auto == "fp32" else speedup(m.fp32, m.peer)
            rows.append(f"|{model} {m.config.name} | {m.reference:.2f} | {m.peer:.2f} | {fp32} | {best} | "
                        f"{m.best / m.reference:.2f}x |")
    return rows


def data_wait_rows(results: Sequence[Measurement]) -> list[str]:
    rows = []
    for m in results:
        data_s, batch = m.runs[m.auto].data_s, m.config.batch
        assert data_s is not None
        workers1 = "–" if m.workers1 is None else f"{m.workers1:.2f}"
        rows.append(f"| {model_label(m.config.model)} | {m.config.name} | {m.decode_ms:.1f} ms | "
                    f"{1000 * data_s:.1f} ms | {1000 * batch / m.best:.0f} ms | {100 * data_s * m.best / batch:.1f}% | "
                    f"{100 * m.reference_data_share:.1f}% | {m.best:.2f} | {workers1} |")
    return rows


def malloc_rows(results: Sequence[Measurement]) -> list[str]:
    return [f"| {m.config.name} | {m.best:.2f} | {m.not_kept:.2f} | {100 * (m.best / m.not_kept - 1):+.0f}% |"
            for m in results if m.not_kept is not None]


def limit_rows(results: Sequence[Measurement], peak: MatmulPeak) -> list[str]:
    rows = []
    for m in results:
        for precision, rate in dict.fromkeys((("fp32", m.fp32), (m.auto, m.best))):
            achieved, limit = rate * m.flops / 1e9, peak.gflops[precision]
            rows.append(f"| {model_label(m.config.model)} | {m.config.name} | {precision} | {m.flops / 1e9:.2f} | "
                        f"{achieved:.0f} | {limit:.0f} | {100 * achieved / limit:.0f}% |")
    return rows


def inference_rows(results: Sequence[Measurement]) -> list[str]:
    rows = []
    for m in results:
        rows.append(f"| {model_label(m.config.model)} | {fmt_size(m.config.size)} (from {fmt_size(m.config.native)}) | "
                    f"{m.reference_infer:.2f} | {m.peer_infer:.2f} | {m.infer:.2f} ({m.infer_ratio:.2f}x) | "
                    f"{m.infer / m.reference_infer:.2f}x |")
    return rows


def peer_lines(results: Sequence[Measurement], peer: str) -> list[str]:
    """One line per training and inference row: llseg (auto) over the honest peer, the median of the ratios
    of the interleaved rounds of this run, with each round's ratio and the load averages seen."""
    lines = []
    for m in results:
        name = f"{model_label(m.config.model)} {fmt_size(m.config.size)}"
        each = ", ".join(f"{r.ratio:.2f}" for r in m.rounds)
        each_infer = ", ".join(f"{r.llseg_infer / r.peer_infer:.2f}" for r in m.rounds)
        load = f"load {min(m.loads):.1f}-{max(m.loads):.1f}"
        lines.append(f"- {name} training vs plain {peer} channels_last loop: **{m.ratio:.2f}x** "
                     f"(batch {m.config.batch}; rounds {each}; {load}; vs the plain fp32 loop "
                     f"{m.best / m.reference:.2f}x)")
        lines.append(f"- {name} inference vs plain {peer} channels_last loop: **{m.infer_ratio:.2f}x** "
                     f"(rounds {each_infer}; {load})")
    return lines


def run_warnings(results: Sequence[Measurement]) -> list[str]:
    return [f"llseg {model_label(m.config.model)} {m.config.name} {precision}: {run.nonfinite} of the "
            f"{m.config.repeats + 1} training epochs (warm-up included) ended with a non-finite loss."
            for m in results for precision, run in m.runs.items() if run.nonfinite]


def epochs_text(configs: Sequence[TrainingConfig]) -> str:
    """Images per timed epoch of each config, for the section texts."""
    return ", ".join(f"{c.images} ({model_label(c.model) + ' ' if c.deeplab else ''}{fmt_size(c.size)}"
                     f"{', ' + c.label if c.label else ''})" for c in configs) or "–"


def header_section(settings: Settings, started: dt.datetime, argv: Sequence[str]) -> list[str]:
    flags = "".join(f" {arg}" for arg in argv if not arg.startswith("--out") and not arg.endswith(".md"))
    lines = ["# llseg speed benchmark\n",
             f"Written by `benchmarks/speed.py{flags}` on {started:%Y-%m-%d %H:%M} UTC.\n"]
    if settings.smoke:
        lines.append("**Smoke run: tiny sizes and one repetition; the numbers below mean nothing.**\n")
    device = settings.device
    lines.append(f"- machine: {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__} with "
                 f"{torch.get_num_threads()} threads, device {device}, native bf16: {cpu_has_native_bf16()}, "
                 f"AMX-BF16: {cpu_has_amx()}, load average before the run: {os.getloadavg()[0]:.2f}")
    if settings.cuda:
        lines.append(f"- GPU: **{device_name(device)}** (CUDA {torch.version.cuda}); llseg runs with AMP and "
                     "channels_last, the plain loops in fp32 NCHW and (the peer) in fp16 channels_last with fused "
                     "optimizers on the same GPU")
    lines.append(f"- precision `auto` resolves to **{settings.auto}** here; medians of {settings.reps} timed runs "
                 "after a warm-up\n")
    return lines


def peer_section(results: Sequence[Measurement], settings: Settings) -> list[str]:
    peer = settings.peer
    return [
        f"## llseg against the honest peer (plain {peer} channels_last loop)\n",
        f"The peer is what a careful user writes in a few lines: autocast in {peer} (bf16 on CPUs with native bf16, "
        "fp16 on CUDA, fp32 where neither; logits into the loss in fp32), channels_last model and input, fused "
        "optimizer (`fused=True`), PIL decode + resize every step. llseg in the precision `auto` resolves to "
        f"({settings.auto}); on {cpu_model()}, AMX (lscpu flag amx_bf16): {'yes' if cpu_has_amx() else 'no'}, "
        f"native bf16: {'yes' if cpu_has_native_bf16() else 'no'}. Interleaved trials: {settings.rounds} rounds of "
        "peer then llseg (llseg then peer in every other round), each trial a fresh process (warm-up epoch, then "
        f"the median of {settings.reps} timed epochs); the ratio is the median of the rounds' ratios, and the "
        "1-minute load averages at the trials' starts are given (a shared machine's load moves both alike).\n",
        *(peer_lines(results, peer) or ["Not measured in this run (see `--models`)."]),
        "",
    ]


def training_section(results: Sequence[Measurement], configs: Sequence[TrainingConfig], settings: Settings) -> list[str]:
    auto, peer = settings.auto, settings.peer
    erfnet = [c for c in configs if not c.deeplab]
    deeplab = [c for c in configs if c.deeplab]
    voc_natives = ", ".join(dict.fromkeys(fmt_size(c.native) for c in deeplab)) or fmt_size(VOC_NATIVE)
    return [
        "## Training throughput (images/s, ERFNet, 19 classes)\n",
        f"Main reference: the plain {peer} channels_last loop above (fused Adam); ratios in brackets are over it "
        "(llseg auto: the median of the rounds' ratios; throughputs: medians of the rounds). "
        "Also shown: the plain fp32 loop (contiguous NCHW, plain Adam); last column llseg auto over it. Both "
        "decode + resize from PNG every step with PIL. "
        "llseg: `ContinualLearner.learn` (cached decode, augmentation, channels_last, Adam), in fp32 and in "
        f"the precision `auto` resolves to ({auto}). Timed epochs of {epochs_text(erfnet)} images.\n",
        *table(f"| input | plain fp32 | plain {peer} channels_last (reference) | llseg fp32 | llseg {auto} (auto) | "
               "llseg auto / plain fp32 |", training_rows(results, deeplab=False)),
        "\n## Training throughput (images/s, DeepLabV3, 21 classes)\n",
        f"Synthetic VOC-style object images (`render_objects`, {voc_natives} PNGs, ids 0..20 and 255; every "
        "label holds all 21 classes), expanding head, output stride 16, random init. Reference: plain fp32 loop, "
        "contiguous NCHW, PIL decode + resize from PNG every step, cross-entropy, plain SGD (`torch.optim.SGD`, "
        f"Nesterov momentum 0.9, lr {SGD_LR}, weight decay {WEIGHT_DECAY}, torch's default implementation). llseg: "
        f"`ContinualLearner.learn` with `TrainConfig(recipe=\"finetune\", dataset=\"voc\", optimizer=\"sgd\", "
        f"lr={SGD_LR}, input_size=(S, S))` (cached decode, augmentation, channels_last, fused SGD, poly schedule), "
        f"in fp32 and in the precision `auto` resolves to ({auto}). Timed epochs of {epochs_text(deeplab)} images.\n",
        f"Main reference: the plain {peer} channels_last loop with fused SGD (ratios in brackets).\n",
        *table(f"| model | input | plain fp32 | plain {peer} channels_last (reference) | llseg fp32 | "
               f"llseg {auto} (auto) | llseg auto / plain fp32 |", training_rows(results, deeplab=True)),
    ]


def data_wait_section(results: Sequence[Measurement], auto: str) -> list[str]:
    return [
        "\n## Share of step time spent waiting for data\n",
        "llseg: time to produce one batch from `SegmentationPairs` (what `_fit`'s DataLoader does: warm in-memory "
        "decode cache, resize, flip, rescale, crop, colour jitter; num_workers=0) over the measured llseg step time. "
        "PNG decode: what the cache saves per image and epoch. Reference: PIL decode + resize share of its own loop. "
        "Last columns: llseg training throughput with DataLoader workers 0 (`num_workers: auto` on CPU) and 1 "
        "(ERFNet only).\n",
        *table(f"| model | input | PNG decode per pair | llseg data per batch | llseg {auto} step | llseg data share | "
               "reference data share | img/s, 0 workers | img/s, 1 worker |", data_wait_rows(results)),
    ]


def malloc_section(results: Sequence[Measurement], auto: str) -> list[str]:
    rows = malloc_rows(results)
    if not rows:
        return []
    return [
        "\n## Keeping freed memory (ERFNet training, CPU)\n",
        f"llseg {auto} training images/s as above (the learner lets glibc keep freed memory, "
        "`llseg.runtime.keep_freed_memory`) and in another fresh process with `LLSEG_KEEP_FREED_MEMORY=0` "
        "(glibc's defaults: blocks above 32 MiB mapped afresh and page-faulted at every step).\n",
        *table(f"| input | llseg {auto}, kept (default) | LLSEG_KEEP_FREED_MEMORY=0 | gain |", rows),
    ]


def limit_section(results: Sequence[Measurement], peak: MatmulPeak, device: torch.device) -> list[str]:
    peaks = ", ".join(f"{k} **{v:.0f} GFLOP/s**" for k, v in peak.gflops.items())
    lines = [
        "\n## Fraction of the machine's limit\n",
        f"Peak `torch.mm` on {device} (best n×n product, n in {', '.join(map(str, peak.sizes))}, fastest of 7 runs): "
        f"{peaks}. Training FLOPs per image: forward + backward counted by `torch.utils.flop_counter.FlopCounterMode` "
        "(convolutions and matmuls); achieved = llseg images/s x FLOPs per image.\n",
    ]
    if device.type == "cuda":
        lines.append(f"On CUDA, fp32 convolutions use TF32 when `torch.backends.cudnn.allow_tf32` "
                     f"({torch.backends.cudnn.allow_tf32}) while the fp32 `torch.mm` peak uses it only when "
                     f"`torch.backends.cuda.matmul.allow_tf32` ({torch.backends.cuda.matmul.allow_tf32}): fp32 "
                     "fractions can then exceed 100%.\n")
    lines += table("| model | input | precision | GFLOP per image | achieved GFLOP/s | matmul peak GFLOP/s | "
                   "fraction of peak |", limit_rows(results, peak))
    return lines


def inference_section(results: Sequence[Measurement], settings: Settings) -> list[str]:
    auto, peer = settings.auto, settings.peer
    return [
        "\n## Inference throughput (images/s)\n",
        "Plain loops: decode, resize, forward, upsample to the PNG size, argmax; in fp32 NCHW, and (main reference, "
        f"ratios in brackets: the median of the rounds' ratios) {'in fp32' if peer == 'fp32' else f'with {peer} autocast'} "
        "and channels_last. llseg: `ContinualLearner.predict` (also the "
        "task-restricted maps).\n",
        *table(f"| model | input | plain fp32 | plain {peer} channels_last (reference) | llseg {auto} | "
               "llseg / plain fp32 |", inference_rows(results)),
    ]


def metric_section(metrics: MetricSpeed) -> list[str]:
    return [
        f"\n## Metric accumulation ({fmt_size(metrics.size)} images, 19 classes, 3 groups)\n",
        "Everything `IncrementalScorer` keeps per image (class-incremental, per-task and task-union matrices: "
        "8 confusion matrices). Reference: one textbook numpy confusion per matrix and image, restricted targets "
        "via `np.isin`. Both give identical matrices (checked).\n",
        "| path | images/s | ratio |",
        "|---|---|---|",
        f"| per-image numpy reference (8 matrices) | {metrics.reference:.1f} | 1.0x |",
        f"| llseg `IncrementalScorer.update` | {metrics.llseg:.1f} | **{metrics.llseg / metrics.reference:.1f}x** |",
        f"| (for scale: one textbook numpy confusion matrix per image) | {metrics.plain:.1f} | |",
    ]


def adam_section(adam: dict[str, float], device: torch.device) -> list[str]:
    return [f"\n## Adam step over ERFNet's parameters (ms, {device})\n",
            "| implementation | ms per step |", "|---|---|", *(f"| {name} | {ms:.2f} |" for name, ms in adam.items())]


def job_section(job: JobTiming | None, auto: str) -> list[str]:
    lines = ["\n## Default benchmark job (`llseg bench -f benchmarkingjob.yaml`)\n"]
    if job is None:
        lines.append(f"Not run here (pass `--job`). Last recorded: {LEAD_JOB}.")
    else:
        lines.append(f"Wall time **{minutes(job.seconds)}** (precision auto = {auto}); peak RSS of the job process "
                     f"{job.peak_rss_mib:.0f} MiB.")
    return lines


def memory_section(results: Sequence[Measurement], train_rss: float, cuda: bool) -> list[str]:
    gpu_mib = max((run.gpu_mib for m in results for run in m.runs.values()), default=0.0)
    return ["\n## Peak memory\n",
            "Peak RSS of the largest training/inference process (each measurement runs in its own process; the "
            f"default job's included): {train_rss:.0f} MiB; of this coordinating process: {maxrss_mib():.0f} MiB."
            + (f" Peak GPU memory allocated by llseg's training: {gpu_mib:.0f} MiB." if cuda else "")]


def closing_sections(results: Sequence[Measurement], cuda: bool) -> list[str]:
    """Warnings (non-finite losses) and, on a CPU run, what is still pending."""
    warnings = run_warnings(results)
    lines = ["\n## Warnings\n", *(f"- {w}" for w in warnings)] if warnings else []
    if not cuda:
        lines += ["\n## Pending\n", "- GPU rows (AMP + channels_last, ERFNet 512x1024, DeepLabV3-R101 513x513): run "
                  "this script on a CUDA machine."]
    return lines


def write_markdown(path: Path, lines: Sequence[str]) -> None:
    path.write_text("\n".join(lines) + "\n")
    log(f"wrote {path}")


# --------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, Settings]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer repetitions, skip ERFNet 512x1024 (CPU) and DeepLabV3-R101 512x512 training")
    parser.add_argument("--job", action="store_true", help="also time the default benchmark job (~3 minutes)")
    parser.add_argument("--models", default=",".join(MODELS),
                        help=f"comma-separated training/inference rows to run (default: all of {','.join(MODELS)})")
    parser.add_argument("--device", default="auto",
                        help="auto (CUDA when present, as the learner picks), cpu or cuda[:i]")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes and one repetition: exercises every code path in about a minute; "
                             "the numbers mean nothing (use with --out)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="interleaved peer / llseg rounds per training row (default 3; 1 with --smoke)")
    parser.add_argument("--sizes", default="",
                        help="comma-separated input sizes of the training rows to run, e.g. 256x512 (default: all)")
    parser.add_argument("--reps", type=int, default=None, help="timed epochs per trial (default 3, 2 with --quick)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads of every process (OMP_NUM_THREADS; default: torch's, the core count)")
    parser.add_argument("--no-extras", action="store_true",
                        help="skip the ERFNet trials with one DataLoader worker and with LLSEG_KEEP_FREED_MEMORY=0")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "RESULTS.md")
    args = parser.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        parser.error(f"--models: unknown {unknown}; choose from {', '.join(MODELS)}")
    if args.threads:  # inherited by the spawned measurement processes, read by torch at import
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    settings = Settings(models=models, quick=args.quick, smoke=args.smoke, job=args.job, device_option=args.device,
                        device=device, auto=resolve_precision("auto", device),
                        reps=args.reps or (1 if args.smoke else 2 if args.quick else 3),
                        rounds=args.rounds or (1 if args.smoke else 3), extras=not args.no_extras)
    return args, settings


def main(argv: list[str] | None = None) -> int:
    args, settings = parse_args(argv)
    configs = training_configs(settings.models, quick=settings.quick, smoke=settings.smoke, cuda=settings.cuda,
                               reps=settings.reps)
    if args.sizes:
        sizes = {size.strip() for size in args.sizes.split(",")}
        configs = [c for c in configs if fmt_size(c.size) in sizes]
    started = dt.datetime.now(dt.timezone.utc)
    job = None
    if settings.job:  # first, while this process is small: a child's peak RSS includes its parent's at fork time
        log("default job ...")
        job = run_job()
    peak = measure_matmul_peak(settings)
    with tempfile.TemporaryDirectory(prefix="llseg-speed-") as tmp:
        log("writing PNGs ...")
        data = write_datasets(configs, Path(tmp))
        results = []
        for config in configs:
            images, labels = (paths[:config.images] for paths in data[config.dataset, config.native])
            results.append(measure_training(config, images, labels, settings))
        train_rss = children_maxrss_mib()
    metrics = measure_metrics(settings)
    adam = measure_adam(settings.device)

    auto, device = settings.auto, settings.device
    write_markdown(args.out, [
        *header_section(settings, started, sys.argv[1:] if argv is None else argv),
        *peer_section(results, settings),
        *training_section(results, configs, settings),
        *data_wait_section(results, auto),
        *malloc_section(results, auto),
        *limit_section(results, peak, device),
        *inference_section(results, settings),
        *metric_section(metrics),
        *adam_section(adam, device),
        *job_section(job, auto),
        *memory_section(results, train_rss, settings.cuda),
        *closing_sections(results, settings.cuda),
    ])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
