"""IDEC (Zhao, Yuan, Shi, TPAMI 2023; docs/methods.md §3): SSUL + dense feature distillation (DADA)
on the four ASPP outputs, optionally ARCL (a region triplet loss on the ASPP output).

Written from the formulas of docs/methods.md §3.1/§3.3 (no upstream code copied). Inputs and the
frozen/trainable contract: :mod:`llseg.methods.recipes.feature_kd`. Logit channels with
``unknown``: 0 = unknown, 1 = background.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from llseg.methods.recipes.feature_kd import FeatureKd, FeatureKdOptions, KDLossType, dada_loss
from llseg.methods.registry import register_recipe

ARCL_MARGIN = 1.0
_EPS = 1e-12  # under the square root of a squared distance: keeps the gradient finite at distance 0
ArclEmbedding = Literal["mean", "masked"]


def _distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Euclidean distance over the last dim (square root of the clamped squared distance)."""
    return (x - y).pow(2).sum(-1).clamp_min(_EPS).sqrt()


def arcl_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    regions: torch.Tensor,
    classes: Sequence[int],
    *,
    margin: float = ARCL_MARGIN,
    embedding: ArclEmbedding = "mean",
) -> torch.Tensor:
    """ARCL, IDEC's asymmetric region-wise contrastive (triplet) loss (docs/methods.md §3.3).

    For every image n and every class k ∈ ``classes`` whose old-model region R_{n,k} =
    {i : regions[n, i] = k} is non-empty: anchor a = old-model (teacher, detached) embedding on
    R_{n,k}, positive p = new-model embedding on R_{n,k}, negative q = new-model embedding outside
    R_{n,k}; L = mean over those (n, k) of max(0, ‖a − p‖₂ − ‖a − q‖₂ + margin). 0 if there is none.

    ``embedding``:

    * ``"mean"`` (default, llseg's choice): region-averaged C-vectors (masked mean over the
      pixels); a region that covers the whole image has no negative and is skipped.
    * ``"masked"``: docs/methods.md's description of the coded form, the masked feature maps flattened
      to C·h·w vectors (a = F^{t−1}·M, p = F^t·M, q = F^t·(1 − M)), so
      ‖a − p‖² = Σ_{i∈R} ‖F^{t−1}_i − F^t_i‖² and ‖a − q‖² = Σ_{i∈R} ‖F^{t−1}_i‖² + Σ_{i∉R} ‖F^t_i‖².
      Distances then grow with the region size and the unit margin loses its meaning, hence not
      the default.

    The released ``class_contrastive_learning`` is only loosely this: one image, random classes, a
    mask that is never reset, and the first 256 positive values of each masked map; llseg uses every
    (image, class) pair.

    Args:
        student, teacher: N×C×h×w features at the same resolution (IDEC: ``"aspp"``).
        regions: N×h×w long, the old model's predicted channel per pixel (e.g.
            ``teacher["logits_lowres"].argmax(1)``).
        classes: channels whose regions give anchors (IDEC: the old foreground channels).
    """
    s = student.float()
    t = teacher.detach().float()
    zero = s.sum() * 0.0
    if not len(classes):
        return zero
    masks = torch.stack([regions == k for k in classes], dim=1).to(s.dtype)  # N×K×h×w
    inside = masks.sum((2, 3))  # N×K
    outside = masks.shape[2] * masks.shape[3] - inside
    if embedding == "mean":
        valid = (inside > 0) & (outside > 0)
        anchor = torch.einsum("nkhw,nchw->nkc", masks, t) / inside.clamp_min(1)[..., None]
        positive = torch.einsum("nkhw,nchw->nkc", masks, s) / inside.clamp_min(1)[..., None]
        negative = torch.einsum("nkhw,nchw->nkc", 1 - masks, s) / outside.clamp_min(1)[..., None]
        d_pos, d_neg = _distance(anchor, positive), _distance(anchor, negative)
    elif embedding == "masked":
        valid = inside > 0
        sq_pos = torch.einsum("nkhw,nhw->nk", masks, (t - s).pow(2).sum(1))
        sq_neg = torch.einsum("nkhw,nhw->nk", masks, t.pow(2).sum(1)) + torch.einsum(
            "nkhw,nhw->nk", 1 - masks, s.pow(2).sum(1))
        d_pos, d_neg = sq_pos.clamp_min(_EPS).sqrt(), sq_neg.clamp_min(_EPS).sqrt()
    else:
        raise ValueError(f"embedding must be 'mean' or 'masked', got {embedding!r}")
    if not valid.any():
        return zero
    return F.relu(d_pos - d_neg + margin)[valid].mean()


def old_foreground(num_old_channels: int, *, unknown: bool) -> list[int]:
    """The old model's foreground channels: after unknown (0) and background (1), or after background (0)."""
    return list(range(2 if unknown else 1, num_old_channels))


def idec_loss(
    student: Mapping[str, torch.Tensor],
    teacher: Mapping[str, torch.Tensor],
    *,
    epoch: int,
    epochs: int,
    KD_loss_type: KDLossType = "KD_loss",
    use_KD_layer_weight: bool = True,
    lamb: float = 1.0,
    contrastive_learning: bool = False,
    unknown: bool = True,
    lambda_kd: float = 1.0,
    lambda_arcl: float = 1.0,
    arcl_embedding: ArclEmbedding = "mean",
) -> dict[str, torch.Tensor]:
    """IDEC's auxiliary loss: total = λ_kd · DADA [+ λ_arcl · ARCL] (docs/methods.md §3.3, "as coded":
    both weights 1; the BCE is added by the caller, see the module docstring).

    Args:
        student, teacher: ``forward_features`` dicts (taps ``aspp_layer1..3``, ``aspp``; the
            teacher's ``logits_lowres`` for ARCL).
        epoch, epochs: 1-based current epoch e and ``train_epoch`` E of the λ^(e/E) decay.
        KD_loss_type, use_KD_layer_weight, lamb: as :func:`dada_loss`.
        contrastive_learning: add ARCL on ``aspp``, anchors on the teacher's predicted regions of
            the old foreground channels (:func:`old_foreground`).
        unknown: the channel layout has SSUL's unknown channel 0.
    Returns:
        ``{"dada", "total"}`` plus ``"arcl"`` with ``contrastive_learning``; scalars.
    """
    dada = dada_loss(student, teacher, KD_loss_type=KD_loss_type, use_KD_layer_weight=use_KD_layer_weight,
                     lamb=lamb, epoch=epoch, epochs=epochs)
    out = {"dada": dada}
    total = lambda_kd * dada
    if contrastive_learning:
        old_logits = teacher["logits_lowres"]
        arcl = arcl_loss(student["aspp"], teacher["aspp"], old_logits.argmax(1),
                         old_foreground(old_logits.shape[1], unknown=unknown), embedding=arcl_embedding)
        out["arcl"] = arcl
        total = total + lambda_arcl * arcl
    out["total"] = total
    return out


@dataclass(frozen=True)
class IdecOptions(FeatureKdOptions):
    """Defaults: IDEC's published VOC command (§3.1): SSUL's with ``pseudo_thresh`` 0.6.

    Attributes:
        contrastive_learning: add ARCL on the ASPP output (off in the released commands).
        lambda_arcl: its weight.
    """

    pseudo_thresh: float = 0.6
    contrastive_learning: bool = False
    lambda_arcl: float = 1.0

    def dependent_flags(self) -> tuple[tuple[str, str, str], ...]:
        return (("lambda_arcl", "contrastive_learning", "lambda_arcl weights ARCL"),)


@register_recipe("idec")
class Idec(FeatureKd):
    """SSUL + DADA (feature KD on the four ASPP outputs, λ^(e/E) decay of the tap terms) [+ ARCL]."""

    Options = IdecOptions
    options: IdecOptions

    def auxiliary(self, features: dict[str, torch.Tensor], old: dict[str, torch.Tensor],
                  target: torch.Tensor) -> dict[str, torch.Tensor]:
        o = self.options
        return idec_loss(features, old, epoch=self.epoch, epochs=self.epochs, KD_loss_type=o.KD_loss_type,
                         use_KD_layer_weight=o.use_KD_layer_weight, lamb=o.lamb,
                         contrastive_learning=o.contrastive_learning, unknown=o.unknown,
                         lambda_kd=o.lambda_kd, lambda_arcl=o.lambda_arcl)
