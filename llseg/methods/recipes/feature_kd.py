"""What IDEC and LAG share (docs/methods.md §3, §4): SSUL plus feature distillation on the main and
layer1..3 ASPP outputs, the body trainable in later steps so that the distillation acts on it.

Inputs are ``forward_features`` dicts (:class:`llseg.models.FeatureModel`) of a model built with
ASPP taps: ``"aspp_layer1"`` N×256×H/4×W/4, ``"aspp_layer2"`` N×256×H/8×W/8, ``"aspp_layer3"`` and
``"aspp"`` N×256×h×w (h = H/s, s = output stride), ``"logits_lowres"`` N×C×h×w. Features may be
bf16/fp16 under autocast; every loss is computed in float32.

* The totals (:func:`idec_loss`, :func:`llseg.methods.lag.lag_loss`) return a dict of scalar terms
  whose ``"total"`` is an *auxiliary* loss: ``loss = bce_with_ignore(logits, ỹ) + out["total"]``
  with ỹ SSUL's pseudo-labels (or :func:`llseg.methods.lag.uncertainty_pseudo_label` for LAG).
* Every term depends on the student only through its *features*, never through the classifier
  heads; teacher tensors are detached inside. What the terms train is therefore decided only by
  which modules upstream of the features (backbone, ``aspp``, ``aspp_taps``) are trainable:

  - ``kd_on_frozen: true`` reproduces the released code. SSUL's ``freeze``/``bn_freeze`` keep the
    body frozen (and loaded from the old checkpoint), so the student's features carry no graph,
    ``out["total"].requires_grad`` is False and the terms add **nothing** to any gradient
    (docs/methods.md §3.3 caveat): the run is SSUL with IDEC's hyperparameters. Add the total to the
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

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

import torch
import torch.nn.functional as F
from torch import nn

from llseg.errors import ConfigError
from llseg.methods.recipe import Stage, TeacherOutputs
from llseg.methods.recipes.ssul import Ssul, SsulOptions, pseudo_label
from llseg.models import FeatureModel, StepHeadsModel

__all__ = ["FeatureKd", "FeatureKdOptions", "dada_loss", "feature_distance", "pseudo_label"]

KD_LOSS_TYPES = ("KD_loss", "KLDiv_loss", "L1_loss", "L2_loss")
KD_ALPHA = 2.0  # teacher sharpening of the MiB-style KD_loss
DADA_TAPS = ("aspp_layer1", "aspp_layer2", "aspp_layer3", "aspp")
KD_LAYER_WEIGHTS = {"aspp_layer1": 0.5, "aspp_layer2": 1.0, "aspp_layer3": 2.0, "aspp": 1.0}
DECAYED_TAPS = ("aspp_layer1", "aspp_layer2", "aspp_layer3")  # × λ^(e/E); the main ASPP term is not decayed

BODY_LR_FACTOR = 0.1  # body lr = lr · 0.1 in frozen steps when backbone_lr is unset

KDLossType = Literal["KD_loss", "KLDiv_loss", "L1_loss", "L2_loss"]


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
    """IDEC's dense feature distillation over the four ASPP outputs (docs/methods.md §3.3):

    with ``use_KD_layer_weight``: L = λ^(e/E) · (0.5 D_l1 + 1.0 D_l2 + 2.0 D_l3) + 1.0 D_out,
    without: L = D_l1 + D_l2 + D_l3 + D_out (no decay).

    D = :func:`feature_distance` (``KD_loss_type``), l1..l3 = ``aspp_layer1..3``, out = ``aspp``,
    λ = ``lamb``, e = ``epoch`` (1-based), E = ``epochs``. The released code's unweighted branch
    assigns the l3 term to the l2 variable and leaves the l3 one at its initial 0 (so it sums
    l1 + l3 + out; measured by benchmarks/parity.py); llseg does not reproduce
    that copy-paste bug. One LAG v1 ``run.py`` also decays the ``out`` term; IDEC's and
    docs/methods.md's form (used here) does not. (LAG's dev logs used λ = 1, where both agree.)
    """
    terms = dada_terms(student, teacher, KD_loss_type)
    if not use_KD_layer_weight:
        return terms["aspp_layer1"] + terms["aspp_layer2"] + terms["aspp_layer3"] + terms["aspp"]
    decay = layer_decay(lamb, epoch, epochs)
    total = KD_LAYER_WEIGHTS["aspp"] * terms["aspp"]
    for k in DECAYED_TAPS:
        total = total + decay * KD_LAYER_WEIGHTS[k] * terms[k]
    return total


@dataclass(frozen=True)
class FeatureKdOptions(SsulOptions):
    """SSUL's options plus the feature distillation's; defaults are the published commands'.

    Attributes:
        KD_loss_type: feature distance D (:func:`feature_distance`).
        use_KD_layer_weight: DADA = λ^(e/E)·(0.5 D_l1 + 1.0 D_l2 + 2.0 D_l3) + D_out; else the
            unweighted sum of the four. lamb: λ (1.0 = no decay); e is the 1-based epoch, E = epochs.
        lambda_kd: weight of DADA.
        kd_on_frozen: false (llseg's default, the papers' method): with ``freeze`` the body also
            trains in steps ≥ 1, at ``backbone_lr`` (lr · 0.1 when unset), BatchNorm frozen by
            ``bn_freeze``, so the feature terms act on it. true: SSUL's freezing exactly, as the
            released code runs (the terms have zero gradient, docs/methods.md §3.3, §11).
        bce_on_body: with ``kd_on_frozen`` false, whether the BCE's gradient also reaches the body
            (false: the body moves by the feature terms only; docs/methods.md, Deviations).
    """

    KD_loss_type: KDLossType = "KD_loss"
    use_KD_layer_weight: bool = True
    lamb: float = 1.0
    lambda_kd: float = 1.0
    kd_on_frozen: bool = False
    bce_on_body: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.KD_loss_type not in KD_LOSS_TYPES:
            raise ConfigError(f"KD_loss_type must be one of {', '.join(KD_LOSS_TYPES)}, got {self.KD_loss_type!r}")
        negative = [f.name for f in dataclasses.fields(self)
                    if f.name.startswith("lam") and getattr(self, f.name) < 0]
        if negative:
            raise ConfigError(f"{', '.join(negative)} must be >= 0")
        if self.bce_on_body and self.kd_on_frozen:
            raise ConfigError("bce_on_body: true needs a trainable body; it does nothing with kd_on_frozen: true")
        needs = (("kd_on_frozen", "freeze",
                  "kd_on_frozen: true keeps the frozen body of freeze; without freeze the body trains anyway"),
                 ("lamb", "use_KD_layer_weight", "lamb decays the layer weights of use_KD_layer_weight"),
                 *self.dependent_flags())
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        for flag, required, why in needs:
            if getattr(self, flag) != defaults[flag] and not getattr(self, required):
                raise ConfigError(f"{why}; set {required}: true (or drop {flag})")

    def dependent_flags(self) -> tuple[tuple[str, str, str], ...]:
        """(flag, required flag, why) of the subclass: a non-default flag needs the required one."""
        return ()


class FeatureKd(Ssul):
    """Everything SSUL does plus :meth:`auxiliary` terms in stages with a teacher, on a model with
    the layer1..3 ASPP taps. A stage without a teacher (step 0, or no new class) is SSUL's."""

    Options = FeatureKdOptions
    capabilities = (StepHeadsModel, FeatureModel)
    options: FeatureKdOptions

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.has_teacher = False

    def model_kwargs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        kwargs = super().model_kwargs(kwargs)
        self.require_model_option(kwargs, "aspp_taps", True, "ASPP taps on layer1..3")
        return kwargs

    def begin_stage(self, stage: Stage, teacher_outputs: TeacherOutputs | None) -> None:
        super().begin_stage(stage, teacher_outputs)
        self.has_teacher = teacher_outputs is not None

    def body_lr(self) -> float:
        """Learning rate of the body in frozen steps: ``backbone_lr``, or lr · 0.1 when unset."""
        cfg = self.config
        return cfg.backbone_lr if cfg.backbone_lr is not None else self.learning_rate() * BODY_LR_FACTOR

    def frozen_groups(self, student: nn.Module) -> list[dict[str, Any]]:
        groups = super().frozen_groups(student)
        if self.has_teacher and not self.options.kd_on_frozen:
            groups.append({"params": list(cast(FeatureModel, student).body_parameters()), "lr": self.body_lr()})
        return groups

    def auxiliary(self, features: dict[str, torch.Tensor], old: dict[str, torch.Tensor],
                  target: torch.Tensor) -> dict[str, torch.Tensor]:
        """The method's terms (student ``features``, teacher ``old``, pseudo-labelled ``target``):
        scalars whose ``"total"`` is added to the BCE."""
        raise NotImplementedError

    def loss(self, student: nn.Module, teacher: nn.Module | None, image: torch.Tensor,
             target: torch.Tensor) -> torch.Tensor:
        if teacher is None:
            return super().loss(student, teacher, image, target)
        opts = self.options
        # without bce_on_body (and with a trainable body) the body learns from the feature terms only
        detach_head = not (opts.kd_on_frozen or opts.bce_on_body)
        features = cast(FeatureModel, student).forward_features(image, detach_head=detach_head)
        with torch.no_grad():
            old = cast(FeatureModel, teacher).forward_features(image)
        if opts.pseudo:
            target = self.pseudo_labels(target, old["logits"])
        bce = self.supervised(features["logits"], target)
        aux = self.auxiliary(features, old, target)
        total = aux.pop("total")
        self.record({"bce": bce, **aux, "aux": total})
        self.aux_gradient = bool(self.aux_gradient) or total.requires_grad
        return bce + total
