"""PLOP (Douillard et al., CVPR 2021; docs/methods.md §6): the recipe and its components.

Channel layout as in :mod:`llseg.methods.mib`: channel 0 is the background, channels
``0 .. old-1`` the classes the previous (teacher) model knows, ``old .. C-1`` the current step's.
Targets are N×H×W channel ids, 255 = ignore.

Two modes (option ``mode``, docs/methods.md §6.2; measured against the authors' code by
``benchmarks/parity.py``, results in ``benchmarks/PARITY.md``):

- ``corrected`` (default): the paper's definitions. Entropy u = H(q)/log|C_old| ∈ [0, 1]; the
  per-class median is the histogram's true median; ν = 1 for an image with no background pixel;
  POD reads the post-ReLU stage outputs and pools adaptive regions (any map size).
- ``released``: what ``arthurdouillard/CVPR2021_PLOP`` computes. Entropy
  u_code = u / (|C_old| · log|C_1:t|) (mean instead of sum over channels, a second division by
  the log of all classes, 1e-8 inside the logs); the median loop adds the bin *index* instead of
  its count to the running sum (:func:`released_median_thresholds`); ν = #accepted /
  (#background + 1e-6), so an image without background pixels gets ν = 0 (its loss vanishes); POD
  reads each ResNet stage before the last ReLU (PLOP's ``ResidualBlock(last=True)`` returns the
  pre-activation) and the ASPP output before llseg's ASPP dropout (PLOP's head has no dropout),
  and cuts square regions of side ⌊W/s⌋ (rows beyond s·⌊W/s⌋ ignored; maps wider
  than tall are refused, the released code fails on their empty regions).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

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
# mode released: forward_features(preactivation=True) maps, the ASPP output before llseg's dropout
RELEASED_POD_FEATURES = ("layer1", "layer2", "layer3", "layer4", "aspp_before_dropout")
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


def released_local_pod_embedding(x: torch.Tensor, scales: Sequence[int] = POD_SCALES) -> torch.Tensor:
    """Φ(x) as PLOP's released code pools it: N×C×H×W -> N×D, regions of side k = ⌊W/s⌋ in both
    directions (rows from s·k on are ignored). Same values as :func:`local_pod_embedding` for
    square maps whose side every scale divides (the order of the entries differs, the norm not).

    Raises:
        ValueError: H < s·k for some scale (the released code's regions would be empty).
    """
    n, _, h, w = x.shape
    x = x.float()
    parts = []
    for s in scales:
        k = w // s
        if h < s * k or k == 0:
            raise ValueError(f"PLOP's released local POD needs maps at least as tall as wide, got {h}x{w} "
                             "(the released code fails on empty regions); use mode: corrected")
        rows = x[:, :, : s * k, : s * k].reshape(n, -1, s, k, s, k)  # n, C, i, row, j, column
        parts.append(rows.mean(5).reshape(n, -1))  # width-pooled: per region, row and channel
        parts.append(rows.mean(3).reshape(n, -1))  # height-pooled: per region, column and channel
    return torch.cat(parts, dim=1)


def pod_distance(new: torch.Tensor, old: torch.Tensor, scales: Sequence[int] = POD_SCALES, *,
                 released: bool = False) -> torch.Tensor:
    """E_batch ‖Φ(x_new²) − Φ(x_old²)‖₂ for two N×C×H×W maps (a scalar); ``released``: PLOP's
    region bounds (:func:`released_local_pod_embedding`)."""
    embed = released_local_pod_embedding if released else local_pod_embedding
    diff = embed(new.float().pow(2), scales) - embed(old.float().pow(2), scales)
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
    released: bool = False,
) -> torch.Tensor:
    """PLOP's local POD: (1/L) Σ_l λ_l · sqrt(|C_1:t| / |C_t|) · :func:`pod_distance` (x_l^t, x_l^{t-1}).

    Args:
        new, old: the L student and teacher maps, pairwise of equal shape (reduce the student's
            logits with :func:`sum_extra_channels` first).
        factors: λ_l per map (PLOP: 0.01 for features, 0.0005 for the logits).
        channels, new_channels: |C_1:t| (all classes, background included) and |C_t|.
        released: PLOP's region bounds (:func:`released_local_pod_embedding`).
    """
    if not len(new) == len(old) == len(factors):
        raise ValueError(f"{len(new)} student maps, {len(old)} teacher maps, {len(factors)} factors")
    terms = [f * pod_distance(a, b, released=released) for a, b, f in zip(new, old, factors) if f > 0]
    total = torch.stack(terms).sum() if terms else new[0].new_zeros((), dtype=torch.float32)
    return math.sqrt(channels / new_channels) * total / len(new)


def normalized_entropy(logits: torch.Tensor) -> torch.Tensor:
    """u = H(softmax(logits)) / log C ∈ [0, 1] per pixel: N×C×H×W -> N×H×W (0 when C = 1)."""
    log_p = torch.log_softmax(logits.float(), dim=1)
    entropy = -(log_p.exp() * log_p).sum(1)
    return entropy / math.log(logits.shape[1]) if logits.shape[1] > 1 else torch.zeros_like(entropy)


def released_entropy(logits: torch.Tensor, channels: int) -> torch.Tensor:
    """PLOP's released entropy score per pixel, N×C_old×H×W -> N×H×W: −(1/log C_old) ·
    mean_c p_c log(p_c + 1e-8) / log(``channels``), p = softmax(logits), ``channels`` = |C_1:t|;
    about u / (C_old · log|C_1:t|) with u of :func:`normalized_entropy`."""
    p = torch.softmax(logits.float(), dim=1)
    score = -(p * torch.log(p + 1e-8)).mean(1) / math.log(logits.shape[1] + 1e-8)
    return score / math.log(channels)


def entropy_histogram(target: torch.Tensor, teacher_logits: torch.Tensor, bins: int = ENTROPY_BINS, *,
                      channels: int | None = None) -> torch.Tensor:
    """Counts (old × bins, int64) of the teacher's normalised entropy u on the pixels it knows
    (``target`` < old: background or an old class), per predicted class ĉ = argmax; bin k holds
    u ∈ [k/bins, (k+1)/bins), u = 1 in the last bin. With ``channels`` (|C_1:t|) the score is
    :func:`released_entropy` instead of u."""
    old = teacher_logits.shape[1]
    known = target < old
    score = normalized_entropy(teacher_logits) if channels is None else released_entropy(teacher_logits, channels)
    u = score[known]
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


def released_median_thresholds(histogram: torch.Tensor, floor: float) -> torch.Tensor:
    """Per-class thresholds as PLOP's released ``find_median`` computes them from the same counts.

    Its loop walks bin k = 0, 1, …, but adds the bin's *index* int(k/bins · bins) to the running
    sum S instead of the bin's count, stops at the first k with S ≤ half ≤ S + count_k and returns
    k/bins + (half − S)/count_k/bins (0/0 = NaN and x/0 = ±inf when that count is 0; the last
    bin's values when no bin qualifies); a class with no pixel gets 0. Then τ_c = max(median_c,
    floor), where a NaN median stays NaN (Python's ``max`` keeps its first argument), so that class
    accepts no pixel. The thresholds compare with :func:`released_entropy`; the histogram's pixels
    (``target`` < old) are PLOP's (label 0), as a step's labels turn old classes into background.
    """
    classes, bins = histogram.shape
    thresholds = []
    for c in range(classes):
        counts = [int(v) for v in histogram[c]]
        total = sum(counts)
        if total <= 0:
            thresholds.append(max(0.0, floor))
            continue
        half, running, k, index = total / 2, 0.0, 0, 0
        for k in range(bins):
            index = int(k / bins * bins)  # k, or k − 1 where the float product rounds down
            if running <= half <= running + counts[index]:
                break
            running += index
        count, excess = counts[index], half - running
        # the released division of a float by an int64 tensor: 0/0 = NaN, x/0 = ±inf
        ratio = excess / count if count else (math.nan if excess == 0 else math.copysign(math.inf, excess))
        median = k / bins + ratio / bins
        thresholds.append(median if math.isnan(median) else max(median, floor))
    return torch.tensor(thresholds, dtype=torch.float32)


def entropy_pseudo_labels(
    target: torch.Tensor, teacher_logits: torch.Tensor, thresholds: torch.Tensor, *, channels: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """PLOP's pseudo-labels and adaptive factor ν.

    A pixel the teacher knows (``target`` < old: background or an old class) takes the teacher's
    class ĉ = argmax if its normalised entropy u < τ_ĉ, else 255. ν_n = #accepted / #known pixels
    of image n (1 when the image has none).

    Args:
        target: N×H×W channel ids of the student.
        teacher_logits: N×old×H×W.
        thresholds: τ per old channel (``median_thresholds``).
        channels: None for the paper's rule; |C_1:t| for PLOP's released code: the score is
            :func:`released_entropy` and ν_n = #accepted / (#known + 1e-6), i.e. 0 for an image
            with no known pixel.
    Returns:
        (labels N×H×W, ν of shape N).
    """
    known = target < teacher_logits.shape[1]
    predicted = teacher_logits.argmax(1)
    score = normalized_entropy(teacher_logits) if channels is None else released_entropy(teacher_logits, channels)
    accepted = known & (score < thresholds.to(target.device)[predicted])
    labels = torch.where(accepted, predicted, torch.where(known, IGNORE_INDEX, target))
    n_known = known.sum((1, 2))
    if channels is not None:
        return labels, (accepted.sum((1, 2)) / (n_known + 1e-6)).float()
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
        mode: ``corrected`` (the paper's definitions) or ``released`` (the authors' code, bugs
            included; the paper-settings jobs use it). See the module docstring.
    """

    pod_factor: float = 0.01
    pod_logits_factor: float = 0.0005
    threshold: float = 0.001
    classif_adaptive_factor: bool = True
    mode: Literal["corrected", "released"] = "corrected"

    def __post_init__(self) -> None:
        if self.mode not in ("corrected", "released"):
            raise ConfigError(f"mode must be 'corrected' or 'released', got {self.mode!r}")
        if min(self.pod_factor, self.pod_logits_factor) < 0:
            raise ConfigError("need pod_factor, pod_logits_factor >= 0")
        if not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"threshold (a normalised entropy) must be in [0, 1], got {self.threshold}")


@register_recipe("plop")
class Plop(ExpandingRecipe):
    """Entropy pseudo-labels with per-class median thresholds, CE weighted by the adaptive factor ν,
    and local POD on the backbone stages, ASPP and logits. Without a teacher (step 0, or a stage
    that adds no class) it is plain cross-entropy. On a domain-incremental split (§8.3) a step ≥ 1
    is cross-entropy on the complete labels + local POD, what PLOP's released
    ``scripts/cityscapesDomain/plop_*.sh`` run (``--method FT --pod local --pod_logits``: no
    pseudo-labels, no adaptive factor)."""

    Options = PlopOptions
    capabilities = (ExpandingClassifierModel, FeatureModel)
    options: PlopOptions

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.thresholds: torch.Tensor | None = None

    @classmethod
    def check_config(cls, config: Any) -> None:
        super().check_config(config)
        if config.options.mode == "released" and (config.crop_size is None or config.crop_size[0] < config.crop_size[1]):
            raise ConfigError(f"mode: released needs a crop_size at least as tall as wide (PLOP trains on 512x512 "
                              f"crops; its POD fails on wider maps), got {config.crop_size}; set crop_size: 512x512")

    domain_stages = True

    @property
    def teacher_pass(self) -> bool:
        """Thresholds for the pseudo-labels; a new domain (every pixel labelled, §8.3) needs none."""
        return not self.stage.same_classes

    def begin_stage(self, stage: Stage, teacher_outputs: TeacherOutputs | None) -> None:
        """Per-class thresholds from the teacher's entropy over the stage's training data."""
        super().begin_stage(stage, teacher_outputs)
        self.thresholds = None
        if teacher_outputs is not None and self.teacher_pass:
            histogram: torch.Tensor | None = None
            for batch in teacher_outputs:
                counts = entropy_histogram(batch.target, batch.logits, channels=self.released_channels)
                histogram = counts if histogram is None else histogram + counts
            if histogram is not None:
                median = released_median_thresholds if self.released_channels else median_thresholds
                self.thresholds = median(histogram, self.options.threshold)

    def check_model(self, model: nn.Module) -> None:
        super().check_model(model)
        if self.options.mode == "released" and not getattr(model, "preactivation_stages", False):
            raise ConfigError(f"mode: released needs a model whose backbone stages are available before their last "
                              f"ReLU (a ResNet DeepLabV3: PLOP distils those), got {self.config.model}; "
                              f"use mode: corrected")

    @property
    def released_channels(self) -> int | None:
        """|C_1:t| in ``mode: released`` (the released entropy's second divisor), else None."""
        return self.stage.classes if self.options.mode == "released" else None

    def loss(self, student: nn.Module, teacher: nn.Module | None, image: torch.Tensor,
             target: torch.Tensor) -> torch.Tensor:
        opts = self.options
        if teacher is None:
            logits = student(image)
            return weighted_cross_entropy(logits, target, logits.new_ones(len(logits), dtype=torch.float32))
        domain = self.stage.same_classes
        if self.thresholds is None and not domain:
            raise RuntimeError("begin_stage must run the teacher pass before a stage with a teacher")
        released = opts.mode == "released"
        features = cast(FeatureModel, student).forward_features(image, preactivation=released)
        with torch.no_grad():
            old = cast(FeatureModel, teacher).forward_features(image, preactivation=released)
        if domain:  # the labels are complete: no pseudo-label, ν = 1
            nu = target.new_ones(len(target), dtype=torch.float32)
        else:
            target, nu = entropy_pseudo_labels(target, old["logits"], cast(torch.Tensor, self.thresholds),
                                               channels=self.released_channels)
        if not opts.classif_adaptive_factor:
            nu = torch.ones_like(nu)
        loss = weighted_cross_entropy(features["logits"], target, nu)
        names = RELEASED_POD_FEATURES if released else POD_FEATURES
        new_maps = [features[k] for k in names]
        new_maps.append(sum_extra_channels(features["logits_lowres"], self.stage.old_classes))
        old_maps = [old[k] for k in names] + [old["logits_lowres"]]
        factors = [opts.pod_factor] * len(POD_FEATURES) + [opts.pod_logits_factor]
        # a new domain: PLOP's nb_new_classes is every class, so the factor sqrt(|C_1:t| / |C_t|) is 1
        new_channels = self.stage.classes if domain else self.stage.new_classes
        return loss + pod_loss(new_maps, old_maps, factors, channels=self.stage.classes,
                               new_channels=new_channels, released=released)
