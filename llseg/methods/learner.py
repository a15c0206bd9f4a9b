"""The continual learner: one object that learns class groups stage by stage and predicts.

Every :meth:`ContinualLearner.learn` call is one stage. The classes it learns are the train ids
present in that stage's training labels that the model does not know yet; they are appended as
a new group of output channels (old channels keep their index). How a stage trains depends on
the recipe (methods.md §1):

* ``finetune``: grow the current model and train it on the new labels only (the lower bound);
* ``cil``: Klingner et al.: a student (fresh by default) learns the new labels with cross-entropy
  and, on unlabelled pixels, the frozen previous model's old-class distribution through
  entropy-weighted distillation. A stage that brings no new class has no distillation target
  and trains on its labels alone (e.g. the one-image round 0 of Ianvs' fwt_splitting);
* ``joint``: retrain a fresh model on all stages' images so far with their full labels, the
  all-classes-at-once upper bound (Klingner's "Baseline" after the last stage);
* ``ssul``: Cha et al. (methods.md §2) on DeepLabV3 with one head per step: the student starts
  from the previous model, the new head optionally from the unknown head (``w_transfer``), the
  frozen previous model pseudo-labels the background (``pseudo``), steps ≥ 1 can freeze all but
  the new heads (``freeze``, ``bn_freeze``), and a class-balanced memory of earlier images fills
  half of every batch (``mem_size``). A stage with no new class continues the current step
  (same freezing, no teacher).

Repeated (image, label) lines within one stage are used once: prepared VOC indexes pad small steps
with repeats so that Ianvs' equal chunks hold one step each (see ``llseg.data.prepare_voc``).
"""
from __future__ import annotations

import copy
import logging
import time
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from llseg import __version__
from llseg.data.dataset import DecodedCache, SegmentationPairs, channel_lut, label_counts
from llseg.data.imageio import read_label_png
from llseg.data.labels import IGNORE_INDEX, DatasetInfo, get_dataset_info
from llseg.data.predictions import Prediction, predictions_from_logits
from llseg.data.splits import ClassIncrementalSpec, CityClassIncrementalSpec, get_preset
from llseg.data.transforms import TrainAugment, normalize, resize_pair
from llseg.errors import ConfigError, DataError
from llseg.methods import ssul
from llseg.methods.config import TrainConfig
from llseg.methods.losses import entropy_weighted_distillation, labelled_cross_entropy
from llseg.methods.optim import make_optimizer, make_schedule
from llseg.metrics.incremental import IncrementalScorer
from llseg.models import create_model
from llseg.runtime import autocast, pick_device, resolve_precision, seed_everything

log = logging.getLogger("llseg.learner")

CHECKPOINT_FORMAT = "llseg-checkpoint/1"


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint file onto the CPU; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many exception types for corrupt files
        raise ValueError(f"{path} is not a readable checkpoint ({exc})") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not an llseg checkpoint (expected format {CHECKPOINT_FORMAT})")
    return checkpoint


class ContinualLearner:
    """Holds the model, its class groups and (for ``joint``) the data seen so far.

    Attributes:
        groups: train ids per output-channel group, in channel order.
        pending: ``joint`` only: classes present in full labels that no stage has introduced yet
            (they get channels after all groups).
        seen: ``joint`` only: (image, full label) pairs of every stage so far.
        memory: ``ssul`` with ``mem_size``: exemplar (image, full label) pairs of earlier stages.
    """

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.info: DatasetInfo = get_dataset_info(config.dataset)
        self.device = pick_device(config.device)
        self.precision = resolve_precision(config.effective_precision, self.device)
        self.model_kwargs = self._model_kwargs(config)
        self.split_steps = self._split_steps(config, self.info)
        if config.recipe == "ssul" and self.info.background_id is None:
            raise ConfigError(f"recipe ssul needs a dataset with a background class; {self.info.name} has none")
        self.model: Optional[nn.Module] = None
        self.groups: list[list[int]] = []
        self.pending: list[int] = []
        self.seen: list[tuple[str, str]] = []
        self.memory: list[tuple[str, str]] = []
        self.stages = 0
        self.cache = DecodedCache()

    @staticmethod
    def _model_kwargs(cfg: TrainConfig) -> dict[str, Any]:
        kwargs = dict(cfg.model_kwargs)
        if "unknown" in kwargs:
            raise ConfigError("model_kwargs: unknown is set by the recipe; use the ssul hyperparameter unknown instead")
        if cfg.recipe == "ssul":
            if not cfg.model.startswith("deeplabv3"):
                raise ConfigError(f"recipe ssul needs a DeepLabV3 model (one head per step), not {cfg.model!r}")
            if kwargs.setdefault("head", "per_step") != "per_step":
                raise ConfigError(f"recipe ssul needs model_kwargs head: per_step, got {kwargs['head']!r}")
            kwargs["unknown"] = cfg.unknown
        return kwargs

    @staticmethod
    def _split_steps(cfg: TrainConfig, info: DatasetInfo) -> Optional[list[list[int]]]:
        """Class groups of the ``split`` preset (background first in step 0), or None."""
        if cfg.split is None:
            return None
        try:
            preset = get_preset(cfg.split)
        except KeyError as exc:
            raise ConfigError(f"hyperparameter split: {exc.args[0]}") from None
        spec = preset.classes if isinstance(preset, CityClassIncrementalSpec) else preset
        if not isinstance(spec, ClassIncrementalSpec) or spec.num_classes != info.num_classes:
            raise ConfigError(f"split {cfg.split!r} is not a class-incremental split of {info.name} ({info.num_classes} classes)")
        steps = [list(t) for t in spec.tasks]
        if spec.background_id is not None:
            steps[0] = [spec.background_id] + steps[0]
        return steps

    # ------------------------------------------------------------------ state
    @property
    def classes(self) -> list[int]:
        """Train id of every output channel, in channel order."""
        return [c for group in self.channel_groups for c in group]

    @property
    def channel_groups(self) -> list[list[int]]:
        return self.groups + ([self.pending] if self.pending else [])

    @property
    def per_step_heads(self) -> bool:
        return self.model_kwargs.get("head") == "per_step"

    def _new_model(self) -> nn.Module:
        """A fresh model with one channel block per group (one head each with per-step heads)."""
        sizes = [len(g) for g in self.channel_groups]
        first = sizes[0] if self.per_step_heads else sum(sizes)
        model = create_model(self.config.model, num_classes=first, **self.model_kwargs).to(self.device)
        for size in sizes[1:] if self.per_step_heads else ():
            model.add_classes(size)
        return model

    def _grow(self, model: nn.Module, sizes: Sequence[int]) -> None:
        """Append channel blocks of ``sizes`` (a head per block with per-step heads)."""
        if not sizes:
            return
        for size in sizes if self.per_step_heads else [sum(sizes)]:
            model.add_classes(size)
            if self.config.w_transfer:
                ssul.transfer_unknown_head(model.classifier.heads)
        model.to(self.device)

    def state_dict(self) -> dict[str, Any]:
        """Self-describing checkpoint: architecture, classes, recipe, hyperparameters, weights."""
        if self.model is None:
            raise RuntimeError("nothing to save: the model has not been trained or loaded yet")
        return {
            "format": CHECKPOINT_FORMAT,
            "llseg_version": __version__,
            "architecture": self.config.model,
            "dataset": self.config.dataset,
            "class_names": [self.info.class_names[c] for c in self.classes],
            "groups": self.groups,
            "pending": self.pending,
            "seen": self.seen,
            "memory": self.memory,
            "stages": self.stages,
            "recipe": self.config.recipe,
            "hyperparameters": self.config.to_dict(),
            "state_dict": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
        }

    def save(self, path: str | Path) -> None:
        """Write :meth:`state_dict` to ``path`` (parent folders are created)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(self.state_dict(), path)

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, device: Optional[str] = None) -> "ContinualLearner":
        """A learner rebuilt from a checkpoint's own hyperparameters (optionally on another device)."""
        checkpoint = read_checkpoint(path)
        hps = dict(checkpoint["hyperparameters"])
        if device is not None:
            hps["device"] = device
        learner = cls(TrainConfig.from_hyperparameters(hps, source=str(path)))
        learner.load_state_dict(checkpoint, source=str(path))
        return learner

    def load_state_dict(self, checkpoint: dict[str, Any], *, source: str = "checkpoint") -> None:
        """Restore a :meth:`state_dict`; the architecture must match this learner's model."""
        if checkpoint["architecture"] != self.config.model:
            raise ValueError(
                f"{source} holds a {checkpoint['architecture']!r} model but this estimator builds "
                f"{self.config.model!r}; load it with the matching estimator"
            )
        if checkpoint["dataset"] != self.config.dataset:
            raise ValueError(f"{source} was trained on {checkpoint['dataset']!r}, not {self.config.dataset!r}")
        self.groups = [list(g) for g in checkpoint["groups"]]
        self.pending = list(checkpoint["pending"])
        self.seen = [tuple(p) for p in checkpoint["seen"]]
        self.memory = [tuple(p) for p in checkpoint.get("memory", [])]
        self.stages = int(checkpoint["stages"])
        model = self._new_model()
        try:
            model.load_state_dict(checkpoint["state_dict"])
        except RuntimeError as exc:
            raise ValueError(f"{source} does not fit this estimator's model ({exc}); check model_kwargs") from None
        self.model = model

    # --------------------------------------------------------------- training
    def _counts(self, path: str) -> np.ndarray:
        return label_counts(self.cache.get("label", Path(path)), self.info.num_classes, Path(path))

    def _present(self, labels: Sequence[str]) -> list[int]:
        total = np.zeros(self.info.num_classes, dtype=np.int64)
        for path in labels:
            total += self._counts(path)
        return np.flatnonzero(total).tolist()

    def _new_groups(self, present: Sequence[int]) -> list[list[int]]:
        """Groups a stage adds: its unknown classes, or (with ``split``) the whole steps they belong to."""
        known = {c for g in self.groups for c in g}
        new = [c for c in present if c not in known]
        if not new:
            return []
        if self.split_steps is None:
            return [sorted(new)]
        step_of = {c: t for t, step in enumerate(self.split_steps) for c in step}
        outside = [self.info.class_names[c] for c in new if c not in step_of]
        if outside:
            raise DataError(f"training labels contain {outside}, which no step of split {self.config.split!r} learns")
        return [self.split_steps[t] for t in sorted({step_of[c] for c in new})]

    def learn(self, images: Sequence[str], full_labels: Sequence[str], train_labels: Sequence[str]) -> dict[str, Any]:
        """Run one stage on image/label file lists and return a picklable summary."""
        if not images:
            raise ValueError("a training stage needs at least one image")
        if not len(images) == len(full_labels) == len(train_labels):
            raise ValueError(f"{len(images)} images, {len(full_labels)} full labels, {len(train_labels)} train labels")
        rows = list(dict.fromkeys(zip(images, full_labels, train_labels)))  # repeats used once, order kept
        cfg = self.config
        self.stages += 1
        seed_everything(cfg.seed + self.stages)
        n_old = sum(len(g) for g in self.groups)
        new_groups = self._new_groups(self._present([t for _, _, t in rows]))
        if cfg.unknown and not self.groups and new_groups and new_groups[0][0] != self.info.background_id:
            raise DataError(
                f"recipe ssul with unknown needs the background ({self.info.class_names[self.info.background_id or 0]}) "
                "in the first stage's labels; the first stage must be step 0 of the split"
            )
        teacher: Optional[nn.Module] = None
        pairs = [(i, t) for i, _, t in rows]

        if cfg.recipe == "joint":
            self.groups += new_groups
            self.seen = list(dict.fromkeys([*self.seen, *((i, f) for i, f, _ in rows)]))
            pairs = self.seen
            assigned = {c for g in self.groups for c in g}
            self.pending = [c for c in self._present([label for _, label in pairs]) if c not in assigned]
            student = self._new_model()
        elif cfg.recipe == "cil":
            if self.model is not None and new_groups:
                teacher = self._frozen(self.model)
            self.groups += new_groups
            if cfg.init_from_teacher and self.model is not None:
                student = copy.deepcopy(self.model)
                self._grow(student, [len(g) for g in new_groups])
            else:
                student = self._new_model()
        else:  # finetune, ssul: continue from the current model
            if cfg.recipe == "ssul" and self.model is not None and new_groups:
                teacher = self._frozen(copy.deepcopy(self.model))
            self.groups += new_groups
            if self.model is None:
                student = self._new_model()
            else:
                student = self.model
                self._grow(student, [len(g) for g in new_groups])

        start = time.perf_counter()
        losses = self._fit(student, teacher, pairs)
        self.model = student
        if cfg.mem_size:
            self._update_memory([(i, f) for i, f, _ in rows])
        summary = {
            "stage": self.stages,
            "recipe": cfg.recipe,
            "new_classes": [self.info.class_names[c] for g in new_groups for c in g],
            "num_images": len(pairs),
            "old_classes": n_old,
            "memory": len(self.memory),
            "final_loss": losses[-1] if losses else float("nan"),
            "seconds": round(time.perf_counter() - start, 3),
        }
        log.info("stage %d (%s): learned %s on %d images, loss %.4f, %.1fs", self.stages, cfg.recipe,
                 summary["new_classes"] or "no new class", len(pairs), summary["final_loss"], summary["seconds"])
        return summary

    @staticmethod
    def _frozen(model: nn.Module) -> nn.Module:
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        return model

    def _update_memory(self, rows: Sequence[tuple[str, str]]) -> None:
        """SSUL-M: re-select ``mem_size`` exemplars, class-balanced over the learned foreground
        classes, from the memory and this stage's (image, full label) pairs."""
        candidates = list(dict.fromkeys([*self.memory, *rows]))
        foreground = [c for c in self.classes if c != self.info.background_id]
        present = np.stack([self._counts(label) > 0 for _, label in candidates])
        chosen = ssul.select_memory(present, foreground, self.config.mem_size, seed=self.config.seed + self.stages)
        self.memory = [candidates[i] for i in chosen]

    def _target_lut(self, classes: Sequence[int]) -> np.ndarray:
        """Train id -> target channel (unknown-shifted with ``unknown``). Every learned class keeps
        its channel; when ``classes`` is a subset (memory labels, which are full labels), the
        other classes become background."""
        lut = channel_lut(self.classes)
        if len(classes) < len(self.classes):
            keep = np.zeros(256, dtype=bool)
            keep[[*classes, IGNORE_INDEX]] = True
            lut = np.where(keep, lut, lut[self.info.background_id]).astype(np.uint8)
        return ssul.unknown_lut(lut, 0) if self.config.unknown else lut

    def _pairs_dataset(self, pairs: Sequence[tuple[str, str]], lut: np.ndarray, seed: int) -> SegmentationPairs:
        cfg = self.config
        saliency = None
        if cfg.saliency_dir:
            saliency = [Path(cfg.saliency_dir) / f"{Path(i).stem}.png" for i, _ in pairs]
            missing = [str(p) for p in saliency if not p.is_file()]
            if missing:
                raise DataError(f"{len(missing)} saliency maps are missing, e.g. {missing[0]}; saliency_dir must hold "
                                "<image stem>.png for every training image (or drop saliency_dir)")
        return SegmentationPairs(
            [Path(i) for i, _ in pairs],
            [Path(lab) for _, lab in pairs],
            lut=lut,
            augment=TrainAugment(base_size=cfg.input_size, crop_size=cfg.crop_size, scale=cfg.scale,
                                 flip=cfg.flip, jitter=cfg.jitter),
            seed=seed,
            cache=self.cache,
            saliency=saliency,
            relabel=(self.info.background_id or 0, 1),
        )

    def _loader(self, data: SegmentationPairs, batch_size: int, seed: int) -> DataLoader:
        return DataLoader(
            data,
            batch_size=min(batch_size, len(data)),
            shuffle=True,
            generator=torch.Generator().manual_seed(seed),
            num_workers=self.config.num_workers,
            drop_last=len(data) > batch_size and len(data) % batch_size == 1,  # no 1-sample BN batch
        )

    def _param_groups(self, student: nn.Module, step: int) -> list[dict]:
        """Optimiser groups: SSUL freezing in steps ≥ 1, else everything (backbone at ``backbone_lr``)."""
        cfg = self.config
        incremental = cfg.recipe == "ssul" and step >= 1
        for p in student.parameters():
            p.requires_grad_(not (incremental and cfg.freeze))
        if incremental and cfg.freeze:
            groups = ssul.frozen_step_groups(student.classifier.heads, lr=cfg.lr, unknown=cfg.unknown)
            for g in groups:
                for p in g["params"]:
                    p.requires_grad_(True)
        elif cfg.backbone_lr is not None:
            backbone = getattr(student, "backbone", None)
            if backbone is None:
                raise ConfigError(f"backbone_lr: model {cfg.model!r} has no backbone module")
            ids = {id(p) for p in backbone.parameters()}
            groups = [{"params": list(backbone.parameters()), "lr": cfg.backbone_lr},
                      {"params": [p for p in student.parameters() if id(p) not in ids], "lr": cfg.lr}]
        else:
            groups = [{"params": list(student.parameters()), "lr": cfg.lr}]
        if incremental and cfg.bn_freeze:
            ssul.freeze_batchnorm(student)
        return ssul.trainable(groups)

    def _loss(self, student: nn.Module, teacher: Optional[nn.Module], image: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        logits = student(image)
        teacher_logits = None
        if teacher is not None:
            with torch.no_grad():
                teacher_logits = teacher(image)
        if cfg.recipe == "ssul" and cfg.pseudo and teacher_logits is not None:
            target = ssul.pseudo_label(target, teacher_logits, loss_type=cfg.loss_type,
                                       threshold=cfg.pseudo_thresh, unknown=cfg.unknown)
        loss = ssul.bce_with_ignore(logits, target) if cfg.loss_type == "bce" else labelled_cross_entropy(logits, target)
        if cfg.recipe == "cil" and teacher_logits is not None:
            loss = loss + entropy_weighted_distillation(
                logits, teacher_logits, target == 255, temperature=cfg.temperature, lambda_gs=cfg.lambda_gs,
            )
        return loss

    def _fit(self, student: nn.Module, teacher: Optional[nn.Module], pairs: Sequence[tuple[str, str]]) -> list[float]:
        cfg = self.config
        step = len(self.groups) - 1
        use_memory = cfg.recipe == "ssul" and step >= 1 and bool(self.memory)
        main_batch = cfg.batch_size - cfg.batch_size // 2 if use_memory else cfg.batch_size
        if len(pairs) == 1 and not use_memory:  # Ianvs' round 0: BatchNorm (ASPP pooling) needs 2 samples
            pairs = [pairs[0], pairs[0]]  # two differently augmented views
        data = self._pairs_dataset(pairs, self._target_lut(self.classes), cfg.seed + 1000 * self.stages)
        loader = self._loader(data, main_batch, cfg.seed + self.stages)
        memory_batches: Optional[Iterator] = None
        if use_memory:
            old = [c for g in self.groups[:-1] for c in g]
            memory = self._pairs_dataset(self.memory, self._target_lut(old), cfg.seed + 1000 * self.stages + 500)
            memory_batches = _cycle(self._loader(memory, cfg.batch_size // 2, cfg.seed + self.stages + 500), memory)
        student.to(memory_format=torch.channels_last)  # faster convolutions on CPU (oneDNN) and CUDA
        student.train()
        optimizer = make_optimizer(cfg.optimizer, self._param_groups(student, step), lr=cfg.lr, weight_decay=cfg.weight_decay)
        schedule = make_schedule(optimizer, cfg.lr_policy, cfg.epochs * len(loader), power=cfg.lr_power, step_size=cfg.step_size)
        scaler = torch.amp.GradScaler("cuda", enabled=self.precision == "fp16")
        epoch_losses: list[float] = []
        bar = tqdm(range(cfg.epochs), desc=f"stage {self.stages} {cfg.recipe}", unit="epoch", disable=None, leave=False)
        for epoch in bar:
            data.epoch = epoch
            total, batches = 0.0, 0
            for image, target in loader:
                if memory_batches is not None:
                    extra_image, extra_target = next(memory_batches)
                    image, target = torch.cat([image, extra_image]), torch.cat([target, extra_target])
                image = image.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
                target = target.to(self.device, non_blocking=True)
                with autocast(self.precision, self.device):
                    loss = self._loss(student, teacher, image, target)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                schedule.step()
                total += float(loss.detach())
                batches += 1
            epoch_losses.append(total / max(batches, 1))
            bar.set_postfix(loss=f"{epoch_losses[-1]:.4f}")
        return epoch_losses

    # -------------------------------------------------------------- inference
    def evaluate(self, images: Sequence[str], labels: Sequence[str]) -> dict[str, Optional[float]]:
        """Klingner table, accuracy and old/new/all on labelled images (see IncrementalScorer);
        repeated (image, label) pairs are scored once."""
        pairs = list(dict.fromkeys(zip(images, labels)))
        scorer = IncrementalScorer(self.info.num_classes)
        for (_, label), prediction in zip(pairs, self.predict([i for i, _ in pairs])):
            scorer.update(prediction, read_label_png(Path(label)))
        return scorer.table()

    def class_scores(self, logits: torch.Tensor) -> torch.Tensor:
        """N×K×H×W scores whose argmax is the prediction, channel k = ``classes[k]``: the logits,
        or with ``unknown`` SSUL's probabilities with the unknown merged into the background."""
        if self.config.unknown:
            return ssul.merge_unknown(ssul.probabilities(logits, self.config.loss_type))
        return logits.float()

    @torch.no_grad()
    def predict(self, images: Sequence[str]) -> Iterator[Prediction]:
        """Yield one :class:`Prediction` per image, at the image's own resolution."""
        if self.model is None:
            raise RuntimeError("cannot predict: the model has not been trained or loaded yet")
        self.model.eval()
        sizes = [len(g) for g in self.channel_groups]
        for path in images:
            rgb = self.cache.get("rgb", Path(path))
            image = torch.from_numpy(rgb).permute(2, 0, 1).float().div_(255)
            if self.config.input_size is not None:
                image, _ = resize_pair(image, None, self.config.input_size)
            with autocast(self.precision, self.device):
                batch = normalize(image)[None].to(self.device).contiguous(memory_format=torch.channels_last)
                scores = self.class_scores(self.model(batch))
            scores = torch.nn.functional.interpolate(scores, size=rgb.shape[:2], mode="bilinear", align_corners=False)
            pred, group_pred, prefix_pred = predictions_from_logits(scores, self.classes, sizes)
            yield Prediction(
                pred=pred[0].cpu().numpy(),
                group_pred=group_pred[0].cpu().numpy(),
                prefix_pred=prefix_pred[0].cpu().numpy(),
                classes=np.asarray(self.classes),
                group_sizes=np.asarray(sizes),
                num_classes=self.info.num_classes,
            )


def _cycle(loader: DataLoader, data: SegmentationPairs) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless batches of ``loader``; each pass is a new augmentation epoch of ``data``."""
    while True:
        for batch in loader:
            yield batch
        data.epoch += 1
