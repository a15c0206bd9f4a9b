"""The training engine: device, precision, data loading and one stage's optimisation loop.

It knows no method: the recipe supplies the loss of a batch (with its teacher and pseudo-labels),
the parameter groups, and extra batches to mix in (replay); the engine runs epochs with the
optimiser and schedule of the config, mixed precision, gradient clipping and a progress bar.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import cast

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from llseg.data.dataset import SegmentationPairs
from llseg.methods.config import TrainConfig
from llseg.methods.optim import make_optimizer, make_schedule
from llseg.methods.recipe import Recipe, Stage, TeacherBatch, TeacherOutputs
from llseg.models import FeatureModel
from llseg.runtime import autocast, keep_freed_memory, pick_device, resolve_num_workers, resolve_precision

Batch = tuple[torch.Tensor, torch.Tensor]


class Engine:
    """Runs stages of ``config`` on the device it picks (``device``, ``precision``, ``num_workers``
    resolved from the config's ``auto`` values)."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.device = pick_device(config.device)
        self.precision = resolve_precision(config.precision, self.device)
        self.num_workers = resolve_num_workers(config.num_workers, self.device)
        if self.device.type == "cpu" and self.num_workers == 0:
            # reuse last step's large buffers instead of page-faulting new ones; not with DataLoader
            # workers: forked from a large kept heap, they cost the trainer copy-on-write faults
            keep_freed_memory()

    def autocast(self) -> AbstractContextManager:
        """The mixed-precision context of this engine (a no-op in fp32)."""
        return autocast(self.precision, self.device)

    def loader(self, data: SegmentationPairs, batch_size: int, seed: int) -> DataLoader:
        """Shuffled batches of ``data`` in a seeded order; no 1-sample last batch (BatchNorm)."""
        return DataLoader(
            data,
            batch_size=min(batch_size, len(data)),
            shuffle=True,
            generator=torch.Generator().manual_seed(seed),
            num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",  # lets .to(device, non_blocking=True) overlap the copy
            drop_last=len(data) > batch_size and len(data) % batch_size == 1,
        )

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
            loader: DataLoader, *, replay: Iterator[Batch] | None = None, label: str = "stage") -> list[float]:
        """Train ``student`` for ``config.epochs`` over ``loader`` (each batch extended by one of
        ``replay`` when given) with ``recipe``'s loss and parameter groups; returns the mean loss
        per epoch. ``recipe.begin_stage`` must have been called."""
        cfg = self.config
        data: SegmentationPairs = loader.dataset  # type: ignore[assignment]
        student.to(memory_format=torch.channels_last)  # faster convolutions on CPU (oneDNN) and CUDA
        student.train()
        optimizer = make_optimizer(cfg.optimizer, recipe.param_groups(student), lr=cfg.lr, weight_decay=cfg.weight_decay)
        schedule = make_schedule(optimizer, cfg.lr_policy, cfg.epochs * len(loader), power=cfg.lr_power, step_size=cfg.step_size)
        scaler = torch.amp.GradScaler("cuda", enabled=self.precision == "fp16")
        trainable = [p for group in optimizer.param_groups for p in group["params"] if p.requires_grad]
        epoch_losses: list[float] = []
        bar = tqdm(range(cfg.epochs), desc=label, unit="epoch", disable=None, leave=False)
        for epoch in bar:
            data.epoch = epoch
            recipe.begin_epoch(epoch + 1, cfg.epochs)
            total, batches = 0.0, 0
            for image, target in loader:
                if replay is not None:
                    extra_image, extra_target = next(replay)
                    image, target = torch.cat([image, extra_image]), torch.cat([target, extra_target])
                image = image.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
                target = target.to(self.device, non_blocking=True)
                with self.autocast():
                    loss = recipe.loss(student, teacher, image, target)
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


def cycle(loader: DataLoader) -> Iterator[Batch]:
    """Endless batches of ``loader``; each pass is a new augmentation epoch of its dataset."""
    data: SegmentationPairs = loader.dataset  # type: ignore[assignment]
    while True:
        yield from loader
        data.epoch += 1
