"""Speed of llseg's training, inference and metric paths next to plain reference loops, on this machine.

Run from the repository root::

    .venv/bin/python benchmarks/speed.py            # full run, ~15 minutes on a quiet 2-core CPU (estimate)
    .venv/bin/python benchmarks/speed.py --quick    # fewer repetitions, no ERFNet 512x1024, no R101 512x512
    .venv/bin/python benchmarks/speed.py --job      # also time the default benchmark job (~3 min)
    .venv/bin/python benchmarks/speed.py --models deeplabv3_mobilenet_v3_large   # only these training rows
    .venv/bin/python benchmarks/speed.py --smoke --out /tmp/speed.md  # tiny sizes, one repetition: checks
                                                                       # the code paths, numbers meaningless

It writes ``benchmarks/RESULTS.md`` (``--out`` to change). Every number is the median of several
timed repetitions after a warm-up, and every training and inference measurement runs in a fresh
process (see ``fresh_process``); run it on a quiet machine (another multi-threaded process on the
same cores slows torch down several-fold).

With CUDA (``--device auto``, the default, picks it like the learner's ``device: auto``) every
measurement runs on the GPU: llseg with precision ``auto`` (fp16 autocast + GradScaler) and
channels_last, the reference loops in plain fp32 NCHW on the same GPU; the GPU run adds ERFNet at
512x1024 (also with ``--quick``) and DeepLabV3-R101 at 513x513, and uses 4x more images per timed
epoch. RESULTS.md records the device name.

What is compared:

* training, ERFNet (19 classes, synthetic street scenes): ``ContinualLearner.learn`` (what ``_fit``
  does: cached decode, augmentation, channels_last, the resolved precision, Adam) against a plain
  loop written here: fp32, contiguous NCHW, PIL decode + resize from PNG every step, cross-entropy,
  ``torch.optim.Adam``;
* training, DeepLabV3 (``deeplabv3_mobilenet_v3_large`` and ``deeplabv3_resnet101``, expanding head,
  21 VOC classes, synthetic VOC-style object images at 256x256 and 512x512): ``ContinualLearner.learn``
  with recipe ``finetune`` and optimizer ``sgd`` against the same plain fp32 loop with
  ``torch.optim.SGD`` (Nesterov, momentum 0.9);
* inference (ERFNet and DeepLabV3): ``ContinualLearner.predict`` against a plain fp32 decode/resize/forward/argmax loop;
* metrics: ``IncrementalScorer.update`` (all task-restricted confusion matrices of one image in one
  pass) against the per-image numpy reference that builds each restricted matrix separately;
* the machine's limit: FLOPs of one training step (``FlopCounterMode``) against measured ``torch.mm``
  throughput in fp32 and the precision ``auto`` resolves to (bf16 on CPUs with native bf16, fp16 on CUDA).
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
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

from llseg.data.dataset import SegmentationPairs, channel_lut
from llseg.data.imageio import read_label_png, read_rgb, write_label_png
from llseg.data.labels import get_dataset_info
from llseg.data.predictions import Prediction
from llseg.data.cityscapes.synthetic import render_scene
from llseg.data.voc.synthetic import render_objects
from llseg.data.transforms import TrainAugment, normalize
from llseg.methods.config import TrainConfig
from llseg.methods.learner import ContinualLearner
from llseg.metrics.incremental import IncrementalScorer
from llseg.models import create_model
from llseg.runtime import cpu_has_native_bf16, pick_device, resolve_precision

ROOT = Path(__file__).resolve().parents[1]
NUM_CLASSES = 19
NATIVE = (512, 1024)  # size of the generated PNGs (Cityscapes at half resolution)
JOB_NATIVE, JOB_INPUT, JOB_BATCH = (128, 256), (64, 128), 8  # the default benchmark job's data and settings
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


def fresh_process(fn: Callable[..., T], *args: Any, _env: Optional[dict[str, str]] = None, **kwargs: Any) -> T:
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
        for i in range(repeats + 2):  # two warm-up runs
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


def train_flops_per_image(size: Size, model_name: str = "erfnet", num_classes: int = NUM_CLASSES, **kwargs: Any) -> float:
    """Forward + backward FLOPs of one training image (convolutions and matmuls), counted on the meta
    device (shapes only, nothing computed). Batch of 2 halved: BatchNorm after DeepLabV3's ASPP
    pooling (1x1 maps) refuses a training batch of one."""
    with torch.device("meta"):
        model = create_model(model_name, num_classes=num_classes, **kwargs).train()
        x = torch.randn(2, 3, *size)
    with FlopCounterMode(display=False, custom_mapping={torch.ops.aten.convolution_backward: conv_backward_flops}) as counter:
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
    config = TrainConfig(epochs=1, batch_size=batch, input_size=size, precision=precision, num_workers=workers,
                         device=device, **config_kwargs)
    learner = ContinualLearner(config)
    # the warm-up decodes into the cache and fills oneDNN's primitive caches
    summaries = [learner.learn(images, labels, labels) for _ in range(repeats + 1)]
    result: dict[str, Any] = {
        "train": len(images) / statistics.median(s["seconds"] for s in summaries[1:]),
        "classes": learner.classes,
        "nonfinite": sum(not np.isfinite(s["final_loss"]) for s in summaries),
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
    for image, label in zip(images, labels):
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


def reference_train(images: list[str], labels: list[str], size: Size, batch: int, repeats: int,
                    model_name: str = "erfnet", num_classes: int = NUM_CLASSES, optimizer_name: str = "adam",
                    device: torch.device = torch.device("cpu"), **model_kwargs: Any) -> tuple[float, float]:
    """(images/s, data share) of the plain fp32 loop: one epoch over ``images`` per repetition.

    ERFNet with ``torch.optim.Adam`` (Klingner's settings) or, with ``optimizer_name="sgd"``, e.g.
    DeepLabV3 with ``torch.optim.SGD`` (Nesterov, momentum 0.9; torch's default implementation).
    """
    model = create_model(model_name, num_classes=num_classes, **model_kwargs).to(device).train()
    if optimizer_name == "adam":
        optimizer: torch.optim.Optimizer = torch.optim.Adam(model.parameters(), lr=5e-4, weight_decay=3e-4)
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=SGD_LR, momentum=0.9, nesterov=True,
                                    weight_decay=WEIGHT_DECAY)
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
            image, target = item[0].to(device), item[1].to(device)
            loss = F.cross_entropy(model(image), target, ignore_index=255)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    epoch()  # warm-up
    data_time[0] = 0.0
    per_epoch = median_time(epoch, repeats, warmup=0)
    return len(images) / per_epoch, data_time[0] / repeats / per_epoch


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
                      model_name: str = "erfnet", num_classes: int = NUM_CLASSES, **kwargs: Any) -> float:
    """Images/s of plain fp32 inference: decode, resize, forward, upsample to the image size, argmax."""
    model = create_model(model_name, num_classes=num_classes, **kwargs).to(device).eval()

    def run() -> None:
        with torch.no_grad():
            for path in images:
                pil = Image.open(path).convert("RGB")
                x = torch.from_numpy(np.asarray(pil.resize(size[::-1], Image.BILINEAR)).copy()).permute(2, 0, 1).float() / 255
                logits = model(normalize(x)[None].contiguous().to(device))
                F.interpolate(logits, size=(pil.height, pil.width), mode="bilinear", align_corners=False).argmax(1).cpu().numpy()

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
    for record, target in zip(records, targets):
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
    for record, target in zip(records, targets):
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
        prefix_pred = np.stack([rng.integers(0, 10 + 5 * k if k < 2 else NUM_CLASSES, size, dtype=np.uint8) for k in range(3)])
        records.append(Prediction(prefix_pred[-1], group_pred, prefix_pred, np.arange(NUM_CLASSES),
                                  np.array([10, 5, 4]), NUM_CLASSES))
        targets.append(target)
    return records, targets


# -------------------------------------------------------------------------------- default job
def run_job() -> tuple[float, float]:
    """(wall seconds, peak child RSS MiB) of ``llseg bench -f benchmarkingjob.yaml`` in a scratch workspace."""
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
    return seconds, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


# ------------------------------------------------------------------------------------- report
def minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}m{seconds % 60:02.0f}s"


# Training rows: (model, label, native PNG size, input size, batch, images per timed epoch, repetitions)
Config = tuple[str, str, Size, Size, int, int, int]


def training_configs(models: Sequence[str], *, quick: bool, smoke: bool, cuda: bool, reps: int) -> list[Config]:
    """The training rows of this run: ERFNet on street scenes, DeepLabV3 on VOC-style objects.

    CPU: batches of 4 (2 at 512x512), two batches per timed epoch (16 images for the default-job config,
    one batch at 512x1024). GPU: 4x the images per epoch, plus ERFNet 512x1024 (also with --quick) and
    DeepLabV3-R101 at 513x513 batch 8. --quick drops ERFNet 512x1024 (CPU) and R101 512x512.
    """
    configs: list[Config] = []
    if smoke:
        if "erfnet" in models:
            configs.append(("erfnet", "", (64, 128), (32, 64), 2, 4, 1))
        configs += [(m, "", (64, 64), (64, 64), 2, 4, 1) for m in DEEPLAB if m in models]
        return configs
    more = 4 if cuda else 1
    if "erfnet" in models:
        configs += [("erfnet", "default job", JOB_NATIVE, JOB_INPUT, JOB_BATCH, 16 * more, reps),
                    ("erfnet", "", NATIVE, (256, 512), 4, 8 * more, reps)]
        if not quick or cuda:
            configs.append(("erfnet", "GPU run only" if quick else "", NATIVE, NATIVE, 4, 4 * more, max(1, reps - 1)))
    for model in (m for m in DEEPLAB if m in models):
        configs.append((model, "", VOC_NATIVE, (256, 256), 4, 8 * more, reps))
        if not (quick and model == "deeplabv3_resnet101"):
            configs.append((model, "", VOC_NATIVE, (512, 512), 2, 4 * more, max(1, reps - 1)))
        if cuda and model == "deeplabv3_resnet101":
            configs.append((model, "GPU run only", VOC_NATIVE, (513, 513), 8, 8 * more, max(1, reps - 1)))
    return configs


def table(header: str, rows: list[str], empty: str = "Not measured in this run (see `--models`).") -> list[str]:
    """A markdown table (header line, separator, rows), or ``empty`` without rows."""
    if not rows:
        return [empty]
    return [header, "|" + "---|" * (header.count("|") - 1), *rows]


def model_label(model: str) -> str:
    return DEEPLAB.get(model, "ERFNet")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer repetitions, skip ERFNet 512x1024 (CPU) and DeepLabV3-R101 512x512 training")
    parser.add_argument("--job", action="store_true", help="also time the default benchmark job (~3 minutes)")
    parser.add_argument("--models", default=",".join(MODELS),
                        help=f"comma-separated training/inference rows to run (default: all of {','.join(MODELS)})")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present, as the learner picks), cpu or cuda[:i]")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes and one repetition: exercises every code path in about a minute; "
                             "the numbers mean nothing (use with --out)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "RESULTS.md")
    args = parser.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        parser.error(f"--models: unknown {unknown}; choose from {', '.join(MODELS)}")
    reps = 1 if args.smoke else 2 if args.quick else 3
    device = pick_device(args.device)
    cuda = device.type == "cuda"
    auto = resolve_precision("auto", device)
    configs = training_configs(models, quick=args.quick, smoke=args.smoke, cuda=cuda, reps=reps)
    lines: list[str] = []
    say = lines.append

    flags = "".join(f" {flag}" for flag, on in (("--quick", args.quick), ("--job", args.job), ("--smoke", args.smoke)) if on)
    flags += f" --models {','.join(models)}" if models != list(MODELS) else ""
    flags += f" --device {args.device}" if args.device != "auto" else ""
    say("# llseg speed benchmark\n")
    say(f"Written by `benchmarks/speed.py{flags}` on {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC.\n")
    if args.smoke:
        say("**Smoke run: tiny sizes and one repetition; the numbers below mean nothing.**\n")
    say(f"- machine: {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__} with "
        f"{torch.get_num_threads()} threads, device {device}, native bf16: {cpu_has_native_bf16()}")
    if cuda:
        say(f"- GPU: **{device_name(device)}** (CUDA {torch.version.cuda}); llseg runs with AMP and channels_last, "
            "the reference loops in plain fp32 NCHW on the same GPU")
    say(f"- precision `auto` resolves to **{auto}** here; medians of {reps} timed runs after a warm-up\n")

    job = None
    if args.job:  # first, while this process is small: a child's peak RSS includes its parent's at fork time
        log("default job ...")
        job = run_job()

    log("matmul peak ...")
    mm_sizes = (256,) if args.smoke else (4096, 8192) if cuda else (1024, 2048, 4096)
    peak = {name: matmul_gflops(DTYPES[name], device, mm_sizes) for name in dict.fromkeys(("fp32", auto))}
    train_rows, share_rows, limit_rows, infer_rows, deeplab_rows, malloc_rows, warnings = [], [], [], [], [], [], []
    gpu_mib = 0.0
    with tempfile.TemporaryDirectory(prefix="llseg-speed-") as tmp:
        log("writing PNGs ...")
        wanted: dict[tuple[str, Size], int] = {}
        for model, _, native, *_, n, _ in configs:
            key = ("voc" if model in DEEPLAB else "city", native)
            wanted[key] = max(wanted.get(key, 0), n)
        writers = {"city": write_dataset, "voc": write_voc_dataset}
        data = {key: writers[key[0]](Path(tmp), n, key[1]) for key, n in wanted.items()}
        for model, label, native, size, batch, n, r in configs:
            name = f"{fmt_size(size)} batch {batch}" + (f" ({label})" if label else "")
            if model in DEEPLAB:
                imgs, labs = (paths[:n] for paths in data["voc", native])
                log(f"training {model_label(model)} {name} ...")
                flops = train_flops_per_image(size, model, VOC_CLASSES, **DEEPLAB_KWARGS)
                ref, ref_share = fresh_process(reference_train, imgs, labs, size, batch, r, model, VOC_CLASSES, "sgd",
                                               device, **DEEPLAB_KWARGS)
                common: dict[str, Any] = dict(recipe="finetune", model=model, dataset="voc", optimizer="sgd", lr=SGD_LR,
                                              weight_decay=WEIGHT_DECAY, model_kwargs=dict(DEEPLAB_KWARGS))
                runs = {p: fresh_process(llseg_measure, imgs, labs, size, batch, p, r, device=str(device),
                                         data=p == auto, infer=p == auto, **common) for p in dict.fromkeys(("fp32", auto))}
                assert runs["fp32"]["classes"] == list(range(VOC_CLASSES)), runs["fp32"]["classes"]  # the model whose FLOPs we count
                fp32, best = runs["fp32"]["train"], runs[auto]["train"]
                deeplab_rows.append(f"| {model_label(model)} | {name} | {ref:.2f} | {fp32:.2f} ({fp32 / ref:.2f}x) | "
                                    f"{best:.2f} ({best / ref:.2f}x) |")
                workers = None
                ref_infer = fresh_process(reference_predict, imgs, size, r, device, model, VOC_CLASSES, **DEEPLAB_KWARGS)
            else:
                imgs, labs = (paths[:n] for paths in data["city", native])
                log(f"training and inference, ERFNet {name} ...")
                flops = train_flops_per_image(size)
                ref, ref_share = fresh_process(reference_train, imgs, labs, size, batch, r, device=device)
                runs = {"fp32": fresh_process(llseg_measure, imgs, labs, size, batch, "fp32", r, device=str(device))}
                runs[auto] = fresh_process(llseg_measure, imgs, labs, size, batch, auto, r, device=str(device),
                                           data=True, infer=True)
                fp32, best = runs["fp32"]["train"], runs[auto]["train"]
                workers = kept = None
                if size != NATIVE:
                    workers = fresh_process(llseg_measure, imgs, labs, size, batch, auto, r, workers=1, device=str(device))["train"]
                    if not cuda:
                        kept = fresh_process(llseg_measure, imgs, labs, size, batch, auto, r, device=str(device),
                                             _env={"LLSEG_KEEP_FREED_MEMORY": "0"})["train"]
                        malloc_rows.append(f"| {name} | {best:.2f} | {kept:.2f} | {100 * (best / kept - 1):+.0f}% |")
                train_rows.append(f"| {name} | {ref:.2f} | {fp32:.2f} ({fp32 / ref:.2f}x) | {best:.2f} ({best / ref:.2f}x) |")
                ref_infer = fresh_process(reference_predict, imgs, size, r, device)
            data_s, infer = runs[auto]["data_s"], runs[auto]["infer"]
            share_rows.append(f"| {model_label(model)} | {name} | {decode_ms(imgs, labs):.1f} ms | {1000 * data_s:.1f} ms | "
                              f"{1000 * batch / best:.0f} ms | {100 * data_s * best / batch:.1f}% | {100 * ref_share:.1f}% | "
                              f"{best:.2f} | " + ("–" if workers is None else f"{workers:.2f}") + " |")
            infer_rows.append(f"| {model_label(model)} | {fmt_size(size)} (from {fmt_size(native)}) | {ref_infer:.2f} | "
                              f"{infer:.2f} ({infer / ref_infer:.2f}x) |")
            for precision, run in runs.items():
                gpu_mib = max(gpu_mib, run.get("gpu_mib", 0.0))
                if run["nonfinite"]:
                    warnings.append(f"llseg {model_label(model)} {name} {precision}: {run['nonfinite']} of the "
                                    f"{r + 1} training epochs (warm-up included) ended with a non-finite loss.")
            for precision, rate in dict.fromkeys((("fp32", fp32), (auto, best))):
                achieved = rate * flops / 1e9
                limit_rows.append(f"| {model_label(model)} | {name} | {precision} | {flops / 1e9:.2f} | {achieved:.0f} | "
                                  f"{peak[precision]:.0f} | {100 * achieved / peak[precision]:.0f}% |")
            log(f"  reference {ref:.2f} img/s, llseg fp32 {fp32:.2f}, llseg {auto} {best:.2f}")
        train_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024

    log("metrics ...")
    metric_size = (64, 128) if args.smoke else NATIVE
    records, targets = metric_inputs(2 if args.smoke else 8 if args.quick else 16, metric_size)
    for a, b in zip(reference_scorer(records, targets, NUM_CLASSES), llseg_scorer(records, targets, NUM_CLASSES)):
        np.testing.assert_array_equal(a, b)  # same matrices, or the comparison means nothing
    ref_metric = len(records) / median_time(lambda: reference_scorer(records, targets, NUM_CLASSES), reps)
    llseg_metric = len(records) / median_time(lambda: llseg_scorer(records, targets, NUM_CLASSES), reps)
    plain = len(records) / median_time(lambda: [numpy_confusion(r.pred, t, NUM_CLASSES) for r, t in zip(records, targets)], reps)

    log("optimizer ...")
    adam = {name: adam_step_ms(device, **opts) for name, opts in
            (("default (for-loop)", {}), ("foreach=True", {"foreach": True}), ("fused=True", {"fused": True}))}

    def epochs_text(rows: list[Config]) -> str:
        return ", ".join(f"{n} ({model_label(model) + ' ' if model in DEEPLAB else ''}{fmt_size(size)}"
                         f"{', ' + label if label else ''})" for model, label, _, size, _, n, _ in rows)

    erfnet_configs = [c for c in configs if c[0] == "erfnet"]
    deeplab_configs = [c for c in configs if c[0] in DEEPLAB]
    say("## Training throughput (images/s, ERFNet, 19 classes)\n")
    say("Reference: plain fp32 loop, contiguous NCHW, PIL decode + resize from PNG every step, plain Adam. "
        "llseg: `ContinualLearner.learn` (cached decode, augmentation, channels_last, Adam), in fp32 and in "
        f"the precision `auto` resolves to ({auto}). Timed epochs of {epochs_text(erfnet_configs) or '–'} images.\n")
    lines.extend(table(f"| input | reference fp32 | llseg fp32 | llseg {auto} (auto) |", train_rows))
    say("\n## Training throughput (images/s, DeepLabV3, 21 classes)\n")
    voc_natives = ", ".join(dict.fromkeys(fmt_size(c[2]) for c in deeplab_configs)) or fmt_size(VOC_NATIVE)
    say(f"Synthetic VOC-style object images (`render_objects`, {voc_natives} PNGs, ids 0..20 and 255; every "
        "label holds all 21 classes), expanding head, output stride 16, random init. Reference: plain fp32 loop, "
        "contiguous NCHW, PIL decode + resize from PNG every step, cross-entropy, plain SGD (`torch.optim.SGD`, "
        f"Nesterov momentum 0.9, lr {SGD_LR}, weight decay {WEIGHT_DECAY}, torch's default implementation). llseg: "
        f"`ContinualLearner.learn` with `TrainConfig(recipe=\"finetune\", dataset=\"voc\", optimizer=\"sgd\", lr={SGD_LR}, "
        "input_size=(S, S))` (cached decode, augmentation, channels_last, fused SGD, poly schedule), in fp32 and in "
        f"the precision `auto` resolves to ({auto}). Timed epochs of {epochs_text(deeplab_configs) or '–'} images.\n")
    lines.extend(table(f"| model | input | reference fp32 | llseg fp32 | llseg {auto} (auto) |", deeplab_rows))
    say("\n## Share of step time spent waiting for data\n")
    say("llseg: time to produce one batch from `SegmentationPairs` (what `_fit`'s DataLoader does: warm in-memory "
        "decode cache, resize, flip, rescale, crop, colour jitter; num_workers=0) over the measured llseg step time. "
        "PNG decode: what the cache saves per image and epoch. Reference: PIL decode + resize share of its own loop. "
        "Last columns: llseg training throughput with DataLoader workers 0 (`num_workers: auto` on CPU) and 1 "
        "(ERFNet only).\n")
    lines.extend(table(f"| model | input | PNG decode per pair | llseg data per batch | llseg {auto} step | llseg data share | "
                       "reference data share | img/s, 0 workers | img/s, 1 worker |", share_rows))
    if malloc_rows:
        say("\n## Keeping freed memory (ERFNet training, CPU)\n")
        say(f"llseg {auto} training images/s as above (the learner lets glibc keep freed memory, "
            "`llseg.runtime.keep_freed_memory`) and in another fresh process with `LLSEG_KEEP_FREED_MEMORY=0` "
            "(glibc's defaults: blocks above 32 MiB mapped afresh and page-faulted at every step).\n")
        lines.extend(table(f"| input | llseg {auto}, kept (default) | LLSEG_KEEP_FREED_MEMORY=0 | gain |", malloc_rows))
    say("\n## Fraction of the machine's limit\n")
    say(f"Peak `torch.mm` on {device} (best n×n product, n in {', '.join(map(str, mm_sizes))}, fastest of 7 runs): " + ", ".join(f"{k} **{v:.0f} GFLOP/s**" for k, v in peak.items()) + ". "
        "Training FLOPs per image: forward + backward counted by `torch.utils.flop_counter.FlopCounterMode` "
        "(convolutions and matmuls); achieved = llseg images/s x FLOPs per image.\n")
    if cuda:
        say(f"On CUDA, fp32 convolutions use TF32 when `torch.backends.cudnn.allow_tf32` ({torch.backends.cudnn.allow_tf32}) "
            f"while the fp32 `torch.mm` peak uses it only when `torch.backends.cuda.matmul.allow_tf32` "
            f"({torch.backends.cuda.matmul.allow_tf32}): fp32 fractions can then exceed 100%.\n")
    lines.extend(table("| model | input | precision | GFLOP per image | achieved GFLOP/s | matmul peak GFLOP/s | "
                       "fraction of peak |", limit_rows))
    say("\n## Inference throughput (images/s)\n")
    say("Reference: plain fp32 loop (decode, resize, forward, upsample to the PNG size, argmax). llseg: "
        "`ContinualLearner.predict` (also the task-restricted maps).\n")
    lines.extend(table(f"| model | input | reference fp32 | llseg {auto} |", infer_rows))
    say(f"\n## Metric accumulation ({fmt_size(metric_size)} images, 19 classes, 3 groups)\n")
    say("Everything `IncrementalScorer` keeps per image (class-incremental, per-task and task-union matrices: "
        "8 confusion matrices). Reference: one textbook numpy confusion per matrix and image, restricted targets "
        "via `np.isin`. Both give identical matrices (checked).\n")
    say("| path | images/s | ratio |")
    say("|---|---|---|")
    say(f"| per-image numpy reference (8 matrices) | {ref_metric:.1f} | 1.0x |")
    say(f"| llseg `IncrementalScorer.update` | {llseg_metric:.1f} | **{llseg_metric / ref_metric:.1f}x** |")
    say(f"| (for scale: one textbook numpy confusion matrix per image) | {plain:.1f} | |")
    say(f"\n## Adam step over ERFNet's parameters (ms, {device})\n")
    say("| implementation | ms per step |")
    say("|---|---|")
    lines.extend(f"| {name} | {ms:.2f} |" for name, ms in adam.items())
    say("\n## Default benchmark job (`llseg bench -f benchmarkingjob.yaml`)\n")
    if job is None:
        say(f"Not run here (pass `--job`). Last recorded: {LEAD_JOB}.")
    else:
        say(f"Wall time **{minutes(job[0])}** (precision auto = {auto}); peak RSS of the job process {job[1]:.0f} MiB.")
    say("\n## Peak memory\n")
    say(f"Peak RSS of the largest training/inference process (each measurement runs in its own process; the "
        f"default job's included): {train_rss:.0f} MiB; of this coordinating process: {maxrss_mib():.0f} MiB."
        + (f" Peak GPU memory allocated by llseg's training: {gpu_mib:.0f} MiB." if cuda else ""))
    if warnings:
        say("\n## Warnings\n")
        lines.extend(f"- {w}" for w in warnings)
    if not cuda:
        say("\n## Pending\n")
        say("- GPU rows (AMP + channels_last, ERFNet 512x1024, DeepLabV3-R101 513x513): run this script on a CUDA machine.")
    args.out.write_text("\n".join(lines) + "\n")
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
