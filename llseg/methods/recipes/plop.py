"""PLOP (Douillard et al., CVPR 2021; docs/methods.md §6): the recipe and its components.

Channel layout as in :mod:`llseg.methods.mib`: channel 0 is the background, channels
``0 .. old-1`` the classes the previous (teacher) model knows, ``old .. C-1`` the current step's.
Targets are N×H×W channel ids, 255 = ignore.

Entropy scale: u = H(q)/log|C_old| ∈ [0, 1] as docs/methods.md states. PLOP's code averages p·log p
over channels and divides once more by log|C_1:t|, i.e. u_code = u / (|C_old| · log|C_1:t|); the
per-class medians do not depend on the scale, but the floor does: PLOP's 0.001 equals about 0.045
of this u on VOC 15-1 (set ``threshold`` accordingly to match the code rather than the paper).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from llseg.data.labels import IGNORE_INDEX
from llseg.errors import ConfigError
from llseg.methods.recipe import Stage, TeacherOutputs
from llseg.methods.recipes.mib import ExpandingOptions, ExpandingRecipe
from llseg.methods.registry import register_recipe
from llseg.models import ExpandingClassifierModel, FeatureModel

POD_SCALES = (1, 2, 4)
# forward_features maps distilled with pod_factor; the low-resolution logits use pod_logits_factor.
POD_FEATURES = ("layer1", "layer2", "layer3", "layer4", "aspp")
ENTROPY_BINS = 100  # histogram resolution of the per-class median entropy


def local_pod_embedding(x: torch.Tensor, scales: Sequence[int] = POD_SCALES) -> torch.Tensor:
    """Local POD embedding Φ(x) of N×C×H×W maps -> N×D (x is used as given; PLOP squares it first).

    For each scale s the map is cut into s×s regions; every region contributes its width-pooled
    means (one per row and channel) and its height-pooled means (one per column and channel).
    Over all regions these are the means over s column blocks (C·H·s values) and over s row
    blocks (C·s·W values), concatenated per scale, so D = Σ_s C·s·(H + W). Block bounds are
    adaptive pooling's (⌊iH/s⌋, ⌈(i+1)H/s⌉), exact regions when s divides H and W.
    """
    n, _, h, w = x.shape
    x = x.float()
    parts = []
    for s in scales:
        parts.append(F.adaptive_avg_pool2d(x, (h, s)).reshape(n, -1))  # width-pooled per column block
        parts.append(F.adaptive_avg_pool2d(x, (s, w)).reshape(n, -1))  # height-pooled per row block
    return torch.cat(parts, dim=1)


def pod_distance(new: torch.Tensor, old: torch.Tensor, scales: Sequence[int] = POD_SCALES) -> torch.Tensor:
    """E_batch ‖Φ(x_new²) − Φ(x_old²)‖₂ for two N×C×H×W maps (a scalar)."""
    diff = local_pod_embedding(new.float().pow(2), scales) - local_pod_embedding(old.float().pow(2), scales)
    return diff.norm(dim=1).mean()


def sum_extra_channels(logits: torch.Tensor, old_channels: int) -> torch.Tensor:
    """N×C×h×w student logits -> N×old×h×w: the new channels' logits are added to the background's."""
    background = logits[:, :1] + logits[:, old_channels:].sum(1, keepdim=True)
    return torch.cat([background, logits[:, 1:old_channels]], dim=1)


def pod_loss(
    new: Sequence[torch.Tensor],
    old: Sequence[torch.Tensor],
    factors: Sequence[float],
    *,
    channels: int,
    new_channels: int,
) -> torch.Tensor:
    """PLOP's local POD: (1/L) Σ_l λ_l · sqrt(|C_1:t| / |C_t|) · :func:`pod_distance` (x_l^t, x_l^{t-1}).

    Args:
        new, old: the L student and teacher maps, pairwise of equal shape (reduce the student's
            logits with :func:`sum_extra_channels` first).
        factors: λ_l per map (PLOP: 0.01 for features, 0.0005 for the logits).
        channels, new_channels: |C_1:t| (all classes, background included) and |C_t|.
    """
    if not len(new) == len(old) == len(factors):
        raise ValueError(f"{len(new)} student maps, {len(old)} teacher maps, {len(factors)} factors")
    terms = [f * pod_distance(a, b) for a, b, f in zip(new, old, factors) if f > 0]
    total = torch.stack(terms).sum() if terms else new[0].new_zeros((), dtype=torch.float32)
    return math.sqrt(channels / new_channels) * total / len(new)


def normalized_entropy(logits: torch.Tensor) -> torch.Tensor:
    """u = H(softmax(logits)) / log C ∈ [0, 1] per pixel: N×C×H×W -> N×H×W (0 when C = 1)."""
    log_p = torch.log_softmax(logits.float(), dim=1)
    entropy = -(log_p.exp() * log_p).sum(1)
    return entropy / math.log(logits.shape[1]) if logits.shape[1] > 1 else torch.zeros_like(entropy)


def entropy_histogram(target: torch.Tensor, teacher_logits: torch.Tensor, bins: int = ENTROPY_BINS) -> torch.Tensor:
    """Counts (old × bins, int64) of the teacher's normalised entropy u on the pixels it knows
    (``target`` < old: background or an old class), per predicted class ĉ = argmax; bin k holds
    u ∈ [k/bins, (k+1)/bins), u = 1 in the last bin."""
    old = teacher_logits.shape[1]
    known = target < old
    u = normalized_entropy(teacher_logits)[known]
    predicted = teacher_logits.argmax(1)[known]
    index = predicted * bins + (u * bins).long().clamp(0, bins - 1)
    return torch.bincount(index, minlength=old * bins).reshape(old, bins)


def median_thresholds(histogram: torch.Tensor, floor: float) -> torch.Tensor:
    """Per-class entropy thresholds τ_c = max(median_c, floor) from :func:`entropy_histogram`
    counts (classes × bins); the median is interpolated linearly inside its bin, and a class
    with no pixel gets ``floor``."""
    classes, bins = histogram.shape
    counts = histogram.double()
    total = counts.sum(1)
    cumulative = counts.cumsum(1)
    half = total / 2
    k = (cumulative < half[:, None]).sum(1).clamp(max=bins - 1)  # first bin reaching half
    before = torch.where(k > 0, cumulative.gather(1, (k - 1).clamp(min=0)[:, None])[:, 0], 0.0)
    inside = counts.gather(1, k[:, None])[:, 0]
    median = (k + (half - before) / inside.clamp(min=1)) / bins
    median = torch.where(total > 0, median, 0.0)
    return median.clamp(min=floor).float()


def entropy_pseudo_labels(
    target: torch.Tensor, teacher_logits: torch.Tensor, thresholds: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """PLOP's pseudo-labels and adaptive factor ν.

    A pixel the teacher knows (``target`` < old: background or an old class) takes the teacher's
    class ĉ = argmax if its normalised entropy u < τ_ĉ, else 255. ν_n = #accepted / #known pixels
    of image n (1 when the image has none).

    Args:
        target: N×H×W channel ids of the student.
        teacher_logits: N×old×H×W.
        thresholds: τ per old channel (``median_thresholds``).
    Returns:
        (labels N×H×W, ν of shape N).
    """
    known = target < teacher_logits.shape[1]
    predicted = teacher_logits.argmax(1)
    accepted = known & (normalized_entropy(teacher_logits) < thresholds.to(target.device)[predicted])
    labels = torch.where(accepted, predicted, torch.where(known, IGNORE_INDEX, target))
    n_known = known.sum((1, 2))
    nu = torch.where(n_known > 0, accepted.sum((1, 2)) / n_known.clamp(min=1), 1.0)
    return labels, nu.float()


def weighted_cross_entropy(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """(1/|I|) Σ_i ν_n(i) · CE_i over all N·H·W pixels (ignored pixels add 0); ``weight`` ν has shape N."""
    ce = F.cross_entropy(logits.float(), target, ignore_index=IGNORE_INDEX, reduction="none")
    return (weight[:, None, None] * ce).mean()


@dataclass(frozen=True)
class PlopOptions(ExpandingOptions):
    """Defaults: ``--method PLOP`` (§6; PLOP always pseudo-labels).

    Attributes:
        pod_factor, pod_logits_factor: local POD weights λ of the backbone stages and ASPP and of the
            low-resolution logits; 0 turns a term off.
        threshold: floor of the per-class median entropy thresholds.
        classif_adaptive_factor: weight each image's cross-entropy by ν, its share of background
            pixels that received a pseudo-label.
    """

    pod_factor: float = 0.01
    pod_logits_factor: float = 0.0005
    threshold: float = 0.001
    classif_adaptive_factor: bool = True

    def __post_init__(self) -> None:
        if min(self.pod_factor, self.pod_logits_factor) < 0:
            raise ConfigError("need pod_factor, pod_logits_factor >= 0")
        if not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"threshold (a normalised entropy) must be in [0, 1], got {self.threshold}")


@register_recipe("plop")
class Plop(ExpandingRecipe):
    """Entropy pseudo-labels with per-class median thresholds, CE weighted by the adaptive factor ν,
    and local POD on the backbone stages, ASPP and logits. Without a teacher (step 0, or a stage
    that adds no class) it is plain cross-entropy."""

    Options = PlopOptions
    capabilities = (ExpandingClassifierModel, FeatureModel)
    options: PlopOptions

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.thresholds: torch.Tensor | None = None

    def begin_stage(self, stage: Stage, teacher_outputs: TeacherOutputs | None) -> None:
        """Per-class thresholds from the teacher's entropy over the stage's training data."""
        super().begin_stage(stage, teacher_outputs)
        self.thresholds = None
        if teacher_outputs is not None:
            histogram: torch.Tensor | None = None
            for batch in teacher_outputs:
                counts = entropy_histogram(batch.target, batch.logits)
                histogram = counts if histogram is None else histogram + counts
            if histogram is not None:
                self.thresholds = median_thresholds(histogram, self.options.threshold)

    def loss(self, student: nn.Module, teacher: nn.Module | None, image: torch.Tensor,
             target: torch.Tensor) -> torch.Tensor:
        opts = self.options
        if teacher is None:
            logits = student(image)
            return weighted_cross_entropy(logits, target, logits.new_ones(len(logits), dtype=torch.float32))
        if self.thresholds is None:
            raise RuntimeError("begin_stage must run the teacher pass before a stage with a teacher")
        features = cast(FeatureModel, student).forward_features(image)
        with torch.no_grad():
            old = cast(FeatureModel, teacher).forward_features(image)
        target, nu = entropy_pseudo_labels(target, old["logits"], self.thresholds)
        if not opts.classif_adaptive_factor:
            nu = torch.ones_like(nu)
        loss = weighted_cross_entropy(features["logits"], target, nu)
        new_maps = [features[k] for k in POD_FEATURES]
        new_maps.append(sum_extra_channels(features["logits_lowres"], self.stage.old_classes))
        old_maps = [old[k] for k in POD_FEATURES] + [old["logits_lowres"]]
        factors = [opts.pod_factor] * len(POD_FEATURES) + [opts.pod_logits_factor]
        return loss + pod_loss(new_maps, old_maps, factors, channels=self.stage.classes,
                               new_channels=self.stage.new_classes)
