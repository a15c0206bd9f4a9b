"""LAG (Yuan, Zhao, Shi, TPAMI 2024; docs/methods.md §4): SSUL + feature distillation and
semantic-invariance terms, the recipe and its losses as pure functions.

docs/methods.md §4.2 is a **reconstruction** (the paper's full text was not available) and the
released code implements little of it (SPM/NSC are stubs, SFP is the DCL term); every form below
is llseg's choice where the docs say "[reconstructed]" or "[unverified]", stated in each docstring.
Inputs, channel layout and the frozen/trainable contract (``kd_on_frozen``) are those of
:mod:`llseg.methods.recipes.feature_kd`; LAG uses the ``"aspp"`` features (N×256×h×w, the semantic
feature map E) and, for its feature KD, the four taps.

The recipe: pseudo-labels by :func:`uncertainty_pseudo_label` when ``uncertainty_pseudo`` is set;
per batch ``loss = bce(logits, ỹ) + lag_loss(...)["total"]``; "solid" old prototypes accumulated
once per stage from the teacher over the stage's pseudo-labelled training data
(:func:`prototype_sums`) and passed to every :func:`lag_loss` call of the stage.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from llseg.data.labels import IGNORE_INDEX
from llseg.errors import ConfigError
from llseg.methods.losses import probabilities
from llseg.methods.recipe import Stage, TeacherOutputs
from llseg.methods.recipes.feature_kd import FeatureKd, FeatureKdOptions, KDLossType, dada_loss, pseudo_label
from llseg.methods.registry import register_recipe

RHO = 0.5  # llseg's default share of semantic-invariant channels (the released code's 1.0 leaves SFP empty)
LAMBDA_NSC = 0.1  # llseg's default NSC weight (docs/methods.md, Deviations)

DCL_TEMPERATURE = 0.5  # utils/loss.py DCL(temperature=0.5)
PROTO_TEMPERATURE = 0.1  # llseg choice for the SPM prototype-contrastive softmax
ZERO_NORM = 1e-6  # SPM skips pixels whose SI feature norm is at most this (no direction to match)
UNCERTAINTY_MARGIN = 0.2  # llseg choice: minimum top-2 margin p(1) − p(2) of an accepted pseudo-label


def uncertainty_pseudo_label(
    target: torch.Tensor,
    teacher_logits: torch.Tensor,
    *,
    loss_type: str,
    threshold: float,
    margin: float = UNCERTAINTY_MARGIN,
    unknown: bool,
) -> torch.Tensor:
    """LAG's uncertainty-aware pseudo-labels (docs/methods.md §4.2 item 5): SSUL's rule
    (:func:`llseg.methods.recipes.ssul.pseudo_label`, p_(1) ≥ τ on background/unknown pixels, old foreground
    ĉ) **and** the top-2 margin m = p_(1) − p_(2) ≥ ``margin``, p = sigmoid/softmax over all old
    channels (unknown and background included).

    The released code instead requires (1 − m) · ĉ > const (ĉ = the class *index*), which makes
    acceptance depend on the class id and favours *uncertain* pixels; llseg does not reproduce
    that bug and exposes the margin threshold instead ([unverified] default 0.2).

    Args:
        target: N×H×W channel ids of the student (255 ignored).
        teacher_logits: N×C_old×H×W of the frozen previous model.
    """
    labelled = pseudo_label(target, teacher_logits, loss_type=loss_type, threshold=threshold, unknown=unknown)
    probs = probabilities(teacher_logits, loss_type)
    if probs.shape[1] < 2:
        return labelled
    top2 = probs.topk(2, dim=1).values
    uncertain = top2[:, 0] - top2[:, 1] < margin
    return torch.where((labelled != target) & uncertain, target, labelled)


def downsample_labels(target: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour N×H×W -> N×h×w label map (ids and 255 kept exactly)."""
    if tuple(target.shape[-2:]) == tuple(size):
        return target
    return F.interpolate(target[:, None].float(), size=tuple(size), mode="nearest")[:, 0].long()


def channel_stability(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Per-channel drift d_c = mean_n KL(P^{t−1}_{n,c} ‖ P^t_{n,c}), P = softmax of the channel's map
    over the h·w positions (docs/methods.md §4.2 item 1: "a KL divergence per channel"; the direction
    old ‖ new and the spatial softmax are llseg's reading). No gradient (it only ranks channels).

    Args:
        student, teacher: N×C×h×w (LAG: ``"aspp"``). Returns: C (0 for identical maps).
    """
    with torch.no_grad():
        log_q = F.log_softmax(student.detach().float().flatten(2), dim=2)
        log_p = F.log_softmax(teacher.detach().float().flatten(2), dim=2)
        return (log_p.exp() * (log_p - log_q)).sum(2).mean(0)


def split_channels(stability: torch.Tensor, rho: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Semantic-invariant / sample-specific split: the ⌊ρ·C⌋ channels with the smallest drift
    (ties: lower channel index first) are SI, the rest SS. Returns both index sets sorted
    ascending (long tensors; ρ = 1: SS empty, ρ = 0: SI empty)."""
    if not 0.0 <= rho <= 1.0:
        raise ValueError(f"rho must be in [0, 1], got {rho}")
    c = stability.numel()
    n_si = min(c, int(math.floor(rho * c + 1e-6)))
    order = torch.sort(stability, stable=True).indices
    return order[:n_si].sort().values, order[n_si:].sort().values


def prototype_sums(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class feature sums and pixel counts, for prototypes p_k = Σ_i [y_i = k] F_i / Σ_i [y_i = k].

    Args:
        features: N×C×h×w; labels: N×h×w ids (255 and ids ≥ ``num_classes`` ignored).
    Returns:
        sums K×C (float32) and counts K (float32), K = ``num_classes``; accumulate over batches.
    """
    valid = (labels >= 0) & (labels < num_classes)
    one_hot = F.one_hot(torch.where(valid, labels, num_classes), num_classes + 1)[..., :num_classes].float()
    sums = torch.einsum("nhwk,nchw->kc", one_hot, features.float())
    return sums, one_hot.sum((0, 1, 2))


def class_prototypes(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Class prototypes K×C (masked means; 0 where absent) and the presence mask K (bool)."""
    sums, counts = prototype_sums(features, labels, num_classes)
    return sums / counts.clamp_min(1)[:, None], counts > 0


def spm_loss(
    student_si: torch.Tensor,
    labels: torch.Tensor,
    anchors: torch.Tensor,
    valid: torch.Tensor,
    *,
    temperature: float = PROTO_TEMPERATURE,
) -> torch.Tensor:
    """SPM, semantic prototype matching as a pixel-to-prototype contrastive loss ([reconstructed];
    docs/methods.md §4.2 item 2 names aggregation and separation forces, the form is llseg's):

    L = mean_{i∈Ω} −log [ exp(cos(f_i, A_{y_i})/τ) / Σ_{k∈V} exp(cos(f_i, A_k)/τ) ],

    f_i = the student's SI feature at pixel i, A_k = the (detached) anchor prototype of class k,
    V = {k : valid[k]}, Ω = labelled pixels whose class is in V and whose SI feature is not zero
    (after the ASPP's ReLU a pixel can have none: it has no direction, and normalising it would give
    a gradient of 1/eps, which made LAG diverge). The numerator is the aggregation force (pixel → own
    prototype), the denominator the separation force (away from every other class's prototype).
    0 if Ω is empty or the SI part has no channel.

    Args:
        student_si: N×S×h×w; labels: N×h×w (255 ignored); anchors: K×S; valid: K bool.
    """
    s = student_si.float()
    zero = s.sum() * 0.0
    k = anchors.shape[0]
    in_range = (labels >= 0) & (labels < k)
    pixels = in_range & valid[torch.where(in_range, labels, 0)]
    if s.shape[1] == 0 or not pixels.any():
        return zero
    column = torch.cumsum(valid.long(), 0) - 1  # class id -> column among the valid anchors
    f = s.permute(0, 2, 3, 1)[pixels]  # P×S
    norm = f.norm(dim=1)
    live = norm > ZERO_NORM
    if not live.any():
        return zero
    f = f[live] / norm[live, None]
    a = F.normalize(anchors[valid].detach().float(), dim=1)  # V×S
    return F.cross_entropy(f @ a.T / temperature, column[labels[pixels]][live])


def _region_means(features: torch.Tensor, labels: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image masked means N×K×C over the regions of ``ids`` and the counts N×K."""
    masks = (labels[:, None] == ids[None, :, None, None]).float()  # N×K×h×w
    counts = masks.sum((2, 3))
    means = torch.einsum("nkhw,nchw->nkc", masks, features) / counts.clamp_min(1)[..., None]
    return means, counts


def sfp_loss(student_ss: torch.Tensor, teacher_ss: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """SFP, sample-specific feature preserving ([reconstructed]; docs/methods.md §4.2 item 3), an
    asymmetric L2 distillation of the SS part at two granularities:

    L = mean_{n,c} (ḡ^t_{n,c} − ḡ^{t−1}_{n,c})² + mean_{(n,k)∈P} mean_c (q^t_{n,k,c} − q^{t−1}_{n,k,c})²,

    ḡ = image-pooled (global average) SS features, q_{n,k} = SS features averaged over image n's
    pixels labelled k, P = (image, class) pairs present in ``labels`` (255 ignored; the class term
    is 0 if P is empty). Teacher detached. 0 if the SS part has no channel (ρ = 1).

    Args:
        student_ss, teacher_ss: N×S×h×w; labels: N×h×w.
    """
    s = student_ss.float()
    t = teacher_ss.detach().float()
    zero = s.sum() * 0.0
    if s.shape[1] == 0:
        return zero
    global_term = (s.mean((2, 3)) - t.mean((2, 3))).pow(2).mean()
    ids = torch.unique(labels[labels != IGNORE_INDEX])
    if ids.numel() == 0:
        return global_term
    q_s, counts = _region_means(s, labels, ids)
    q_t, _ = _region_means(t, labels, ids)
    return global_term + (q_s - q_t).pow(2).mean(-1)[counts > 0].mean()


def dcl_loss(student: torch.Tensor, teacher: torch.Tensor, *, temperature: float = DCL_TEMPERATURE) -> torch.Tensor:
    """Decoupled contrastive loss (Yeh et al. 2022; LAG ``--feature_decoupling``, τ = 0.5) between
    the flattened features of the current and the old model.

    z_n = F^t_n / ‖F^t_n‖, z'_n = F^{t−1}_n / ‖F^{t−1}_n‖ (each image's N×C×h×w map flattened),
    s(u, v) = u·v / τ:

    L = mean_n [ −s(z_n, z'_n) + log Σ_{m≠n} (exp s(z_n, z_m) + exp s(z_n, z'_m)) ].

    The positive is the same image's old features and is *not* in the denominator (the
    "decoupling"); negatives are the other images of the batch, from both models. One direction
    only (student anchors; the teacher is detached). Batch of 1: there is no negative, the
    log-sum-exp over the empty set is dropped and L = −s(z_1, z'_1) (pure alignment); batch 0: 0.
    """
    n = student.shape[0]
    if n == 0:
        return student.float().sum() * 0.0
    z = F.normalize(student.float().flatten(1), dim=1)
    z_old = F.normalize(teacher.detach().float().flatten(1), dim=1)
    positive = (z * z_old).sum(1) / temperature
    if n == 1:
        return -positive.mean()
    self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
    negatives = torch.cat([(z @ z.T / temperature).masked_fill(self_mask, -math.inf),
                           (z @ z_old.T / temperature).masked_fill(self_mask, -math.inf)], dim=1)
    return (-positive + torch.logsumexp(negatives, dim=1)).mean()


def class_relevance(features: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """Class relevance maps R_k(i) = ⟨d̂_k, F(i)⟩ with unit class directions d̂_k = d_k / ‖d_k‖.

    This is gradient × input of the linear prototype scorer s_k(F_i) = ⟨d̂_k, F_i⟩ summed over the
    channels (for a linear scorer gradient × input and LRP-0 coincide).

    Args:
        features: N×C×h×w; directions: K×C (detached). Returns: N×K×h×w.
    """
    d = F.normalize(directions.detach().float(), dim=1)
    return torch.einsum("kc,nchw->nkhw", d, features.float())


def nsc_loss(student: torch.Tensor, teacher: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """NSC, neuron-relevant semantic consistency (docs/methods.md §4.2 item 4; the blog's Euclidean
    constraint ‖R^t − R^{t−1}‖²), averaged: L = mean_{n,k,i} (R^t_k(i) − R^{t−1}_k(i))² with R from
    :func:`class_relevance` on the student's and the (detached) teacher's features and the old
    classes' prototypes as directions. 0 without directions (K = 0).

    LRP is replaced: a real LRP map needs per-layer propagation rules through backbone, ASPP and
    head and one relevance pass per class in every training step, and the released code has LRP
    only as visualisation utilities (``utils/lrp.py``, ``captum_vis.py``), not as a loss. The
    prototype relevance keeps the idea (old-class evidence per location must stay where it was)
    at the cost of one einsum.
    """
    s = student.float()
    if directions.shape[0] == 0:
        return s.sum() * 0.0
    return (class_relevance(s, directions) - class_relevance(teacher.detach(), directions)).pow(2).mean()


def lag_loss(
    student: Mapping[str, torch.Tensor],
    teacher: Mapping[str, torch.Tensor],
    target: torch.Tensor,
    *,
    epoch: int,
    epochs: int,
    KD_loss_type: KDLossType = "KD_loss",
    use_KD_layer_weight: bool = True,
    lamb: float = 1.0,
    feature_decoupling: bool = True,
    rho: float = RHO,
    lambda_kd: float = 1.0,
    lambda_dcl: float = 1.0,
    lambda_spm: float = 1.0,
    lambda_sfp: float = 1.0,
    lambda_nsc: float = LAMBDA_NSC,
    old_prototypes: tuple[torch.Tensor, torch.Tensor] | None = None,
    proto_temperature: float = PROTO_TEMPERATURE,
    dcl_temperature: float = DCL_TEMPERATURE,
) -> dict[str, torch.Tensor]:
    """LAG's auxiliary loss (docs/methods.md §4.2, total reconstructed; λ's [unverified], default 1):

    total = λ_kd · DADA + λ_dcl · DCL [feature_decoupling] + λ1 · SPM + λ2 · SFP + λ3 · NSC.

    DADA = :func:`llseg.methods.recipes.feature_kd.dada_loss` on the four taps (the released code's KD sum, to
    which ``feature_decoupling`` adds DCL on ``aspp``). The semantic terms work on E = ``"aspp"``:

    1. split: :func:`channel_stability` of E^t vs E^{t−1}, :func:`split_channels` with ``rho``;
    2. labels: ``target`` downsampled to E's resolution (:func:`downsample_labels`);
    3. prototypes on all C channels: the student's batch prototypes (detached) for the classes in
       the labels; for old channels k < C_old (C_old = teacher logit channels, unknown and
       background included) the old prototypes from ``old_prototypes`` or, without it, from the
       teacher's E on this batch replace them ("solid" old knowledge);
    4. SPM = :func:`spm_loss` on the SI channels with those anchors; SFP = :func:`sfp_loss` on the
       SS channels; NSC = :func:`nsc_loss` on all channels with the old prototypes as directions.

    A term whose λ is 0 (or ``feature_decoupling`` off) is not computed and reported as 0.

    Args:
        student, teacher: ``forward_features`` dicts (taps ``aspp_layer1..3``, ``aspp``, and the
            teacher's ``logits_lowres``).
        target: N×H×W student channel ids after pseudo-labelling (255 ignored), at image or
            feature resolution.
        epoch, epochs, KD_loss_type, use_KD_layer_weight, lamb: as :func:`llseg.methods.recipes.feature_kd.dada_loss`.
        old_prototypes: (prototypes C_old×C, valid C_old bool) accumulated with the teacher.
    Returns:
        ``{"kd", "dcl", "spm", "sfp", "nsc", "total"}`` scalars (unweighted terms, weighted total).
    """
    s, t = student["aspp"], teacher["aspp"]
    zero = s.float().sum() * 0.0
    out = {"kd": dada_loss(student, teacher, KD_loss_type=KD_loss_type, use_KD_layer_weight=use_KD_layer_weight,
                           lamb=lamb, epoch=epoch, epochs=epochs)}
    out["dcl"] = dcl_loss(s, t, temperature=dcl_temperature) if feature_decoupling and lambda_dcl else zero
    labels = downsample_labels(target, (s.shape[-2], s.shape[-1]))
    si, ss = split_channels(channel_stability(s, t), rho)
    c_old = teacher["logits_lowres"].shape[1]
    if old_prototypes is None:
        old_prototypes = class_prototypes(t.detach(), labels, c_old)
    old, old_valid = old_prototypes
    old, old_valid = old.detach().float().to(s.device), old_valid.to(s.device)
    if old.shape != (c_old, s.shape[1]) or old_valid.shape != (c_old,):
        raise ValueError(f"old_prototypes must be ({c_old}×{s.shape[1]}, {c_old}), got "
                         f"({tuple(old.shape)}, {tuple(old_valid.shape)})")
    out["spm"] = zero
    if lambda_spm:
        labelled = labels[labels != IGNORE_INDEX]
        k = max(c_old, int(labelled.max()) + 1 if labelled.numel() else 0)
        anchors, valid = class_prototypes(s.detach(), labels, k)
        anchors[:c_old][old_valid] = old[old_valid]
        valid[:c_old] |= old_valid
        out["spm"] = spm_loss(s[:, si], labels, anchors[:, si], valid, temperature=proto_temperature)
    out["sfp"] = sfp_loss(s[:, ss], t[:, ss], labels) if lambda_sfp else zero
    out["nsc"] = nsc_loss(s, t, old[old_valid]) if lambda_nsc else zero
    out["total"] = (lambda_kd * out["kd"] + lambda_dcl * out["dcl"] + lambda_spm * out["spm"]
                    + lambda_sfp * out["sfp"] + lambda_nsc * out["nsc"])
    return out


@dataclass(frozen=True)
class LagOptions(FeatureKdOptions):
    """Defaults: the options of LAG's dev runs (§4.1) except ``rho``; terms reconstructed (§4.2).

    Attributes:
        feature_decoupling: add the decoupled contrastive loss (DCL) on the ASPP output.
        rho: share of the ASPP channels, the most stable ones, treated as semantic-invariant (SPM
            acts on them); the others are sample-specific (SFP).
        uncertainty_pseudo: pseudo-labels also need the old model's top-2 margin p(1) − p(2) ≥
            ``uncertainty_margin`` (llseg's rule; the released rule is a bug, §4.2 item 5).
        lambda_dcl, lambda_spm, lambda_sfp, lambda_nsc: term weights ([unverified]; 0 turns a term off).
    """

    feature_decoupling: bool = True
    rho: float = RHO
    uncertainty_pseudo: bool = False
    uncertainty_margin: float = UNCERTAINTY_MARGIN
    lambda_dcl: float = 1.0
    lambda_spm: float = 1.0
    lambda_sfp: float = 1.0
    lambda_nsc: float = LAMBDA_NSC

    def __post_init__(self) -> None:
        if not 0.0 <= self.rho <= 1.0:
            raise ConfigError(f"rho (a share of channels) must be in [0, 1], got {self.rho}")
        if not 0.0 <= self.uncertainty_margin <= 1.0:
            raise ConfigError(f"uncertainty_margin (a probability margin) must be in [0, 1], got {self.uncertainty_margin}")
        super().__post_init__()

    def dependent_flags(self) -> tuple[tuple[str, str, str], ...]:
        return (("lambda_dcl", "feature_decoupling", "lambda_dcl weights the DCL of feature_decoupling"),
                ("uncertainty_pseudo", "pseudo", "uncertainty_pseudo refines the pseudo-labels"),
                ("uncertainty_margin", "uncertainty_pseudo", "uncertainty_margin is the threshold of uncertainty_pseudo"))


@register_recipe("lag")
class Lag(FeatureKd):
    """SSUL + DADA, DCL (``feature_decoupling``), SPM on the semantic-invariant channels, SFP on the
    sample-specific ones and NSC; optional uncertainty-aware pseudo-labels.

    Old prototypes: at the start of a stage with a teacher, one teacher pass over the stage's
    training data accumulates the teacher's class means of the ASPP output over its pseudo-labelled
    targets (:attr:`prototypes`, C_old×256 and a presence mask). They are rebuilt from the teacher
    at every step, so nothing has to survive a checkpoint.
    """

    Options = LagOptions
    teacher_maps = ("aspp",)
    options: LagOptions

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.prototypes: tuple[torch.Tensor, torch.Tensor] | None = None

    def pseudo_labels(self, target: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        o = self.options
        if not o.uncertainty_pseudo:
            return super().pseudo_labels(target, teacher_logits)
        return uncertainty_pseudo_label(target, teacher_logits, loss_type=self.config.loss_type, threshold=o.pseudo_thresh,
                                        margin=o.uncertainty_margin, unknown=o.unknown)

    @property
    def teacher_pass(self) -> bool:
        """The prototypes' pass, needed by SPM and NSC only."""
        return bool(self.options.lambda_spm or self.options.lambda_nsc)

    def begin_stage(self, stage: Stage, teacher_outputs: TeacherOutputs | None) -> None:
        super().begin_stage(stage, teacher_outputs)
        self.prototypes = None
        o = self.options
        if teacher_outputs is None or not self.teacher_pass:
            return
        sums: torch.Tensor | None = None
        counts: torch.Tensor | None = None
        for batch in teacher_outputs:
            target = self.pseudo_labels(batch.target, batch.logits) if o.pseudo else batch.target
            features = batch.maps["aspp"]
            labels = downsample_labels(target, (features.shape[-2], features.shape[-1]))
            s, c = prototype_sums(features, labels, batch.logits.shape[1])
            sums, counts = (s, c) if sums is None or counts is None else (sums + s, counts + c)
        if sums is not None and counts is not None:
            self.prototypes = (sums / counts.clamp_min(1)[:, None], counts > 0)

    def auxiliary(self, features: dict[str, torch.Tensor], old: dict[str, torch.Tensor],
                  target: torch.Tensor) -> dict[str, torch.Tensor]:
        o = self.options
        return lag_loss(features, old, target, epoch=self.epoch, epochs=self.epochs, KD_loss_type=o.KD_loss_type,
                        use_KD_layer_weight=o.use_KD_layer_weight, lamb=o.lamb, feature_decoupling=o.feature_decoupling,
                        rho=o.rho, lambda_kd=o.lambda_kd, lambda_dcl=o.lambda_dcl, lambda_spm=o.lambda_spm,
                        lambda_sfp=o.lambda_sfp, lambda_nsc=o.lambda_nsc, old_prototypes=self.prototypes)
