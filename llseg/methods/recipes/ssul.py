"""SSUL (Cha et al., NeurIPS 2021; docs/methods.md §2): the recipe and its components.

One head per step, an *unknown* class for the background of later steps, pseudo-labels from the
frozen previous model, frozen steps ≥ 1 (only the new head trains), weight transfer from the
unknown head and a class-balanced exemplar memory.

Channel layout with ``unknown``: logit channel 0 is the *unknown* class, channel ``k + 1`` is the
learner's class ``k`` (class 0 of the learner is the background). Without ``unknown`` channel
``k`` is class ``k``. Targets are N×H×W channel ids with 255 = ignore.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, cast

import numpy as np
import torch
from torch import nn

from llseg.data.labels import IGNORE_INDEX
from llseg.errors import ConfigError, DataError
from llseg.methods.losses import probabilities
from llseg.methods.recipe import Pair, Recipe, RecipeOptions, Row
from llseg.methods.registry import register_recipe
from llseg.models import StepHeadsModel

UNKNOWN = 0  # logit channel of the unknown class
BG_HEAD_LR_FACTOR = 1e-4  # SSUL trains the background head at lr · 1e-4 in frozen steps


def merge_unknown(probs: torch.Tensor) -> torch.Tensor:
    """SSUL inference: add the unknown probability to the background and drop the unknown channel.

    probs N×(1+K)×H×W (channel 0 unknown, 1 background) -> N×K×H×W (channel 0 background).
    """
    merged = probs[:, 1:].clone()
    merged[:, 0] += probs[:, UNKNOWN]
    return merged


def pseudo_label(
    target: torch.Tensor, teacher_logits: torch.Tensor, *, loss_type: str, threshold: float, unknown: bool
) -> torch.Tensor:
    """SSUL pseudo-labels: background (and unknown) pixels take the old model's foreground class
    where it is confident (docs/methods.md §2):

    ỹ_i = ĉ_i if y_i ∈ {unknown, background} and ĉ_i is an old foreground channel and
    max_c p_ic ≥ τ, else y_i, with p = sigmoid/softmax(teacher logits) and ĉ = argmax_c p_ic.

    Args:
        target: N×H×W channel ids of the current student (old channels keep their index).
        teacher_logits: N×C_old×H×W of the frozen previous model.
    """
    bg = 1 if unknown else 0
    background = (target == bg) | (target == UNKNOWN) if unknown else target == bg
    confidence, best = probabilities(teacher_logits, loss_type).max(dim=1)
    old_foreground = best > bg  # excludes the unknown (0) and background channels
    take = background & old_foreground & (confidence >= threshold)
    return torch.where(take, best, target)


def unknown_lut(base: np.ndarray, background_channel: int) -> np.ndarray:
    """Shift a ``uint8[256]`` train-id -> channel table for the unknown channel: class channels
    move up by one and the background (``background_channel`` before the shift) becomes unknown.

    This is SSUL's unknown labelling without saliency maps ("all background is unknown"); with
    saliency maps the dataset turns non-salient background back into the background channel.
    """
    lut = base.astype(np.int64)
    shifted = np.where(lut == IGNORE_INDEX, IGNORE_INDEX, lut + 1)
    shifted[lut == background_channel] = UNKNOWN
    return shifted.astype(np.uint8)


def select_memory(
    present: np.ndarray, classes: Sequence[int], size: int, *, seed: int
) -> list[int]:
    """SSUL-M's class-balanced exemplar choice (``utils/memory.py``), deterministic for ``seed``.

    Rounds visit ``classes`` in a random order; each class takes one not-yet-chosen image that
    contains it (chosen at random) until ``size`` images are chosen or no class has candidates.

    Args:
        present: ``bool (n_images, num_classes)`` class presence of the candidates.
        classes: class ids to balance (background excluded).
    Returns:
        Indices into ``present``, in the order chosen.
    """
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    taken = np.zeros(present.shape[0], dtype=bool)
    order = rng.permutation(np.asarray(classes, dtype=np.int64))
    while len(chosen) < size:
        progress = False
        for c in order:
            candidates = np.flatnonzero(present[:, c] & ~taken)
            if candidates.size == 0:
                continue
            pick = int(rng.choice(candidates))
            taken[pick] = True
            chosen.append(pick)
            progress = True
            if len(chosen) == size:
                break
        if not progress:
            break
    return chosen


def transfer_unknown_head(heads: nn.ModuleList) -> None:
    """``w_transfer``: initialise the last (new) head from the unknown head ``heads[0]``: conv3×3
    and BN are copied, and every output row of the new 1×1 conv is the unknown row."""
    unknown, new = cast(nn.Sequential, heads[0]), cast(nn.Sequential, heads[-1])
    source, target = cast(nn.Conv2d, unknown[-1]), cast(nn.Conv2d, new[-1])
    with torch.no_grad():
        for src, dst in zip(list(unknown)[:-1], list(new)[:-1]):
            dst.load_state_dict(src.state_dict())
        target.weight.copy_(source.weight.expand_as(target.weight))
        if target.bias is not None and source.bias is not None:
            target.bias.copy_(source.bias.expand_as(target.bias))


def freeze_batchnorm(model: nn.Module) -> None:
    """``bn_freeze``: every BatchNorm in eval mode (running statistics kept) with frozen affine
    parameters. Call after ``model.train()``."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)


def frozen_step_groups(heads: nn.ModuleList, *, lr: float, unknown: bool) -> list[dict]:
    """``freeze`` (steps ≥ 1): only the new head trains at ``lr``; with ``unknown`` also the unknown
    head (``lr``) and the background head (``lr · 1e-4``). Other parameters get
    ``requires_grad=False`` by the caller."""
    groups = [{"params": list(heads[-1].parameters()), "lr": lr}]
    if unknown:
        groups.append({"params": list(heads[0].parameters()), "lr": lr})
        groups.append({"params": list(heads[1].parameters()), "lr": lr * BG_HEAD_LR_FACTOR})
    return groups


def trainable(groups: list[dict]) -> list[dict]:
    """Keep only parameters that require gradients (e.g. after ``bn_freeze``); drop empty groups."""
    kept = [{**g, "params": [p for p in g["params"] if p.requires_grad]} for g in groups]
    return [g for g in kept if g["params"]]


@dataclass(frozen=True)
class SsulOptions(RecipeOptions):
    """Defaults: SSUL's published VOC command (memory-free SSUL; SSUL-M sets ``mem_size`` 100),
    docs/methods.md §2.

    Attributes:
        unknown: an unknown channel; background pixels are labelled unknown (all of them, or the
            salient ones when ``saliency_dir`` holds ``<image stem>.png`` maps); merged into the
            background at inference.
        pseudo, pseudo_thresh: pseudo-label background with the old model's confident foreground.
        freeze: steps ≥ 1 train only the new head (and the unknown head, and the background head
            at lr · 1e-4). bn_freeze: steps ≥ 1 keep every BatchNorm in eval mode, affine frozen.
        w_transfer: initialise each new head from the unknown head (needs ``unknown``).
        mem_size: class-balanced exemplar memory of earlier steps' images; half of every batch.
    """

    unknown: bool = True
    saliency_dir: str | None = None
    pseudo: bool = True
    pseudo_thresh: float = 0.7
    freeze: bool = True
    bn_freeze: bool = True
    w_transfer: bool = True
    mem_size: int = 0

    def __post_init__(self) -> None:
        if self.mem_size < 0 or not 0.0 <= self.pseudo_thresh <= 1.0:
            raise ConfigError("need mem_size >= 0 and 0 <= pseudo_thresh <= 1")
        if self.w_transfer and not self.unknown:
            raise ConfigError("w_transfer copies the unknown head; set unknown: true (or w_transfer: false)")
        if self.saliency_dir and not self.unknown:
            raise ConfigError("saliency_dir labels the unknown class; set unknown: true")


@register_recipe("ssul")
class Ssul(Recipe):
    """Per-step heads, unknown class, pseudo-labels, frozen steps, exemplar memory. A stage with
    no new class continues the current step (same freezing, no teacher)."""

    Options = SsulOptions
    defaults = {"loss_type": "bce"}
    keeps_teacher = True
    needs_background = True
    one_head_per_group = True
    capabilities: ClassVar[tuple[type, ...]] = (StepHeadsModel,)
    options: SsulOptions

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.memory: list[Pair] = []

    @classmethod
    def check_config(cls, config: Any) -> None:
        if config.options.mem_size and config.batch_size < 2:
            raise ConfigError("mem_size fills half of every batch; use batch_size >= 2")

    @property
    def background_first(self) -> bool:
        return self.options.unknown

    def model_kwargs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        self.require_model_option(kwargs, "head", "per_step", "one head per step")
        kwargs["unknown"] = self.options.unknown
        return kwargs

    def after_grow(self, model: nn.Module, num_new: int) -> None:
        if self.options.w_transfer:
            transfer_unknown_head(cast(StepHeadsModel, model).step_heads)

    def target_lut(self, lut: np.ndarray) -> np.ndarray:
        return unknown_lut(lut, 0) if self.options.unknown else lut

    def dataset_options(self, pairs: Sequence[Pair]) -> dict[str, Any]:
        """Saliency maps (``<image stem>.png`` in ``saliency_dir``): non-salient unknown pixels (the
        step's background: background, old and future classes) become the background channel,
        salient ones stay unknown, as SSUL's ``VOCSegmentation.__getitem__``."""
        if not self.options.saliency_dir:
            return {}
        saliency = [Path(self.options.saliency_dir) / f"{Path(i).stem}.png" for i, _ in pairs]
        missing = [str(p) for p in saliency if not p.is_file()]
        if missing:
            raise DataError(f"{len(missing)} saliency maps are missing, e.g. {missing[0]}; saliency_dir must hold "
                              "<image stem>.png for every training image (or drop saliency_dir)")
        return {"saliency": saliency, "relabel": (UNKNOWN, 1)}

    def replay_pairs(self) -> list[Pair]:
        return self.memory

    @property
    def replay_capacity(self) -> int:
        return self.options.mem_size

    def end_stage(self, rows: Sequence[Row], classes: Sequence[int], presence: Callable[[str], np.ndarray],
                  *, seed: int) -> None:
        """SSUL-M: re-select ``mem_size`` exemplars, class-balanced over the learned foreground
        classes, from the memory and this stage's (image, full label) pairs."""
        if not self.options.mem_size:
            return
        candidates = list(dict.fromkeys([*self.memory, *((image, full) for image, full, _ in rows)]))
        foreground = [c for c in classes if c != self.info.background_id]
        present = np.stack([presence(label) for _, label in candidates])
        chosen = select_memory(present, foreground, self.options.mem_size, seed=seed)
        self.memory = [candidates[i] for i in chosen]

    def state_dict(self) -> dict[str, Any]:
        return {"memory": [list(p) for p in self.memory]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.memory = [(str(i), str(f)) for i, f in state.get("memory", [])]

    def param_groups(self, student: nn.Module) -> list[dict[str, Any]]:
        """``freeze``: steps ≥ 1 train the new head (and unknown/background heads) only;
        ``bn_freeze``: steps ≥ 1 keep BatchNorm in eval mode with frozen affine parameters."""
        incremental = self.stage.step >= 1
        if incremental and self.options.freeze:
            for p in student.parameters():
                p.requires_grad_(False)
            groups = self.frozen_groups(student)
            for g in groups:
                for p in g["params"]:
                    p.requires_grad_(True)
        else:
            groups = super().param_groups(student)
        if incremental and self.options.bn_freeze:
            freeze_batchnorm(student)
        return trainable(groups)

    def frozen_groups(self, student: nn.Module) -> list[dict[str, Any]]:
        """The groups that train in steps ≥ 1 under ``freeze`` (everything else is frozen)."""
        heads = cast(StepHeadsModel, student).step_heads
        return frozen_step_groups(heads, lr=self.learning_rate(), unknown=self.options.unknown)

    def pseudo_labels(self, target: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        """``pseudo``: background/unknown pixels take the teacher's confident old foreground class."""
        return pseudo_label(target, teacher_logits, loss_type=self.config.loss_type,
                            threshold=self.options.pseudo_thresh, unknown=self.options.unknown)

    def loss(self, student: nn.Module, teacher: nn.Module | None, image: torch.Tensor,
             target: torch.Tensor) -> torch.Tensor:
        logits = student(image)
        if teacher is not None and self.options.pseudo:
            with torch.no_grad():
                teacher_logits = teacher(image)
            target = self.pseudo_labels(target, teacher_logits)
        return self.supervised(logits, target)

    def class_scores(self, logits: torch.Tensor) -> torch.Tensor:
        if self.options.unknown:
            return merge_unknown(probabilities(logits, self.config.loss_type))
        return logits.float()
