"""The continual learner: one object that learns class groups stage by stage and predicts.

Every :meth:`ContinualLearner.learn` call is one stage. The classes it learns are the train ids
present in that stage's training labels that the model does not know yet; they are appended as
a new group of output channels (old channels keep their index). The learner is the generic loop;
what a stage does differently per recipe lives in :mod:`llseg.methods.recipes`:

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
  (same freezing, no teacher);
* ``mib``: Cermelli et al. (methods.md §5) on DeepLabV3 with one expanding classifier: unbiased
  cross-entropy and unbiased distillation from the frozen previous model, ``init_balanced``;
* ``plop``: Douillard et al. (methods.md §6): entropy pseudo-labels with per-class median
  thresholds, adaptive CE factor, local POD on the backbone stages, ASPP and logits;
* ``idec`` / ``lag``: Zhao et al. / Yuan et al. (methods.md §3, §4): SSUL plus feature
  distillation on the main and layer1..3 ASPPs (IDEC's DADA, optional ARCL; LAG's DCL, SPM, SFP,
  NSC), with the body trainable at a low lr in later steps unless ``kd_on_frozen``.

The recipe learns the 1-based epoch before each epoch (``Recipe.begin_epoch``); the stage summary
holds the mean of every loss term the recipe recorded (``loss_terms``) and ``aux_gradient``.

With ``data_ratio`` < 1, steps ≥ 1 train on a seeded subset of the step's images (LAG's
data-limited protocol), whatever the recipe.

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
from llseg.methods.optim import make_optimizer, make_schedule
from llseg.methods.recipes import Stage, TeacherBatch, TeacherOutputs, make_recipe
from llseg.metrics.incremental import IncrementalScorer
from llseg.models import create_model
from llseg.runtime import autocast, keep_freed_memory, pick_device, resolve_num_workers, resolve_precision, seed_everything

log = logging.getLogger("llseg.learner")
PRETRAINED_FILES = ("backbone_weights", "encoder_weights")  # model_kwargs that name a pretrained-weights file

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
        recipe: the :class:`~llseg.methods.recipes.Recipe` of ``config.recipe``.
    """

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.info: DatasetInfo = get_dataset_info(config.dataset)
        self.device = pick_device(config.device)
        self.precision = resolve_precision(config.effective_precision, self.device)
        self.num_workers = resolve_num_workers(config.num_workers, self.device)
        if self.device.type == "cpu" and self.num_workers == 0:
            # reuse last step's large buffers instead of page-faulting new ones; not with DataLoader
            # workers: forked from a large kept heap, they cost the trainer copy-on-write faults
            keep_freed_memory()
        self.recipe = make_recipe(config)
        self.model_kwargs = self._model_kwargs(config)
        self.split_steps = self._split_steps(config, self.info)
        if self.recipe.needs_background and self.info.background_id is None:
            raise ConfigError(f"recipe {config.recipe} needs a dataset with a background class; {self.info.name} has none")
        self.model: Optional[nn.Module] = None
        self.groups: list[list[int]] = []
        self.pending: list[int] = []
        self.seen: list[tuple[str, str]] = []
        self.memory: list[tuple[str, str]] = []
        self.stages = 0
        self.cache = DecodedCache()

    def _model_kwargs(self, cfg: TrainConfig) -> dict[str, Any]:
        kwargs = dict(cfg.model_kwargs)
        if "unknown" in kwargs:
            raise ConfigError("model_kwargs: unknown is set by the recipe; use the ssul hyperparameter unknown instead")
        return self.recipe.model_kwargs(kwargs)

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

    def _new_model(self, *, pretrained: bool = True) -> nn.Module:
        """A fresh model with one channel block per group (one head each with per-step heads);
        ``pretrained=False`` skips the ``backbone_weights`` / ``encoder_weights`` file (a checkpoint
        about to be loaded holds every weight, and that file may not exist where it is loaded)."""
        sizes = [len(g) for g in self.channel_groups]
        first = sizes[0] if self.per_step_heads else sum(sizes)
        kwargs = self.model_kwargs if pretrained else {k: v for k, v in self.model_kwargs.items() if k not in PRETRAINED_FILES}
        model = create_model(self.config.model, num_classes=first, **kwargs).to(self.device)
        for size in sizes[1:] if self.per_step_heads else ():
            model.add_classes(size)
        return model

    def _grow(self, model: nn.Module, sizes: Sequence[int]) -> None:
        """Append channel blocks of ``sizes`` (a head per block with per-step heads)."""
        if not sizes:
            return
        for size in sizes if self.per_step_heads else [sum(sizes)]:
            model.add_classes(size)
            self.recipe.after_grow(model, size)
        model.to(self.device)

    def state_dict(self) -> dict[str, Any]:
        """Self-describing checkpoint (a snapshot): architecture, classes, recipe, hyperparameters, weights."""
        if self.model is None:
            raise RuntimeError("nothing to save: the model has not been trained or loaded yet")
        return {
            "format": CHECKPOINT_FORMAT,
            "llseg_version": __version__,
            "architecture": self.config.model,
            "dataset": self.config.dataset,
            "class_names": [self.info.class_names[c] for c in self.classes],
            "groups": [list(g) for g in self.groups],
            "pending": list(self.pending),
            "seen": list(self.seen),
            "memory": list(self.memory),
            "stages": self.stages,
            "recipe": self.config.recipe,
            "hyperparameters": self.config.to_dict(),
            # copies: later training must not change a state held in memory
            "state_dict": {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()},
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
        model = self._new_model(pretrained=False)
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
        cfg, recipe = self.config, self.recipe
        self.stages += 1
        seed_everything(cfg.seed + self.stages)
        n_old = sum(len(g) for g in self.groups)
        new_groups = self._new_groups(self._present([t for _, _, t in rows]))
        if recipe.background_first and not self.groups and new_groups and new_groups[0][0] != self.info.background_id:
            raise DataError(
                f"recipe {cfg.recipe} needs the background ({self.info.class_names[self.info.background_id or 0]}) "
                "in the first stage's labels; the first stage must be step 0 of the split"
            )
        used = self._limit_data(rows, step=len(self.groups) + len(new_groups) - 1)
        teacher: Optional[nn.Module] = None
        if recipe.keeps_teacher and self.model is not None and new_groups:
            teacher = self._frozen(copy.deepcopy(self.model))
        self.groups += new_groups
        pairs = [(i, t) for i, _, t in used]
        if recipe.replays_seen:
            self.seen = list(dict.fromkeys([*self.seen, *((i, f) for i, f, _ in used)]))
            pairs = self.seen
            assigned = {c for g in self.groups for c in g}
            self.pending = [c for c in self._present([label for _, label in pairs]) if c not in assigned]
        if recipe.fresh_student or self.model is None:
            student = self._new_model()
        else:
            student = self.model
            self._grow(student, [len(g) for g in new_groups])
        # with new classes the old ones are the teacher's; else those of the steps before the newest
        old = n_old if new_groups else sum(len(g) for g in self.groups[:-1])
        stage = Stage(step=len(self.groups) - 1, old_classes=old, classes=len(self.classes))

        start = time.perf_counter()
        losses = self._fit(student, teacher, pairs, stage)
        self.model = student
        if cfg.mem_size:
            self._update_memory([(i, f) for i, f, _ in used])
        summary = {
            "stage": self.stages,
            "recipe": cfg.recipe,
            "new_classes": [self.info.class_names[c] for g in new_groups for c in g],
            "stage_images": len(rows),
            "used_images": len(used),
            "num_images": len(pairs),
            "old_classes": n_old,
            "memory": len(self.memory),
            "final_loss": losses[-1] if losses else float("nan"),
            "seconds": round(time.perf_counter() - start, 3),
            **recipe.stage_report(),
        }
        log.info("stage %d (%s): learned %s on %d images (%d of the stage's %d), loss %.4f, %.1fs", self.stages,
                 cfg.recipe, summary["new_classes"] or "no new class", len(pairs), len(used), len(rows),
                 summary["final_loss"], summary["seconds"])
        if not np.isfinite(summary["final_loss"]):
            log.warning("stage %d (%s): the loss is not finite (%s): training diverged; lower the learning rates "
                        "or the loss weights", self.stages, cfg.recipe, summary["final_loss"])
        if summary["loss_terms"]:
            gradient = {True: "yes", False: "none (kd_on_frozen: frozen body)", None: "no auxiliary term"}
            log.info("stage %d (%s): loss terms, means over the stage: %s; auxiliary gradient: %s", self.stages,
                     cfg.recipe, ", ".join(f"{k} {v:.4g}" for k, v in summary["loss_terms"].items()),
                     gradient[summary["aux_gradient"]])
        return summary

    def _limit_data(self, rows: list[tuple[str, str, str]], *, step: int) -> list[tuple[str, str, str]]:
        """``data_ratio`` δ: in steps ≥ 1 a random subset of round(δ·N) rows (at least 1), fixed by
        the seed and the stage number, in their original order; step 0 keeps every row."""
        ratio = self.config.data_ratio
        if step < 1 or ratio >= 1.0:
            return rows
        keep = max(1, round(ratio * len(rows)))
        chosen = np.random.default_rng([self.config.seed, self.stages]).choice(len(rows), size=keep, replace=False)
        return [rows[i] for i in sorted(chosen)]

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
            num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",  # lets .to(device, non_blocking=True) overlap the copy
            drop_last=len(data) > batch_size and len(data) % batch_size == 1,  # no 1-sample BN batch
        )

    def _loss(self, student: nn.Module, teacher: Optional[nn.Module], image: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss of one batch (image N×3×H×W, target N×H×W channel ids), as the recipe defines it."""
        return self.recipe.loss(student, teacher, image, target)

    def _teacher_outputs(self, teacher: nn.Module, loader: DataLoader) -> TeacherOutputs:
        """A :class:`TeacherBatch` (targets, teacher logits, the recipe's ``teacher_maps``) per batch
        of ``loader``, computed only when iterated."""
        names = self.recipe.teacher_maps
        for image, target in loader:
            image = image.to(self.device).contiguous(memory_format=torch.channels_last)
            maps: dict[str, torch.Tensor] = {}
            with torch.no_grad(), autocast(self.precision, self.device):
                if names:
                    features = teacher.forward_features(image)
                    logits, maps = features["logits"], {k: features[k].float() for k in names}
                else:
                    logits = teacher(image)
            yield TeacherBatch(target.to(self.device), logits.float(), maps)

    def _fit(self, student: nn.Module, teacher: Optional[nn.Module], pairs: Sequence[tuple[str, str]],
             stage: Stage) -> list[float]:
        cfg = self.config
        use_memory = stage.step >= 1 and bool(self.memory)
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
        teacher_outputs = None
        if teacher is not None:  # a separate loader, so the training order does not depend on its use
            teacher_outputs = self._teacher_outputs(teacher, self._loader(data, main_batch, cfg.seed + self.stages))
        self.recipe.begin_stage(stage, teacher_outputs)
        student.to(memory_format=torch.channels_last)  # faster convolutions on CPU (oneDNN) and CUDA
        student.train()
        optimizer = make_optimizer(cfg.optimizer, self.recipe.param_groups(student), lr=cfg.lr, weight_decay=cfg.weight_decay)
        schedule = make_schedule(optimizer, cfg.lr_policy, cfg.epochs * len(loader), power=cfg.lr_power, step_size=cfg.step_size)
        scaler = torch.amp.GradScaler("cuda", enabled=self.precision == "fp16")
        trainable = [p for group in optimizer.param_groups for p in group["params"] if p.requires_grad]
        epoch_losses: list[float] = []
        bar = tqdm(range(cfg.epochs), desc=f"stage {self.stages} {cfg.recipe}", unit="epoch", disable=None, leave=False)
        for epoch in bar:
            data.epoch = epoch
            self.recipe.begin_epoch(epoch + 1, cfg.epochs)
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
                if cfg.grad_clip is not None:  # clip the true gradients: unscale fp16 first (else a no-op)
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(trainable, cfg.grad_clip)
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
        return self.recipe.class_scores(logits)

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
