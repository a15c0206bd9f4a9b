"""Project-generated pretrained backbones for the synthetic DeepLabV3 benchmarks (``llseg pretrain``).

The papers start VOC and ISPRS from ImageNet weights; on a CPU the synthetic jobs start from a
backbone that llseg trains itself: DeepLabV3 with softmax cross-entropy on another seed of the same
synthetic generator, saved in torchvision's classification format (what ``model_kwargs:
{backbone_weights: ...}`` loads, as ``llseg export-backbone`` writes it).

* ``objects``: every class of the synthetic objects (VOC layout), full labels (ImageNet also holds
  VOC's categories); train images of every step of ``voc-15-5`` (labels 255 = ignore, 0 = background).
* ``aerial``: the source domain only (step 0 of ``isprs-2-2-1``: Potsdam RGB patches, full labels),
  so the target domain (Vaihingen IRRG) stays unseen, as ImageNet never saw Vaihingen.

The result is cached: ``<out>.json`` records a key of the settings and the SHA-256 of the weights
file; a later call with the same settings finds both and trains nothing.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from llseg.atomic import atomic_save, check_output_file, write_text
from llseg.data.indexfile import read_index
from llseg.data.prepare import prepare
from llseg.errors import ConfigError
from llseg.methods.config import TrainConfig
from llseg.methods.learner import ContinualLearner
from llseg.methods.stages import task_train_rows
from llseg.models import DeepLabV3

log = logging.getLogger("llseg.pretrain")
Kind = Literal["objects", "aerial"]
KINDS: tuple[Kind, ...] = ("objects", "aerial")
FORMAT = 1  # bump when the training below changes: earlier records then no longer match
# Per kind: the split whose train rows are used, the estimator dataset, default image (objects) or patch (aerial) size.
SPLIT = {"objects": "voc-15-5", "aerial": "isprs-2-2-1"}
DATASET = {"objects": "voc", "aerial": "isprs"}
DEFAULT_SIZE = {"objects": (128, 128), "aerial": (96, 96)}
DEFAULT_EPOCHS = {"objects": 30, "aerial": 20}


@dataclass(frozen=True)
class PretrainSettings:
    """Everything that determines the backbone (the cache key).

    ``size``: objects: image size (H, W) of the generated dataset and the training input; aerial:
    the square patch side (H = W) cut from the generated tiles. ``images`` and ``class_tint`` apply
    to objects only (the generator's train-image count and class colour cue)."""

    kind: Kind
    seed: int = 1
    size: tuple[int, int] | None = None
    images: int = 400
    class_tint: float = 0.7
    epochs: int | None = None  # None: DEFAULT_EPOCHS of the kind
    model: str = "deeplabv3_mobilenet_v3_large"
    hyperparameters: dict[str, Any] = field(default_factory=lambda: {
        # From scratch: BN momentum 0.1 and every parameter at lr 0.05 (benchmarks/accuracy.py's CPU settings).
        "model_kwargs": {"bn_momentum": 0.1}, "optimizer": "sgd", "lr": 0.05, "backbone_lr": 0.05,
        "weight_decay": 1e-4, "lr_policy": "poly", "batch_size": 8, "scale": [1.0, 1.25], "jitter": 0.0, "seed": 1234})

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"pretrain kind must be one of {', '.join(KINDS)}; got {self.kind!r}")
        if self.size is None:
            object.__setattr__(self, "size", DEFAULT_SIZE[self.kind])
        if self.epochs is None:
            object.__setattr__(self, "epochs", DEFAULT_EPOCHS[self.kind])
        if self.kind == "aerial" and self.size is not None and self.size[0] != self.size[1]:
            raise ConfigError(f"aerial pretraining cuts square patches; give --size NxN, not {self.size[0]}x{self.size[1]}")
        if self.epochs < 1:  # type: ignore[operator]  # set above
            raise ConfigError(f"pretrain epochs must be >= 1; got {self.epochs}")

    def key(self) -> str:
        """SHA-256 (16 hex digits) of the settings and :data:`FORMAT`."""
        text = json.dumps({"format": FORMAT, **asdict(self)}, sort_keys=True, default=list)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def train_config(self) -> TrainConfig:
        """``joint`` (full labels, one fresh model) with these settings."""
        size = self.size or DEFAULT_SIZE[self.kind]
        return TrainConfig.from_hyperparameters(
            {**self.hyperparameters, "recipe": "joint", "model": self.model, "dataset": DATASET[self.kind],
             "split": SPLIT[self.kind], "epochs": self.epochs,
             "input_size": f"{size[0]}x{size[1]}" if self.kind == "objects" else None},
            source=f"llseg pretrain --kind {self.kind}")


@dataclass(frozen=True)
class Pretrained:
    """A backbone file and what made it."""

    path: Path  # torchvision classification state_dict (``backbone_weights``)
    key: str  # PretrainSettings.key()
    scores: dict[str, float | None]  # the pretraining model on its own dataset's test index
    seconds: float  # of the training that wrote it (not of a cache hit)
    train_images: int
    reused: bool  # True: found in the cache, nothing trained


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(functools.partial(handle.read, 1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def record_path(out: Path) -> Path:
    """The JSON record beside a backbone file: ``<out>.json``."""
    return out.with_name(out.name + ".json")


def cached(settings: PretrainSettings, out: str | Path) -> Pretrained | None:
    """The backbone at ``out`` if its record names these settings and the file's content; else None."""
    out = Path(out)
    record = record_path(out)
    if not (out.is_file() and record.is_file()):
        return None
    try:
        saved = json.loads(record.read_text())
    except (OSError, ValueError):
        return None
    if saved.get("key") != settings.key() or saved.get("sha256") != _sha256(out):
        return None
    return Pretrained(out, saved["key"], saved["scores"], saved["seconds"], saved["train_images"], reused=True)


def prepare_data(settings: PretrainSettings, work: str | Path) -> Path:
    """Generate the synthetic dataset (``settings.seed``) under ``work`` and prepare it as the kind's
    split; returns the prepared folder. Both steps reuse complete earlier output."""
    work = Path(work)
    size = settings.size or DEFAULT_SIZE[settings.kind]
    tag = f"{settings.kind}-seed{settings.seed}"
    if settings.kind == "objects":
        from llseg.data.voc.synthetic import generate_objects_dataset

        data = generate_objects_dataset(work / f"{tag}-{size[0]}x{size[1]}-{settings.images}-tint{settings.class_tint}",
                                        seed=settings.seed, size=size, images=settings.images,
                                        class_tint=settings.class_tint)
        prepared = data.out.with_name(data.out.name + "-" + SPLIT["objects"])
        prepare("voc", root=data.out, split=SPLIT["objects"], out=prepared)
        return prepared
    from llseg.data.isprs.synthetic import generate_aerial_dataset

    aerial = generate_aerial_dataset(work / tag, seed=settings.seed)
    prepared = work / f"{tag}-{SPLIT['aerial']}-{size[0]}"
    prepare("isprs", root=aerial.out, split=SPLIT["aerial"], out=prepared, isprs_options={"patch_size": size[0]})
    return prepared


def pretrain_backbone(settings: PretrainSettings, out: str | Path, *, work: str | Path) -> Pretrained:
    """Train DeepLabV3 with cross-entropy on the synthetic data of ``settings`` (generated and prepared
    under ``work``) and save its backbone at ``out`` with the record ``<out>.json``; a cached result with
    the same settings (see :func:`cached`) is returned without training."""
    out = check_output_file(out, "--out")
    hit = cached(settings, out)
    if hit is not None:
        log.info("reusing %s (settings key %s)", out, hit.key)
        return hit
    config = settings.train_config()  # checked before any data is generated
    prepared = prepare_data(settings, work)
    tasks = task_train_rows(prepared)
    used = tasks if settings.kind == "objects" else tasks[:1]
    rows = list(dict.fromkeys((image, full, full) for task in used for image, full, _ in task))
    start = time.perf_counter()
    learner = ContinualLearner(config)
    learner.learn(*(list(column) for column in zip(*rows, strict=True)))
    test = read_index(prepared / "test_index.txt", columns=3, check_exists=True)
    scores = learner.evaluate([str(r[0]) for r in test], [str(r[1]) for r in test])
    model = learner.model
    if not isinstance(model, DeepLabV3):
        raise ConfigError(f"llseg pretrain: model {settings.model} is not a DeepLabV3; it has no backbone to save")
    atomic_save(out, functools.partial(torch.save, model.backbone_checkpoint()))
    seconds = time.perf_counter() - start
    key = settings.key()
    record = {"key": key, "sha256": _sha256(out), "settings": asdict(settings), "scores": scores,
              "seconds": seconds, "train_images": len(rows), "torch": torch.__version__}
    write_text(record_path(out), json.dumps(record, indent=1, default=list) + "\n")
    return Pretrained(out, key, scores, seconds, len(rows), reused=False)
