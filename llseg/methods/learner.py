"""The continual learner: one object that learns class groups stage by stage and predicts.

Every :meth:`ContinualLearner.learn` call is one stage (docs/glossary.md). The classes it learns are
the train ids present in that stage's training labels that the model does not know yet; they are
appended as a new group of output channels (old channels keep their index), or, with a ``split``,
the whole steps those classes belong to. What a stage does differently per method is the recipe's
(:mod:`llseg.methods.recipe`); the optimisation loop is the engine's (:mod:`llseg.methods.engine`).

With ``data_ratio`` < 1, steps ≥ 1 train on a seeded subset of the step's images, whatever the
recipe. Repeated (image, label) lines within one stage are used once: prepared indexes pad small
steps with repeats so that Ianvs' equal chunks hold one step each.
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from llseg import __version__, distributed
from llseg.data.dataset import DecodedCache, SegmentationPairs, channel_lut, label_counts
from llseg.data.imageio import read_label_png
from llseg.data.indexfile import read_index
from llseg.data.labels import IGNORE_INDEX, DatasetInfo, get_dataset_info
from llseg.data.predictions import Prediction, predictions_from_logits
from llseg.data.splits import CityClassIncrementalSpec, ClassIncrementalSpec, DomainIncrementalSpec, get_preset
from llseg.data.transforms import TrainAugment, normalize, resize_pair, upsample_scores
from llseg.errors import ConfigError, DataError
from llseg.methods.checkpoint import CHECKPOINT_FORMAT, read_checkpoint, write_checkpoint
from llseg.methods.config import TrainConfig, resolve_config
from llseg.methods.engine import Engine, EpochCheckpoints, cycle
from llseg.methods.recipe import Pair, Row, Stage
from llseg.methods.registry import get_recipe, list_recipes, make_recipe
from llseg.metrics.confusion import mean_iou
from llseg.metrics.incremental import IncrementalScorer
from llseg.models import SegmentationModel, create_model
from llseg.runtime import Progress, seed_everything

log = logging.getLogger("llseg.learner")
PRETRAINED_FILES = ("backbone_weights", "encoder_weights")  # model_kwargs that name a pretrained-weights file
RUNTIME_KEYS = ("device", "num_workers", "checkpoint_every", "tensorboard")  # hyperparameters that do not change results


class ContinualLearner:
    """Holds the model, its class groups and the recipe's state across stages.

    Attributes:
        groups: train ids per output-channel group, in channel order.
        pending: classes present in the training labels that no stage has introduced yet (``joint``'s
            full labels); they get channels after all groups.
        recipe: the :class:`~llseg.methods.recipe.Recipe` of ``config.recipe``.
        engine: device, precision and the optimisation loop.
    """

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.info: DatasetInfo = get_dataset_info(config.dataset)
        self.engine = Engine(config)
        self.recipe = make_recipe(config)
        self.model_kwargs = self.recipe.model_kwargs(dict(config.model_kwargs))
        self.split_steps = self._split_steps(config, self.info)
        self.domains = self._domain_split(config)
        recipe = self.recipe
        if self.domains is not None and recipe.keeps_teacher and not recipe.domain_stages:
            usable = [n for n in list_recipes() if get_recipe(n).domain_stages or not get_recipe(n).keeps_teacher]
            raise ConfigError(f"recipe {config.recipe} has no domain-incremental form (its teacher distils the classes of "
                              f"earlier steps, and split {config.split!r} adds none); on a domain-incremental split "
                              f"use one of {', '.join(usable)} (docs/methods.md §8.3)")
        if recipe.needs_background and self.info.background_id is None and not (self.domains and recipe.domain_stages):
            raise ConfigError(f"recipe {config.recipe} needs a dataset with a background class; {self.info.name} has none")
        self.model: nn.Module | None = None
        self.groups: list[list[int]] = []
        self.pending: list[int] = []
        self.stages = 0
        self.cache = DecodedCache()

    @property
    def device(self) -> torch.device:
        return self.engine.device

    @property
    def precision(self) -> str:
        return self.engine.precision

    @property
    def num_workers(self) -> int:
        return self.engine.num_workers

    @staticmethod
    def _split_steps(cfg: TrainConfig, info: DatasetInfo) -> list[list[int]] | None:
        """Class groups of the ``split`` preset (background first in step 0), or None."""
        if cfg.split is None:
            return None
        try:
            preset = get_preset(cfg.split)
        except KeyError as exc:
            raise ConfigError(f"hyperparameter split: {exc.args[0]}") from None
        if isinstance(preset, DomainIncrementalSpec):  # every class in every step: one group from step 0
            return [list(range(info.num_classes))]
        spec = preset.classes if isinstance(preset, CityClassIncrementalSpec) else preset
        if not isinstance(spec, ClassIncrementalSpec) or spec.num_classes != info.num_classes:
            raise ConfigError(f"split {cfg.split!r} is not a class-incremental split of {info.name} ({info.num_classes} classes)")
        steps = [list(t) for t in spec.tasks]
        if spec.background_id is not None:
            steps[0] = [spec.background_id] + steps[0]
        return steps

    @staticmethod
    def _domain_split(cfg: TrainConfig) -> DomainIncrementalSpec | None:
        """The ``split`` preset when it is domain-incremental, else None (``_split_steps`` checked the name)."""
        preset = get_preset(cfg.split) if cfg.split is not None else None
        return preset if isinstance(preset, DomainIncrementalSpec) else None

    def _domain_step(self, rows: Sequence[Row]) -> int:
        """Step of a domain-incremental stage: the latest step whose group holds the domain of one of
        its rows; the domain is the name of the full label's folder (``llseg prepare`` writes
        ``labels/full/<split>/<city>/<stem>.png``; Ianvs' round 0 is a line of step 0)."""
        spec = cast(DomainIncrementalSpec, self.domains)
        steps = set()
        for _, full, _ in rows:
            step = spec.task_of(Path(full).parent.name)
            if step is None:
                raise DataError(f"{full}: on the domain-incremental split {self.config.split!r} the folder of every label "
                                f"must name its domain (one of {', '.join(spec.tasks[0][:3])}, ...); prepare the data "
                                f"with llseg prepare --split {self.config.split}")
            steps.add(step)
        return max(steps)

    # ------------------------------------------------------------------ state
    @property
    def classes(self) -> list[int]:
        """Train id of every output channel, in channel order."""
        return [c for group in self.channel_groups for c in group]

    @property
    def channel_groups(self) -> list[list[int]]:
        return self.groups + ([self.pending] if self.pending else [])

    def _new_model(self, *, pretrained: bool = True) -> nn.Module:
        """A fresh model with one channel block per group (one head each when the recipe grows one
        head per group); ``pretrained=False`` skips the ``backbone_weights`` / ``encoder_weights``
        file (a checkpoint about to be loaded holds every weight, and that file may not exist where
        it is loaded)."""
        per_group = self.recipe.one_head_per_group
        sizes = [len(g) for g in self.channel_groups]
        first = sizes[0] if per_group else sum(sizes)
        kwargs = self.model_kwargs if pretrained else {k: v for k, v in self.model_kwargs.items() if k not in PRETRAINED_FILES}
        model = create_model(self.config.model, num_classes=first, **kwargs).to(self.device)
        self.recipe.check_model(model)
        for size in sizes[1:] if per_group else ():
            cast(SegmentationModel, model).add_classes(size)
        return model

    def _grow(self, model: nn.Module, sizes: Sequence[int]) -> None:
        """Append channel blocks of ``sizes`` (a head per block when the recipe grows one per group)."""
        if not sizes:
            return
        for size in sizes if self.recipe.one_head_per_group else [sum(sizes)]:
            cast(SegmentationModel, model).add_classes(size)
            self.recipe.after_grow(model, size)
        model.to(self.device)

    def state_dict(self) -> dict[str, Any]:
        """Self-describing checkpoint (a snapshot): architecture, classes, recipe and its state,
        hyperparameters, weights."""
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
            "stages": self.stages,
            "recipe": self.config.recipe,
            "recipe_state": self.recipe.state_dict(),
            "hyperparameters": self.config.to_dict(),
            # copies: later training must not change a state held in memory
            "state_dict": {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()},
        }

    def save(self, path: str | Path) -> None:
        """Write :meth:`state_dict` to ``path`` atomically (parent folders are created); data-parallel,
        only rank 0 writes (every rank holds the same state)."""
        if not distributed.is_main():
            return
        write_checkpoint(path, self.state_dict())

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, device: str | None = None) -> ContinualLearner:
        """A learner rebuilt from a checkpoint's own hyperparameters (optionally on another device)."""
        checkpoint = read_checkpoint(path)
        hps = dict(checkpoint["hyperparameters"])
        if device is not None:
            hps["device"] = device
        learner = cls(resolve_config(hps, source=str(path)))
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
        self.recipe.load_state_dict(checkpoint["recipe_state"])
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

    def fingerprint(self, rows: Sequence[Row]) -> str:
        """Hash of what a stage's result depends on: the config (without runtime keys), the learner's
        state before the stage (stage count, groups, recipe state, weights) and the rows (paths, sizes)."""
        digest = hashlib.sha256()
        config = {k: v for k, v in self.config.to_dict().items() if k not in RUNTIME_KEYS}
        sizes = [[os.path.getsize(p) if os.path.exists(p) else -1 for p in row] for row in rows]
        plain = [config, self.stages, self.groups, self.pending, self.recipe.state_dict(), rows, sizes]
        digest.update(json.dumps(plain, sort_keys=True, default=str).encode())
        for name, tensor in (self.model.state_dict() if self.model is not None else {}).items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()[:32]

    def learn(self, images: Sequence[str], full_labels: Sequence[str], train_labels: Sequence[str],
              *, checkpoints: str | Path | None = None) -> dict[str, Any]:
        """Run one stage on image/label file lists and return a picklable summary.

        ``checkpoints``: a file for resumable training checkpoints (every ``checkpoint_every``
        epochs); when it exists and belongs to this stage (same fingerprint), training continues
        after its epoch with identical results. The caller deletes it once the stage is saved."""
        if not images:
            raise ValueError("a training stage needs at least one image")
        if not len(images) == len(full_labels) == len(train_labels):
            raise ValueError(f"{len(images)} images, {len(full_labels)} full labels, {len(train_labels)} train labels")
        rows: list[Row] = list(dict.fromkeys(zip(images, full_labels, train_labels)))  # repeats used once, order kept
        cfg, recipe = self.config, self.recipe
        resume = None
        if checkpoints is not None and cfg.checkpoint_every > 0:
            resume = EpochCheckpoints(Path(checkpoints), self.fingerprint(rows), cfg.checkpoint_every)
        self.stages += 1
        seed_everything(cfg.seed + self.stages)
        n_old = sum(len(g) for g in self.groups)
        new_groups = self._new_groups(self._present([t for _, _, t in rows]))
        domain_step = self._domain_step(rows) if self.domains is not None else None
        if (recipe.background_first and domain_step is None and not self.groups and new_groups
                and new_groups[0][0] != self.info.background_id):
            raise DataError(
                f"recipe {cfg.recipe} needs the background ({self.info.class_names[self.info.background_id or 0]}) "
                "in the first stage's labels; the first stage must be step 0 of the split"
            )
        step = len(self.groups) + len(new_groups) - 1 if domain_step is None else domain_step
        used = self._limit_data(rows, step=step)
        teacher: nn.Module | None = None
        new_domain = domain_step is not None and domain_step >= 1 and recipe.domain_stages
        if recipe.keeps_teacher and self.model is not None and (new_groups or new_domain):
            teacher = self._frozen(copy.deepcopy(self.model))
        self.groups += new_groups
        pairs = recipe.stage_pairs(used)
        assigned = {c for g in self.groups for c in g}
        self.pending = [c for c in self._present([label for _, label in pairs]) if c not in assigned]
        if recipe.fresh_student or self.model is None:
            student = self._new_model()
        else:
            student = self.model
            self._grow(student, [len(g) for g in new_groups])
        # with a teacher the old classes are the teacher's (all of them in a new domain); else those of
        # the steps before the newest
        old = n_old if new_groups or teacher is not None else sum(len(g) for g in self.groups[:-1])
        stage = Stage(step=step, old_classes=old, classes=len(self.classes))

        start = time.perf_counter()
        losses = self._fit(student, teacher, pairs, stage, resume)
        self.model = student
        recipe.end_stage(used, self.classes, lambda label: self._counts(label) > 0, seed=cfg.seed + self.stages)
        summary = {
            "stage": self.stages,
            "recipe": cfg.recipe,
            "new_classes": [self.info.class_names[c] for g in new_groups for c in g],
            "stage_images": len(rows),
            "used_images": len(used),
            "num_images": len(pairs),
            "old_classes": n_old,
            "memory": len(recipe.replay_pairs()),
            "final_loss": losses[-1] if losses else float("nan"),
            "seconds": round(time.perf_counter() - start, 3),
            **recipe.stage_report(),
        }
        log.info("stage %d (%s): learned %s on %d images (%d of the stage's %d), loss %.4f, %.1fs", self.stages,
                 cfg.recipe, summary["new_classes"] or "no new class", len(pairs), len(used), len(rows),
                 summary["final_loss"], summary["seconds"])
        if self.engine.selected is not None:
            summary["chosen_epoch"], summary["val_mIoU"] = self.engine.selected
        if not np.isfinite(summary["final_loss"]):
            log.warning("stage %d (%s): the loss is not finite (%s): training diverged; lower the learning rates "
                        "or the loss weights", self.stages, cfg.recipe, summary["final_loss"])
        if summary["loss_terms"]:
            gradient = {True: "yes", False: "none (kd_on_frozen: frozen body)", None: "no auxiliary term"}
            log.info("stage %d (%s): loss terms, means over the stage: %s; auxiliary gradient: %s", self.stages,
                     cfg.recipe, ", ".join(f"{k} {v:.4g}" for k, v in summary["loss_terms"].items()),
                     gradient[summary["aux_gradient"]])
        return summary

    def _limit_data(self, rows: list[Row], *, step: int) -> list[Row]:
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

    def _target_lut(self, classes: Sequence[int]) -> np.ndarray:
        """Train id -> target channel, as the recipe maps it. Every learned class keeps its channel;
        when ``classes`` is a subset (replayed full labels), the other classes become background."""
        lut = channel_lut(self.classes)
        if len(classes) < len(self.classes):
            keep = np.zeros(256, dtype=bool)
            keep[[*classes, IGNORE_INDEX]] = True
            lut = np.where(keep, lut, lut[self.info.background_id]).astype(np.uint8)
        return self.recipe.target_lut(lut)

    def _pairs_dataset(self, pairs: Sequence[Pair], lut: np.ndarray, seed: int) -> SegmentationPairs:
        cfg = self.config
        return SegmentationPairs(
            [Path(i) for i, _ in pairs],
            [Path(lab) for _, lab in pairs],
            lut=lut,
            augment=TrainAugment(base_size=cfg.input_size, crop_size=cfg.crop_size, scale=cfg.scale,
                                 flip=cfg.flip, jitter=cfg.jitter),
            seed=seed,
            cache=self.cache,
            **self.recipe.dataset_options(pairs),
        )

    def _fit(self, student: nn.Module, teacher: nn.Module | None, pairs: Sequence[Pair], stage: Stage,
             checkpoints: EpochCheckpoints | None = None) -> list[float]:
        """Build the stage's data (and the recipe's replay of earlier steps) and run the engine."""
        cfg, engine = self.config, self.engine
        replay = self.recipe.replay_pairs() if stage.step >= 1 else []
        main_batch = cfg.batch_size - cfg.batch_size // 2 if replay else cfg.batch_size
        if len(pairs) == 1 and not replay:  # Ianvs' round 0: BatchNorm (ASPP pooling) needs 2 samples
            pairs = [pairs[0], pairs[0]]  # two differently augmented views
        data = self._pairs_dataset(pairs, self._target_lut(self.classes), cfg.seed + 1000 * self.stages)
        # with replay every micro-batch also holds replayed samples: never fewer than 2
        loader = engine.loader(data, main_batch, cfg.seed + self.stages, min_samples=1 if replay else engine.min_samples(student))
        replay_batches = None
        if replay:
            old = [c for g in self.groups[:-1] for c in g]
            memory = self._pairs_dataset(replay, self._target_lut(old), cfg.seed + 1000 * self.stages + 500)
            replay_batches = cycle(engine.loader(memory, cfg.batch_size // 2, cfg.seed + self.stages + 500))
        teacher_outputs = None
        if teacher is not None:  # a separate loader, so the training order does not depend on its use
            # every rank passes over all the data: stage statistics (thresholds, prototypes) need no reduction
            whole = engine.loader(data, main_batch, cfg.seed + self.stages, shard=False)
            teacher_outputs = engine.teacher_outputs(teacher, whole, self.recipe.teacher_maps)
        self.recipe.begin_stage(stage, teacher_outputs)
        return engine.fit(student, teacher, self.recipe, stage, loader, replay=replay_batches,
                          label=f"stage {self.stages} {cfg.recipe}", checkpoints=checkpoints,
                          first_epoch=(self.stages - 1) * cfg.epochs,
                          validate=self._validation(student) if cfg.val_every > 0 else None)

    def _validation(self, student: nn.Module) -> Callable[[], float]:
        """``val_every``: a function scoring ``student`` on ``val_index``: with ``val_metric: all``
        the mIoU over the learned classes (``mIoU_all``), with ``current`` over the newest class
        group (SSUL); -1 when none of them is labelled or predicted."""
        rows = read_index(str(self.config.val_index), check_exists=True)
        if rows and len(rows[0]) < 2:
            raise DataError(f"{self.config.val_index}: lines need at least '<image> <full_label>'")
        images, labels = [str(r[0]) for r in rows], [str(r[1]) for r in rows]

        def current(scorer: IncrementalScorer) -> float | None:
            try:
                return mean_iou(scorer.learned, classes=[c for c in self.groups[-1] if c not in scorer.unscored])
            except ValueError:  # no pixel of those classes labelled or predicted
                return None

        def validate() -> float:
            previous, self.model = self.model, student
            try:
                if self.config.val_metric == "all":
                    score = self.evaluate(images, labels)["mIoU_all"]
                else:
                    score = current(self._scorer(images, labels))
            finally:
                self.model = previous
            return -1.0 if score is None else score

        return validate

    # -------------------------------------------------------------- inference
    def evaluate(self, images: Sequence[str], labels: Sequence[str]) -> dict[str, float | None]:
        """Klingner table, accuracy and old/new/all on labelled images (see IncrementalScorer);
        repeated (image, label) pairs are scored once. Data-parallel, each rank scores every
        world-size-th pair and the confusion matrices are summed over the ranks."""
        table = self._scorer(images, labels).table()
        self.engine.events.scalars({f"eval/{k}": v for k, v in table.items()
                                    if k.startswith(("mIoU", "hIoU", "accuracy")) and isinstance(v, float)}, self.stages)
        return table

    def _scorer(self, images: Sequence[str], labels: Sequence[str]) -> IncrementalScorer:
        """The confusion matrices of :meth:`evaluate`, summed over the data-parallel ranks."""
        pairs = list(dict.fromkeys(zip(images, labels)))[distributed.rank()::distributed.world_size()]
        scorer = IncrementalScorer(self.info.num_classes)
        for (image, label), prediction in zip(pairs, self.predict([i for i, _ in pairs])):
            target = read_label_png(Path(label))
            if target.shape != prediction.pred.shape:
                raise DataError(f"label {label} is {target.shape[0]}x{target.shape[1]} but its image {image} is "
                                f"{prediction.pred.shape[0]}x{prediction.pred.shape[1]}; pair each image with its own label")
            try:
                scorer.update(prediction, target)
            except ValueError as exc:
                raise DataError(f"label {label}: {exc}") from None
        if distributed.is_distributed():
            self._sum_over_ranks(scorer)
        return scorer

    def _sum_over_ranks(self, scorer: IncrementalScorer) -> None:
        """Sum ``scorer``'s confusion matrices over the ranks (a rank without images adds zeros)."""
        if scorer.groups is None:
            scorer.groups = [list(g) for g in self.channel_groups]
            scorer.per_group = [np.zeros_like(scorer.full) for _ in scorer.groups]
            scorer.per_prefix = [np.zeros_like(scorer.full) for _ in scorer.groups]
        total = distributed.all_reduce_sum(np.stack([scorer.full, scorer.learned, *scorer.per_group, *scorer.per_prefix]))
        g = len(scorer.groups)
        scorer.full, scorer.learned = total[0], total[1]
        scorer.per_group, scorer.per_prefix = list(total[2:2 + g]), list(total[2 + g:])

    def class_scores(self, logits: torch.Tensor) -> torch.Tensor:
        """N×K×H×W scores whose argmax is the prediction, channel k = ``classes[k]`` (the recipe's)."""
        return self.recipe.class_scores(logits)

    @torch.no_grad()
    def predict(self, images: Sequence[str]) -> Iterator[Prediction]:
        """Yield one :class:`Prediction` per image, at the image's own resolution. With ``eval_crop``
        S, only the centred min(H, W) square is predicted (seen by the model at S×S); the pixels
        outside it are 255 (not scored)."""
        if self.model is None:
            raise RuntimeError("cannot predict: the model has not been trained or loaded yet")
        self.model.eval()
        sizes = [len(g) for g in self.channel_groups]
        crop = self.config.eval_crop
        progress = Progress("predict", len(images), "image")
        for path in images:
            rgb = self.cache.get("rgb", Path(path))
            window = center_square(*rgb.shape[:2]) if crop is not None else (0, 0, *rgb.shape[:2])
            top, left, h, w = window
            image = torch.from_numpy(rgb[top:top + h, left:left + w]).permute(2, 0, 1).float().div_(255)
            size = self.config.eval_size
            if size is not None:
                image, _ = resize_pair(image, None, size)
            with self.engine.autocast():
                batch = normalize(image)[None].to(self.device).contiguous(memory_format=torch.channels_last)
                scores = self.class_scores(self.model(batch))
            scores = upsample_scores(scores, (h, w), mode=self.config.eval_upsample)
            maps = [m[0].cpu().numpy() for m in predictions_from_logits(scores, self.classes, sizes)]
            if (h, w) != rgb.shape[:2]:  # place the crop's maps into full-size maps of 255 (not scored)
                full = [np.full((*m.shape[:-2], *rgb.shape[:2]), IGNORE_INDEX, dtype=m.dtype) for m in maps]
                for f, m in zip(full, maps):
                    f[..., top:top + h, left:left + w] = m
                maps = full
            yield Prediction(
                pred=maps[0],
                group_pred=maps[1],
                prefix_pred=maps[2],
                classes=np.asarray(self.classes),
                group_sizes=np.asarray(sizes),
                num_classes=self.info.num_classes,
                unscored=tuple(sorted(self.info.unscored)),
            )
            progress.update()


def center_square(height: int, width: int) -> tuple[int, int, int, int]:
    """(top, left, side, side) of the centred square of side min(H, W): the part of an H×W image
    that resizing the shorter side to S and center-cropping S×S keeps (torchvision's rounding)."""
    side = min(height, width)
    return int(round((height - side) / 2.0)), int(round((width - side) / 2.0)), side, side
