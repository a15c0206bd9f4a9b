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
  all-classes-at-once upper bound (Klingner's "Baseline" after the last stage).
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
from llseg.data.labels import DatasetInfo, get_dataset_info
from llseg.data.predictions import Prediction, predictions_from_logits
from llseg.data.transforms import TrainAugment, normalize, resize_pair
from llseg.methods.config import TrainConfig
from llseg.methods.losses import entropy_weighted_distillation, labelled_cross_entropy
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
    """

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.info: DatasetInfo = get_dataset_info(config.dataset)
        self.device = pick_device(config.device)
        self.precision = resolve_precision(config.precision, self.device)
        self.model: Optional[nn.Module] = None
        self.groups: list[list[int]] = []
        self.pending: list[int] = []
        self.seen: list[tuple[str, str]] = []
        self.stages = 0
        self.cache = DecodedCache()

    # ------------------------------------------------------------------ state
    @property
    def classes(self) -> list[int]:
        """Train id of every output channel, in channel order."""
        return [c for group in self.channel_groups for c in group]

    @property
    def channel_groups(self) -> list[list[int]]:
        return self.groups + ([self.pending] if self.pending else [])

    def _new_model(self, num_classes: int) -> nn.Module:
        return create_model(self.config.model, num_classes=num_classes, **self.config.model_kwargs).to(self.device)

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
        self.stages = int(checkpoint["stages"])
        model = self._new_model(len(self.classes))
        model.load_state_dict(checkpoint["state_dict"])
        self.model = model

    # --------------------------------------------------------------- training
    def _present(self, labels: Sequence[str]) -> list[int]:
        total = np.zeros(self.info.num_classes, dtype=np.int64)
        for path in labels:
            total += label_counts(self.cache.get("label", Path(path)), self.info.num_classes, Path(path))
        return np.flatnonzero(total).tolist()

    def learn(self, images: Sequence[str], full_labels: Sequence[str], train_labels: Sequence[str]) -> dict[str, Any]:
        """Run one stage on image/label file lists and return a picklable summary."""
        if not images:
            raise ValueError("a training stage needs at least one image")
        cfg = self.config
        self.stages += 1
        seed_everything(cfg.seed + self.stages)
        # Classes of this stage's labels that no earlier stage introduced (for joint this includes
        # classes it already predicts as "pending" from full labels).
        n_old = sum(len(g) for g in self.groups)
        new_group = sorted(set(self._present(train_labels)) - {c for g in self.groups for c in g})
        teacher: Optional[nn.Module] = None

        if cfg.recipe == "joint":
            if new_group:
                self.groups.append(new_group)
            self.seen += list(zip(images, full_labels))
            pairs = self.seen
            full_present = self._present([label for _, label in pairs])
            assigned = {c for g in self.groups for c in g}
            self.pending = [c for c in full_present if c not in assigned]
            student = self._new_model(len(self.classes))
        elif cfg.recipe == "finetune":
            if new_group:
                self.groups.append(new_group)
            pairs = list(zip(images, train_labels))
            student = self.model if self.model is not None else self._new_model(len(self.classes))
            if student.num_classes < len(self.classes):
                student.add_classes(len(self.classes) - student.num_classes)
        else:  # cil
            if self.model is not None and new_group:
                teacher = self.model.eval()
                for p in teacher.parameters():
                    p.requires_grad_(False)
            if new_group:
                self.groups.append(new_group)
            pairs = list(zip(images, train_labels))
            if cfg.init_from_teacher and self.model is not None:
                student = copy.deepcopy(self.model)
                for p in student.parameters():
                    p.requires_grad_(True)
                if student.num_classes < len(self.classes):
                    student.add_classes(len(self.classes) - student.num_classes)
            else:
                student = self._new_model(len(self.classes))

        start = time.perf_counter()
        losses = self._fit(student, teacher, pairs)
        self.model = student
        summary = {
            "stage": self.stages,
            "recipe": cfg.recipe,
            "new_classes": [self.info.class_names[c] for c in new_group],
            "num_images": len(pairs),
            "old_classes": n_old,
            "final_loss": losses[-1] if losses else float("nan"),
            "seconds": round(time.perf_counter() - start, 3),
        }
        log.info("stage %d (%s): learned %s on %d images, loss %.4f, %.1fs", self.stages, cfg.recipe,
                 summary["new_classes"] or "no new class", len(pairs), summary["final_loss"], summary["seconds"])
        return summary

    def _fit(self, student: nn.Module, teacher: Optional[nn.Module], pairs: Sequence[tuple[str, str]]) -> list[float]:
        cfg = self.config
        data = SegmentationPairs(
            [Path(i) for i, _ in pairs],
            [Path(lab) for _, lab in pairs],
            lut=channel_lut(self.classes),
            augment=TrainAugment(base_size=cfg.input_size, crop_size=cfg.crop_size, scale=cfg.scale,
                                 flip=cfg.flip, jitter=cfg.jitter),
            seed=cfg.seed + 1000 * self.stages,
            cache=self.cache,
        )
        loader = DataLoader(
            data,
            batch_size=min(cfg.batch_size, len(data)),
            shuffle=True,
            generator=torch.Generator().manual_seed(cfg.seed + self.stages),
            num_workers=cfg.num_workers,
            drop_last=len(data) > cfg.batch_size and len(data) % cfg.batch_size == 1,  # no 1-sample BN batch
        )
        student.to(memory_format=torch.channels_last)  # faster convolutions on CPU (oneDNN) and CUDA
        # fused: one kernel for all parameters (about 3x faster than the per-tensor loop on CPU)
        optimizer = torch.optim.Adam(student.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: (1 - e / cfg.epochs) ** cfg.lr_power)
        scaler = torch.amp.GradScaler("cuda", enabled=self.precision == "fp16")
        student.train()
        epoch_losses: list[float] = []
        bar = tqdm(range(cfg.epochs), desc=f"stage {self.stages} {cfg.recipe}", unit="epoch", disable=None, leave=False)
        for epoch in bar:
            data.epoch = epoch
            total, batches = 0.0, 0
            for image, target in loader:
                image = image.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
                target = target.to(self.device, non_blocking=True)
                with autocast(self.precision, self.device):
                    logits = student(image)
                    loss = labelled_cross_entropy(logits, target)
                    if teacher is not None:
                        with torch.no_grad():
                            teacher_logits = teacher(image)
                        loss = loss + entropy_weighted_distillation(
                            logits, teacher_logits, target == 255,
                            temperature=cfg.temperature, lambda_gs=cfg.lambda_gs,
                        )
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                total += float(loss.detach())
                batches += 1
            schedule.step()
            epoch_losses.append(total / max(batches, 1))
            bar.set_postfix(loss=f"{epoch_losses[-1]:.4f}")
        return epoch_losses

    # -------------------------------------------------------------- inference
    def evaluate(self, images: Sequence[str], labels: Sequence[str]) -> dict[str, Optional[float]]:
        """Klingner table, accuracy and old/new/all on labelled images (see IncrementalScorer)."""
        scorer = IncrementalScorer(self.info.num_classes)
        for label, prediction in zip(labels, self.predict(images)):
            scorer.update(prediction, read_label_png(Path(label)))
        return scorer.table()

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
                logits = self.model(batch)
            logits = torch.nn.functional.interpolate(logits.float(), size=rgb.shape[:2], mode="bilinear", align_corners=False)
            pred, group_pred, prefix_pred = predictions_from_logits(logits, self.classes, sizes)
            yield Prediction(
                pred=pred[0].cpu().numpy(),
                group_pred=group_pred[0].cpu().numpy(),
                prefix_pred=prefix_pred[0].cpu().numpy(),
                classes=np.asarray(self.classes),
                group_sizes=np.asarray(sizes),
                num_classes=self.info.num_classes,
            )
