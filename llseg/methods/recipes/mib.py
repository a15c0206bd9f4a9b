"""MiB (Cermelli et al., CVPR 2020; docs/methods.md §5): the recipe and its losses, and the
expanding-classifier base that PLOP shares.

Channel layout: channel 0 is the background b, channels ``0 .. old-1`` are the classes of earlier
steps Y^{t-1} (background included), channels ``old .. C-1`` the current step's classes C^t.
Targets are N×H×W channel ids, 255 = ignore. Both losses average over all N·H·W pixels, ignored
pixels contributing 0 (MiB's ``reduction='none'`` followed by ``mean()``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import torch
from torch import nn

from llseg.data.labels import IGNORE_INDEX
from llseg.errors import ConfigError
from llseg.methods.recipe import Recipe, RecipeOptions
from llseg.methods.registry import register_recipe
from llseg.models import ExpandingClassifierModel

BACKGROUND = 0  # channel of the background class


def unbiased_cross_entropy(logits: torch.Tensor, target: torch.Tensor, old_channels: int) -> torch.Tensor:
    """MiB's unbiased cross-entropy: the background absorbs the old classes.

    ℓ = −(1/|I|) Σ_i log q̃_i(y_i), q = softmax(logits), q̃(c) = q(c) for c ≥ ``old_channels`` and
    q̃(b) = Σ_{k < old} q(k); targets of old classes count as background.

    Args:
        logits: N×C×H×W student logits.
        target: N×H×W channel ids, 255 = ignore.
        old_channels: |Y^{t-1}| ≥ 1 (1 = plain cross-entropy, as in step 0).
    """
    if old_channels < 1:
        raise ValueError(f"old_channels must be >= 1 (the background), got {old_channels}")
    logits = logits.float()
    norm = torch.logsumexp(logits, dim=1, keepdim=True)
    log_q = torch.cat([torch.logsumexp(logits[:, :old_channels], dim=1, keepdim=True), logits[:, old_channels:]], 1) - norm
    valid = target != IGNORE_INDEX
    # old channel c -> merged channel 0, new channel c -> c - old + 1
    merged = torch.where(target < old_channels, 0, target - old_channels + 1)
    picked = log_q.gather(1, torch.where(valid, merged, 0)[:, None])[:, 0]
    return -(picked * valid).mean()


def unbiased_distillation(
    logits: torch.Tensor, teacher_logits: torch.Tensor, *, alpha: float = 1.0
) -> torch.Tensor:
    """MiB's unbiased knowledge distillation: the student's background absorbs the new classes.

    ℓ = −(1/|I|) Σ_i (1/|Y^{t-1}|) Σ_{c<old} q^{t-1}_i(c) log q̂_i(c), with q^{t-1} =
    softmax(α · teacher logits), q̂(c) = q(c) for old c ≠ b and q̂(b) = q(b) + Σ_{c ≥ old} q(c).

    Args:
        logits: N×C×H×W student logits (the first ``old`` channels are the teacher's classes).
        teacher_logits: N×old×H×W logits of the frozen previous model.
        alpha: scale of the teacher logits (MiB ``--alpha``).
    """
    old = teacher_logits.shape[1]
    logits = logits.float()
    norm = torch.logsumexp(logits, dim=1, keepdim=True)
    background = torch.logsumexp(torch.cat([logits[:, :1], logits[:, old:]], 1), dim=1, keepdim=True)
    log_q = torch.cat([background, logits[:, 1:old]], 1) - norm
    target = torch.softmax(alpha * teacher_logits.float(), dim=1)
    return -(target * log_q).sum(1).mean() / old


def init_balanced(conv: nn.Conv2d, num_new: int, background: int = BACKGROUND) -> None:
    """MiB ``init_balanced`` for the last ``num_new`` output channels of a grown 1×1 classifier:
    their weights are the background's, and their biases and the background bias become
    β_b − log(|C^t| + 1), so the background probability is split evenly among b and C^t."""
    if conv.bias is None:
        raise ValueError("init_balanced needs a classifier with a bias")
    with torch.no_grad():
        bias = conv.bias[background] - math.log(num_new + 1)
        conv.weight[-num_new:] = conv.weight[background]
        conv.bias[-num_new:] = bias
        conv.bias[background] = bias


@dataclass(frozen=True)
class ExpandingOptions(RecipeOptions):
    """init_balanced: new classes start from the background classifier, biases β_b − log(|C_t|+1)."""

    init_balanced: bool = True


class ExpandingRecipe(Recipe):
    """MiB/PLOP base: one expanding classifier, background channel 0, softmax losses, and MiB's VOC
    optimisation: every parameter at lr (0.01) in step 0, at 0.001 in later steps (§5)."""

    defaults = {"backbone_lr": None, "lr_incremental": 0.001}
    keeps_teacher = True
    needs_background = True
    capabilities: ClassVar[tuple[type, ...]] = (ExpandingClassifierModel,)
    options: ExpandingOptions

    @classmethod
    def check_config(cls, config: Any) -> None:
        if config.loss_type != "ce":
            raise ConfigError(f"recipe {cls.name} uses softmax losses; loss_type must be ce, got {config.loss_type!r}")

    def model_kwargs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        self.require_model_option(kwargs, "head", "expanding", "one expanding classifier")
        return kwargs

    def after_grow(self, model: nn.Module, num_new: int) -> None:
        if self.options.init_balanced:
            init_balanced(cast(ExpandingClassifierModel, model).logit_conv, num_new)


@dataclass(frozen=True)
class MibOptions(ExpandingOptions):
    """Defaults: ``--method MiB`` (§5). loss_kd: weight of the unbiased distillation. alpha: teacher logit scale."""

    loss_kd: float = 10.0
    alpha: float = 1.0

    def __post_init__(self) -> None:
        if self.loss_kd < 0 or self.alpha <= 0:
            raise ConfigError("need loss_kd >= 0 and alpha > 0")


@register_recipe("mib")
class Mib(ExpandingRecipe):
    """Unbiased cross-entropy + ``loss_kd`` · unbiased distillation from the frozen previous model.

    On a domain-incremental split (a step adds no class, §8.3) both terms lose their background
    correction: cross-entropy + ``loss_kd`` · KD over the same classes, what PLOP's released
    ``scripts/cityscapesDomain/mib_cityscapesDomain_1-1.sh`` runs (``--method FT --loss_kd 10``)."""

    Options = MibOptions
    options: MibOptions
    domain_stages = True

    def loss(self, student: nn.Module, teacher: nn.Module | None, image: torch.Tensor,
             target: torch.Tensor) -> torch.Tensor:
        logits = student(image)
        # a new domain: no class for the background to absorb (old_channels 1 is plain cross-entropy);
        # the distillation below is then plain KD, its background channel being the teacher's own
        old = 1 if self.stage.same_classes else max(self.stage.old_classes, 1)
        loss = unbiased_cross_entropy(logits, target, old)
        if teacher is None or self.options.loss_kd == 0:
            return loss
        with torch.no_grad():
            teacher_logits = teacher(image)
        return loss + self.options.loss_kd * unbiased_distillation(logits, teacher_logits, alpha=self.options.alpha)
