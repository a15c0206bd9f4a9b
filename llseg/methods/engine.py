"""The training engine: device, precision, data loading and one stage's optimisation loop.

It knows no method: the recipe supplies the loss of a batch (with its teacher and pseudo-labels),
the parameter groups, and extra batches to mix in (replay); the engine runs epochs with the
optimiser and schedule of the config, mixed precision, gradient clipping and a progress bar.
"""
from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from llseg import distributed
from llseg.data.dataset import SegmentationPairs
from llseg.distributed import GlobalBatchSampler
from llseg.errors import ConfigError
from llseg.methods.checkpoint import load_weights_file, write_checkpoint
from llseg.methods.config import TrainConfig
from llseg.methods.events import EventLog
from llseg.methods.optim import make_optimizer, make_schedule
from llseg.methods.recipe import Recipe, Stage, TeacherBatch, TeacherOutputs
from llseg.models import FeatureModel
from llseg.runtime import autocast, format_seconds, keep_freed_memory, pick_device, resolve_num_workers, resolve_precision

Batch = tuple[torch.Tensor, torch.Tensor]
log = logging.getLogger("llseg.engine")
EPOCH_FORMAT = "llseg-epoch/1"


@dataclass(frozen=True)
class EpochCheckpoints:
    """Where :meth:`Engine.fit` keeps its resumable state: ``path`` after every ``every``-th and the
    last epoch; ``fingerprint`` identifies the stage (config, data, model state before it), so a
    file of another run is refused instead of resumed."""

    path: Path
    fingerprint: str
    every: int = 1


def _rng_state() -> dict[str, Any]:
    """Global RNG states (dropout, anything drawing from Python, NumPy or torch), as tensors and
    plain containers (loadable with ``weights_only``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state(),
                             "numpy": (kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), pos, has_gauss, cached)}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Engine:
    """Runs stages of ``config`` on the device it picks (``device``, ``precision``, ``num_workers``
    resolved from the config's ``auto`` values)."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.device = distributed.init_from_env(pick_device(config.device))  # cuda:LOCAL_RANK under torchrun
        if config.sync_bn and distributed.world_size() > 1 and self.device.type != "cuda":
            raise ConfigError("sync_bn: SyncBatchNorm runs on CUDA only; drop sync_bn on CPU (gloo) runs")
        self.precision = resolve_precision(config.precision, self.device)
        self.num_workers = resolve_num_workers(config.num_workers, self.device)
        self.events = EventLog(config.tensorboard)
        self.selected: tuple[int, float] | None = None  # (epoch, validation score) fit kept, with val_every
        if self.device.type == "cpu" and self.num_workers == 0:
            # reuse last step's large buffers instead of page-faulting new ones; not with DataLoader
            # workers: forked from a large kept heap, they cost the trainer copy-on-write faults
            keep_freed_memory()

    def autocast(self) -> AbstractContextManager:
        """The mixed-precision context of this engine (a no-op in fp32)."""
        return autocast(self.precision, self.device)

    def loader(self, data: SegmentationPairs, batch_size: int, seed: int, *, shard: bool = True,
               min_samples: int = 1) -> DataLoader:
        """Shuffled batches of ``data`` in a seeded order; no 1-sample last batch (BatchNorm).

        Data-parallel or with ``accumulate`` > 1 (and ``shard``), the batches are this rank's
        micro-batches of global batches of ``batch_size`` (:class:`GlobalBatchSampler`), drawn from
        the same seeded permutation as one process at ``batch_size``. ``min_samples``: the fewest
        samples a (micro-)batch may have; fewer by configuration raises ``ConfigError``."""
        generator = torch.Generator().manual_seed(seed)
        pin = self.device.type == "cuda"  # lets .to(device, non_blocking=True) overlap the copy
        if shard and self.parallel:
            sampler = GlobalBatchSampler(len(data), batch_size, generator, accumulate=self.config.accumulate,
                                         rank=distributed.rank(), world=distributed.world_size(), min_part=min_samples)
            return DataLoader(data, batch_sampler=sampler, generator=generator, num_workers=self.num_workers, pin_memory=pin)
        if min(batch_size, len(data)) < min_samples:
            raise ConfigError(f"batch_size {batch_size} (on {len(data)} images): the model's BatchNorm after global pooling "
                              f"(DeepLabV3's ASPP image pooling) needs {min_samples} samples per batch in training: "
                              f"set batch_size >= {min_samples}")
        return DataLoader(
            data,
            batch_size=min(batch_size, len(data)),
            shuffle=True,
            generator=generator,
            num_workers=self.num_workers,
            pin_memory=pin,
            drop_last=len(data) > batch_size and len(data) % batch_size == 1,
        )

    def min_samples(self, model: nn.Module) -> int:
        """The fewest samples a training (micro-)batch of ``model`` may have on this rank: 2 with
        :func:`pooled_batchnorm` unless SyncBatchNorm pools the ranks' samples, else 1."""
        synced = self.config.sync_bn and distributed.world_size() > 1
        return 2 if pooled_batchnorm(model) and not synced else 1

    @property
    def parallel(self) -> bool:
        """Whether optimiser steps are split into micro-batches (data-parallel ranks or ``accumulate``)."""
        return distributed.world_size() > 1 or self.config.accumulate > 1

    def teacher_outputs(self, teacher: nn.Module, loader: DataLoader, names: Sequence[str]) -> TeacherOutputs:
        """A :class:`TeacherBatch` (targets, teacher logits, the ``forward_features`` maps ``names``)
        per batch of ``loader``, computed only when iterated."""
        for image, target in loader:
            image = image.to(self.device).contiguous(memory_format=torch.channels_last)
            maps: dict[str, torch.Tensor] = {}
            with torch.no_grad(), self.autocast():
                if names:
                    features = cast(FeatureModel, teacher).forward_features(image)
                    logits, maps = features["logits"], {k: features[k].float() for k in names}
                else:
                    logits = teacher(image)
            yield TeacherBatch(target.to(self.device), logits.float(), maps)

    def fit(self, student: nn.Module, teacher: nn.Module | None, recipe: Recipe, stage: Stage,
            loader: DataLoader, *, replay: Iterator[Batch] | None = None, label: str = "stage",
            checkpoints: EpochCheckpoints | None = None, first_epoch: int = 0,
            validate: Callable[[], float] | None = None) -> list[float]:
        """Train ``student`` for ``config.epochs`` over ``loader`` (each batch extended by one of
        ``replay`` when given) with ``recipe``'s loss and parameter groups; returns the mean loss
        per epoch (of the global batches when data-parallel). ``recipe.begin_stage`` must have been
        called. Logs one line per epoch: loss and its terms, lr, images/s, ETA, peak CUDA memory;
        with ``tensorboard`` set, writes them as scalars at step ``first_epoch`` + epoch (1-based).

        With ``checkpoints``, an existing file of the same stage is resumed from (weights,
        optimiser, scaler, schedule, data order, RNG states, loss records), and the state is saved
        atomically (rank 0) after every ``every``-th and the last epoch: a resumed stage ends with the
        same weights as an uninterrupted one (one process).

        With ``validate`` (the validation score of ``student`` as it is; called on every rank) and
        ``val_every`` N > 0, it is called after every N-th and the last epoch; ``student`` ends with
        the weights of the best-scoring epoch (the earliest on ties), recorded in ``self.selected``
        as (1-based epoch, score)."""
        cfg = self.config
        data: SegmentationPairs = loader.dataset  # type: ignore[assignment]
        student.to(memory_format=torch.channels_last)  # faster convolutions on CPU (oneDNN) and CUDA
        if self.parallel:
            if cfg.sync_bn and distributed.world_size() > 1:
                student = nn.SyncBatchNorm.convert_sync_batchnorm(student)  # replaces the BatchNorm children in place
            distributed.broadcast_module(student)
            steps: list[int | None] = list(cast(GlobalBatchSampler, loader.batch_sampler).global_sizes())
        else:
            steps = [None] * len(loader)
        micro = cfg.accumulate if self.parallel else 1
        student.train()
        optimizer = make_optimizer(cfg.optimizer, recipe.param_groups(student), lr=cfg.lr, weight_decay=cfg.weight_decay)
        schedule = make_schedule(optimizer, cfg.lr_policy, cfg.epochs * len(steps), power=cfg.lr_power, step_size=cfg.step_size)
        scaler = torch.amp.GradScaler("cuda", enabled=self.precision == "fp16")
        trainable = [p for group in optimizer.param_groups for p in group["params"] if p.requires_grad]
        clip = recipe.gradient_clip()
        epoch_losses: list[float] = []
        replayed = 0
        best: dict[str, Any] | None = None  # epoch, score and CPU weights of the best validated epoch
        self.selected = None
        parts: dict[str, Any] = {"model": student, "optimizer": optimizer, "schedule": schedule, "scaler": scaler}
        if checkpoints is not None and checkpoints.path.is_file():
            state = load_weights_file(checkpoints.path)
            if state.get("format") != EPOCH_FORMAT or state.get("fingerprint") != checkpoints.fingerprint:
                raise ConfigError(
                    f"{checkpoints.path} is the training checkpoint of another configuration or data (the config, the "
                    "index files or the earlier stages changed); delete it to train this stage from its start"
                )
            for name, part in parts.items():
                part.load_state_dict(state[name])
            assert loader.generator is not None
            loader.generator.set_state(state["loader"])
            _set_rng_state(state["rng"])
            recipe.load_records(state["records"])
            epoch_losses, replayed = list(state["losses"]), int(state["replayed"])
            best = state.get("best")
            if replay is not None:  # the endless replay stream, back at its position
                for _ in range(replayed):
                    next(replay)
            log.info("%s: resumed from %s after epoch %d of %d", label, checkpoints.path, len(epoch_losses), cfg.epochs)
        progress = EpochProgress(label, cfg.epochs, self.device)
        progress.epoch = len(epoch_losses)
        bar = tqdm(range(len(epoch_losses), cfg.epochs), desc=label, unit="epoch", leave=False, initial=len(epoch_losses),
                   total=cfg.epochs, disable=None if distributed.is_main() else True)
        for epoch in bar:
            data.epoch = epoch
            recipe.begin_epoch(epoch + 1, cfg.epochs)
            progress.begin_epoch(recipe)
            lr = optimizer.param_groups[-1]["lr"]
            total, images = 0.0, 0
            batches = iter(loader)
            for global_size in steps:
                optimizer.zero_grad(set_to_none=True)
                step_loss = 0.0
                for _ in range(micro):
                    image, target = next(batches)
                    weight = 1.0 if global_size is None else len(image) / global_size
                    images += len(image)
                    if replay is not None:
                        extra_image, extra_target = next(replay)
                        replayed += 1
                        image, target = torch.cat([image, extra_image]), torch.cat([target, extra_target])
                    image = image.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
                    target = target.to(self.device, non_blocking=True)
                    with self.autocast():
                        loss = recipe.loss(student, teacher, image, target)
                    scaler.scale(loss if weight == 1.0 else loss * weight).backward()
                    step_loss += float(loss.detach()) * weight
                if global_size is not None:  # sum the weighted gradients and losses of every rank
                    step_loss = float(distributed.sum_gradients(trainable, torch.tensor([step_loss]))[0])
                if clip is not None:  # clip the true gradients: unscale fp16 first (else a no-op)
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(trainable, clip)
                scaler.step(optimizer)
                scaler.update()
                schedule.step()
                total += step_loss
            if next(batches, None) is not None:  # exhausting the loader advances its generator as it always did
                raise RuntimeError(f"{label}: the data loader yielded more batches than the {len(steps)} steps planned")
            if distributed.world_size() > 1 and not cfg.sync_bn:
                distributed.average_buffers(student)  # BatchNorm running statistics of every rank's batches
            epoch_losses.append(total / max(len(steps), 1))
            scalars = progress.end_epoch(recipe, epoch_losses[-1], lr, images * distributed.world_size())
            self.events.scalars({f"train/{k}": v for k, v in scalars.items()}, first_epoch + epoch + 1)
            bar.set_postfix(loss=f"{epoch_losses[-1]:.4f}")
            if validate is not None and cfg.val_every > 0 and ((epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs):
                best = self._validate(student, validate, epoch + 1, best, label)
            if checkpoints is not None and checkpoints.every > 0 and distributed.is_main() and (
                    (epoch + 1) % checkpoints.every == 0 or epoch + 1 == cfg.epochs):
                assert loader.generator is not None
                write_checkpoint(checkpoints.path, {
                    "format": EPOCH_FORMAT, "fingerprint": checkpoints.fingerprint, "losses": epoch_losses,
                    "replayed": replayed, "loader": loader.generator.get_state(), "rng": _rng_state(),
                    "records": recipe.records(), "best": best, **{name: part.state_dict() for name, part in parts.items()},
                })
        if best is not None:
            if best["epoch"] != cfg.epochs:
                student.load_state_dict(best["weights"])
            self.selected = (int(best["epoch"]), float(best["score"]))
            log.info("%s: keeps the weights of epoch %d of %d (validation mIoU %.4f)", label, best["epoch"], cfg.epochs,
                     best["score"])
        return epoch_losses

    @staticmethod
    def _validate(student: nn.Module, validate: Callable[[], float], epoch: int, best: dict[str, Any] | None,
                  label: str) -> dict[str, Any] | None:
        """Score ``student`` (its train/eval modes restored afterwards); the new best, or ``best``."""
        modes = [(m, m.training) for m in student.modules()]
        score = validate()
        for m, training in modes:  # parents first: frozen BatchNorm (bn_freeze) stays in eval mode
            m.training = training
        log.info("%s epoch %d: validation mIoU %.4f", label, epoch, score)
        if best is not None and not score > best["score"]:
            return best
        return {"epoch": epoch, "score": score,
                "weights": {k: v.detach().to("cpu", copy=True) for k, v in student.state_dict().items()}}


def pooled_batchnorm(model: nn.Module) -> bool:
    """Whether ``model`` has BatchNorm on globally pooled 1×1 maps (a ``Sequential`` with
    ``AdaptiveAvgPool2d(1)`` before a BatchNorm: DeepLabV3's ASPP image pooling). In training such
    a layer normalises one value per channel and sample, so it needs at least 2 samples per batch."""
    for module in model.modules():
        if isinstance(module, nn.Sequential):
            children = list(module)
            for i, child in enumerate(children):
                if (isinstance(child, nn.AdaptiveAvgPool2d) and child.output_size in (1, (1, 1))
                        and any(isinstance(c, nn.modules.batchnorm._BatchNorm) for c in children[i + 1:])):
                    return True
    return False


class EpochProgress:
    """One INFO line per epoch (rank 0): loss and the recipe's terms over the epoch, learning rate,
    images/s, ETA of the stage, and peak CUDA memory."""

    def __init__(self, label: str, epochs: int, device: torch.device) -> None:
        self.label, self.epochs, self.device = label, epochs, device
        self.start = time.perf_counter()
        self.epoch, self.epoch_start = 0, self.start
        self.terms: dict[str, tuple[float, int]] = {}
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)

    def begin_epoch(self, recipe: Recipe) -> None:
        self.epoch += 1
        self.epoch_start = time.perf_counter()
        self.terms = recipe.term_totals()

    def end_epoch(self, recipe: Recipe, loss: float, lr: float, images: int) -> dict[str, float]:
        """Log the epoch's line on rank 0; returns its numbers (loss, terms, lr, images_per_s; empty on other ranks)."""
        now = time.perf_counter()
        if not distributed.is_main():
            return {}
        seconds = now - self.epoch_start
        eta = (now - self.start) / self.epoch * (self.epochs - self.epoch)
        before = self.terms
        terms = {k: (total - before.get(k, (0.0, 0))[0]) / (count - before.get(k, (0.0, 0))[1])
                 for k, (total, count) in recipe.term_totals().items() if count > before.get(k, (0.0, 0))[1]}
        parts = [f"loss {loss:.4f}"] + [f"{k} {v:.4g}" for k, v in terms.items()]
        parts += [f"lr {lr:.3g}", f"{images / max(seconds, 1e-9):.1f} img/s", f"ETA {format_seconds(eta)}"]
        if self.device.type == "cuda":
            parts.append(f"peak CUDA memory {torch.cuda.max_memory_allocated(self.device) / 2**30:.2f} GiB")
        log.info("%s epoch %d/%d: %s", self.label, self.epoch, self.epochs, ", ".join(parts))
        return {"loss": loss, **terms, "lr": lr, "images_per_s": images / max(seconds, 1e-9)}


def cycle(loader: DataLoader) -> Iterator[Batch]:
    """Endless batches of ``loader``; each pass is a new augmentation epoch of its dataset."""
    data: SegmentationPairs = loader.dataset  # type: ignore[assignment]
    while True:
        yield from loader
        data.epoch += 1
