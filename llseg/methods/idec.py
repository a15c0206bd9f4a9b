"""IDEC's loss components (Zhao, Yuan, Shi, TPAMI 2023; methods.md §3), as pure functions on tensors.

Written from the formulas in methods.md §3.1/§3.3 (no upstream code copied). LAG (§4) reuses
:func:`feature_distance` and :func:`dada_loss`; its own terms are in :mod:`llseg.methods.lag`.

Inputs
------
Feature dicts as returned by :meth:`llseg.models.deeplabv3.DeepLabV3.forward_features` of a model
built with ``aspp_taps=True``: ``student`` from the current model (step t), ``teacher`` from the
frozen model of step t−1. Keys used here (the released code's names in brackets):

* ``"aspp_layer1"`` [feature_l1] N×256×H/4×W/4, ``"aspp_layer2"`` [feature_l2] N×256×H/8×W/8,
  ``"aspp_layer3"`` [feature_l3] N×256×h×w, ``"aspp"`` [feature_out] N×256×h×w (h = H/s, s = output
  stride);
* ``teacher["logits_lowres"]`` N×C_old×h×w (ARCL's class regions, and C_old).

Logit channels follow :mod:`llseg.methods.ssul` (with ``unknown``: 0 = unknown, 1 = background).
Features may be fp16 (AMP); every loss is computed in float32.

Contract for the learner integration (shared with :mod:`llseg.methods.lag`)
-------------------------------------------------------------------------
* The totals (:func:`idec_loss`, :func:`llseg.methods.lag.lag_loss`) return a dict of scalar terms
  whose ``"total"`` is an *auxiliary* loss: ``loss = bce_with_ignore(logits, ỹ) + out["total"]``
  with ỹ SSUL's pseudo-labels (or :func:`llseg.methods.lag.uncertainty_pseudo_label` for LAG).
* Every term depends on the student only through its *features*, never through the classifier
  heads; teacher tensors are detached inside. What the terms train is therefore decided only by
  which modules upstream of the features (backbone, ``aspp``, ``aspp_taps``) are trainable:

  - ``kd_on_frozen: true`` reproduces the released code. SSUL's ``freeze``/``bn_freeze`` keep the
    body frozen (and loaded from the old checkpoint), so the student's features carry no graph,
    ``out["total"].requires_grad`` is False and the terms add **nothing** to any gradient
    (methods.md §3.3 caveat): the run is SSUL with IDEC's hyperparameters. Add the total to the
    BCE anyway (its value is worth logging), but never ``backward()`` it alone, it has no graph
    (the released code called ``requires_grad_(True)`` on it to silence exactly that error).
  - ``kd_on_frozen: false`` (llseg's default) applies the paper's losses: the learner keeps the
    body trainable (backbone, main ASPP and the three tap ASPPs, at a low learning rate; BN stays
    frozen with ``bn_freeze``), so the terms regularise the body while the heads learn from the
    BCE; with ``bce_on_body: false`` (default) the BCE sees detached features, so only these
    terms move the body. The heads receive no gradient from these terms in either mode.
* Teacher features: compute them under ``torch.no_grad()`` on the same batch.
* ``epoch`` is **1-based** (1..``epochs``): the released loop increments its epoch counter before
  the first batch of each epoch, so the decay λ^(e/E) runs from λ^(1/E) to λ.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import torch
import torch.nn.functional as F

# The flags of IDEC's published VOC command (`0dbd813:run.sh`, methods.md §3.1; llseg names for
# SSUL's flags as in ``SSUL_VOC_FLAGS``): 30 epochs, batch 12, lr 0.01, poly, amp, mem_size 0.
IDEC_VOC_FLAGS = {"loss_type": "bce", "unknown": True, "pseudo": True, "pseudo_thresh": 0.6, "freeze": True,
                  "bn_freeze": True, "w_transfer": True, "KD_loss_type": "KD_loss", "use_KD_layer_weight": True,
                  "lamb": 1.0, "contrastive_learning": False}

KD_LOSS_TYPES = ("KD_loss", "KLDiv_loss", "L1_loss", "L2_loss")
KD_ALPHA = 2.0  # teacher sharpening of the MiB-style KD_loss
DADA_TAPS = ("aspp_layer1", "aspp_layer2", "aspp_layer3", "aspp")
KD_LAYER_WEIGHTS = {"aspp_layer1": 0.5, "aspp_layer2": 1.0, "aspp_layer3": 2.0, "aspp": 1.0}
DECAYED_TAPS = ("aspp_layer1", "aspp_layer2", "aspp_layer3")  # × λ^(e/E); the main ASPP term is not decayed
ARCL_MARGIN = 1.0
_EPS = 1e-12  # under the square root of a squared distance: keeps the gradient finite at distance 0

KDLossType = Literal["KD_loss", "KLDiv_loss", "L1_loss", "L2_loss"]
ArclEmbedding = Literal["mean", "masked"]


def feature_distance(
    student: torch.Tensor, teacher: torch.Tensor, KD_loss_type: KDLossType, *, alpha: float = KD_ALPHA
) -> torch.Tensor:
    """Distance D(a, b) between student features a and (detached) teacher features b, N×C×h×w each.

    * ``KD_loss`` (MiB-style): −(1/C) Σ_c softmax(α b)_c · log softmax(a)_c per pixel, softmax over
      the C channels, α = 2, averaged over the N·h·w pixels. This is a cross-entropy, not a
      divergence: it is **not 0 for a = b** and its minimum in a is not at a = b (a matches the
      sharpened teacher).
    * ``KLDiv_loss``: KL(softmax(b) ‖ softmax(a)) over channels per pixel, averaged over pixels.
      The released code applies PyTorch ``KLDivLoss`` to the *raw* features, i.e.
      mean(b · (log b − a)) over all elements: no softmax on either side, not 0 for a = b, negative
      for some inputs and linear in a. llseg uses the channel-softmax KL instead (0 iff a = b up to
      a per-pixel constant).
    * ``L1_loss``: mean |a − b| over all elements (as PyTorch ``L1Loss``).
    * ``L2_loss``: mean (a − b)² over all elements. The released code's ``L2_loss`` is
      ``BCELoss`` despite its name (which also needs features in [0, 1]); llseg implements a true
      L2 (mean squared error).
    """
    a = student.float()
    b = teacher.detach().float()
    if KD_loss_type == "KD_loss":
        return -(F.softmax(alpha * b, dim=1) * F.log_softmax(a, dim=1)).mean(1).mean()
    if KD_loss_type == "KLDiv_loss":
        log_p, log_q = F.log_softmax(b, dim=1), F.log_softmax(a, dim=1)
        return (log_p.exp() * (log_p - log_q)).sum(1).mean()
    if KD_loss_type == "L1_loss":
        return (a - b).abs().mean()
    if KD_loss_type == "L2_loss":
        return (a - b).pow(2).mean()
    raise ValueError(f"KD_loss_type must be one of {KD_LOSS_TYPES}, got {KD_loss_type!r}")


def layer_decay(lamb: float, epoch: int, epochs: int) -> float:
    """λ^(e/E), the decay of the tap terms under ``use_KD_layer_weight`` (``epoch`` 1-based)."""
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    return float(lamb) ** (epoch / epochs)


def dada_terms(
    student: Mapping[str, torch.Tensor], teacher: Mapping[str, torch.Tensor], KD_loss_type: KDLossType
) -> dict[str, torch.Tensor]:
    """D(F^t_l, F^{t−1}_l) for each tap l in :data:`DADA_TAPS` (unweighted)."""
    missing = [k for k in DADA_TAPS if k not in student or k not in teacher]
    if missing:
        raise KeyError(f"feature-KD taps {missing} missing: build the model with aspp_taps=True")
    return {k: feature_distance(student[k], teacher[k], KD_loss_type) for k in DADA_TAPS}


def dada_loss(
    student: Mapping[str, torch.Tensor],
    teacher: Mapping[str, torch.Tensor],
    *,
    KD_loss_type: KDLossType,
    use_KD_layer_weight: bool,
    lamb: float,
    epoch: int,
    epochs: int,
) -> torch.Tensor:
    """IDEC's dense feature distillation over the four ASPP outputs (methods.md §3.3):

    with ``use_KD_layer_weight``: L = λ^(e/E) · (0.5 D_l1 + 1.0 D_l2 + 2.0 D_l3) + 1.0 D_out,
    without: L = D_l1 + D_l2 + D_l3 + D_out (no decay).

    D = :func:`feature_distance` (``KD_loss_type``), l1..l3 = ``aspp_layer1..3``, out = ``aspp``,
    λ = ``lamb``, e = ``epoch`` (1-based), E = ``epochs``. The released code's unweighted branch
    overwrites the l2 term with the l3 one (so it sums l1 + 2·l3 + out); llseg does not reproduce
    that copy-paste bug. One LAG v1 ``run.py`` also decays the ``out`` term; IDEC's and
    methods.md's form (used here) does not. (LAG's dev logs used λ = 1, where both agree.)
    """
    terms = dada_terms(student, teacher, KD_loss_type)
    if not use_KD_layer_weight:
        return terms["aspp_layer1"] + terms["aspp_layer2"] + terms["aspp_layer3"] + terms["aspp"]
    decay = layer_decay(lamb, epoch, epochs)
    total = KD_LAYER_WEIGHTS["aspp"] * terms["aspp"]
    for k in DECAYED_TAPS:
        total = total + decay * KD_LAYER_WEIGHTS[k] * terms[k]
    return total


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
    """ARCL, IDEC's asymmetric region-wise contrastive (triplet) loss (methods.md §3.3).

    For every image n and every class k ∈ ``classes`` whose old-model region R_{n,k} =
    {i : regions[n, i] = k} is non-empty: anchor a = old-model (teacher, detached) embedding on
    R_{n,k}, positive p = new-model embedding on R_{n,k}, negative q = new-model embedding outside
    R_{n,k}; L = mean over those (n, k) of max(0, ‖a − p‖₂ − ‖a − q‖₂ + margin). 0 if there is none.

    ``embedding``:

    * ``"mean"`` (default, llseg's choice): region-averaged C-vectors (masked mean over the
      pixels); a region that covers the whole image has no negative and is skipped.
    * ``"masked"``: methods.md's description of the coded form, the masked feature maps flattened
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
    """IDEC's auxiliary loss: total = λ_kd · DADA [+ λ_arcl · ARCL] (methods.md §3.3, "as coded":
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
