"""Continual recipes: what each method changes in a stage, one class per recipe.

:class:`~llseg.methods.learner.ContinualLearner` is the generic loop (data, class groups, growth,
optimiser, epochs, checkpoints, prediction). A :class:`Recipe` decides, for its method:

* the model it needs (:meth:`Recipe.model_kwargs`) and whether the dataset needs a background;
* where a stage's student comes from (``fresh_student``, ``replays_seen``) and whether a frozen
  copy of the previous model is kept as teacher when a stage adds classes (``keeps_teacher``);
* how new output channels are initialised (:meth:`Recipe.after_grow`);
* per-stage preparation over the training data (:meth:`Recipe.begin_stage`, e.g. PLOP's
  entropy thresholds or LAG's old-class prototypes; ``teacher_maps`` names the
  ``forward_features`` maps that pass needs besides the teacher's logits), the optimiser groups
  (:meth:`Recipe.param_groups`) and the loss of one batch given the student and the teacher
  (:meth:`Recipe.loss`);
* per-epoch state (:meth:`Recipe.begin_epoch`: the learner calls it before each epoch with the
  1-based epoch e and the number of epochs E, e.g. for IDEC's λ^(e/E) decay);
* the scores whose argmax is the prediction (:meth:`Recipe.class_scores`).

A recipe may :meth:`Recipe.record` the terms of its loss; the learner puts their means over the
stage into the stage summary (``loss_terms``), with ``aux_gradient`` (whether an auxiliary term
reached a trainable parameter; None without one).

Targets are N×H×W channel ids of the student (255 = ignore); the background is channel 0
whenever a recipe needs one (``needs_background``).
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import ClassVar, NamedTuple, Optional, Union

import torch
from torch import nn

from llseg.data.labels import IGNORE_INDEX
from llseg.errors import ConfigError
from llseg.methods import idec, lag, mib, plop, ssul
from llseg.methods.config import TrainConfig
from llseg.methods.losses import entropy_weighted_distillation, labelled_cross_entropy

HEAD_NAMES = {"per_step": "one head per step", "expanding": "one expanding classifier"}
BODY_LR_FACTOR = 0.1  # IDEC/LAG with kd_on_frozen false: body lr = lr · 0.1 when backbone_lr is unset


class TeacherBatch(NamedTuple):
    """One batch of the teacher pass over a stage's training data (float32 tensors).

    Attributes:
        target: N×H×W student channel ids (255 = ignore), before any pseudo-labelling.
        logits: N×C_old×H×W teacher logits.
        maps: the teacher's ``forward_features`` maps named by the recipe's ``teacher_maps``.
    """

    target: torch.Tensor
    logits: torch.Tensor
    maps: dict[str, torch.Tensor]


# The teacher's batches over one pass of a stage's training data.
TeacherOutputs = Iterator[TeacherBatch]


@dataclass(frozen=True)
class Stage:
    """The stage being trained, as the recipe sees it.

    Attributes:
        step: index of the newest class group (0 = the first step).
        old_classes: classes of the earlier steps (background first): with a teacher exactly the
            teacher's classes; 0 in step 0.
        classes: all classes of the student |C_1:t|.
    """

    step: int
    old_classes: int
    classes: int

    @property
    def new_classes(self) -> int:
        """|C_t|: classes of the current step."""
        return self.classes - self.old_classes


class Recipe:
    """Base recipe: continue the current model, no teacher, supervised loss only (``finetune``)."""

    name: ClassVar[str]
    replays_seen: ClassVar[bool] = False  # train on every stage's images so far, full labels
    keeps_teacher: ClassVar[bool] = False  # frozen copy of the previous model when classes are added
    needs_background: ClassVar[bool] = False  # dataset background class, channel 0 of step 0
    head: ClassVar[Optional[str]] = None  # DeepLabV3 classifier the recipe needs (None: any model)
    teacher_maps: ClassVar[tuple[str, ...]] = ()  # forward_features maps of the begin_stage teacher pass

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.stage = Stage(step=0, old_classes=0, classes=0)
        self.epoch, self.epochs = 1, config.epochs
        self._term_sums: dict[str, torch.Tensor] = {}
        self._term_counts: dict[str, int] = {}
        self.aux_gradient: Optional[bool] = None

    @property
    def fresh_student(self) -> bool:
        """Every stage starts from a new model (else from the current one, grown)."""
        return False

    @property
    def background_first(self) -> bool:
        """The first stage's first class must be the background (channel 0)."""
        return self.needs_background

    def model_kwargs(self, kwargs: dict) -> dict:
        """Check and complete the builder kwargs of ``config.model``."""
        if self.head is None:
            return kwargs
        if not self.config.model.startswith("deeplabv3"):
            raise ConfigError(f"recipe {self.name} needs a DeepLabV3 model ({HEAD_NAMES[self.head]}), "
                              f"not {self.config.model!r}")
        if kwargs.setdefault("head", self.head) != self.head:
            raise ConfigError(f"recipe {self.name} needs model_kwargs head: {self.head}, got {kwargs['head']!r}")
        return kwargs

    def after_grow(self, model: nn.Module, num_new: int) -> None:
        """Initialise the ``num_new`` channels (or head) just appended to ``model``."""

    def begin_stage(self, stage: Stage, teacher_outputs: Optional[TeacherOutputs]) -> None:
        """Called before a stage's first step; ``teacher_outputs`` (None without a teacher) is lazy:
        it runs the teacher over the training data only if consumed. Resets the recorded terms."""
        self.stage = stage
        self.epoch, self.epochs = 1, self.config.epochs
        self._term_sums, self._term_counts = {}, {}
        self.aux_gradient = None

    def begin_epoch(self, epoch: int, epochs: int) -> None:
        """Called before each epoch's first batch: ``epoch`` is 1-based (1..``epochs``)."""
        self.epoch, self.epochs = epoch, epochs

    def record(self, terms: Mapping[str, Union[torch.Tensor, float]]) -> None:
        """Add one batch's value of each named loss term (kept on the device: no synchronisation)."""
        for name, value in terms.items():
            value = value.detach().float() if isinstance(value, torch.Tensor) else torch.tensor(float(value))
            self._term_sums[name] = self._term_sums[name] + value if name in self._term_sums else value
            self._term_counts[name] = self._term_counts.get(name, 0) + 1

    def stage_report(self) -> dict:
        """``loss_terms``: mean of each recorded term over the stage's batches; ``aux_gradient``."""
        means = {k: float(v) / self._term_counts[k] for k, v in self._term_sums.items()}
        return {"loss_terms": means, "aux_gradient": self.aux_gradient}

    def learning_rate(self) -> float:
        """``lr`` in step 0, ``lr_incremental`` (when set) in later steps."""
        cfg = self.config
        return cfg.lr_incremental if self.stage.step >= 1 and cfg.lr_incremental is not None else cfg.lr

    def param_groups(self, student: nn.Module) -> list[dict]:
        """Every parameter trains; ``model.backbone`` at ``backbone_lr`` when set."""
        cfg, lr = self.config, self.learning_rate()
        for p in student.parameters():
            p.requires_grad_(True)
        if cfg.backbone_lr is None:
            return [{"params": list(student.parameters()), "lr": lr}]
        backbone = getattr(student, "backbone", None)
        if backbone is None:
            raise ConfigError(f"backbone_lr: model {cfg.model!r} has no backbone module")
        ids = {id(p) for p in backbone.parameters()}
        return [{"params": list(backbone.parameters()), "lr": cfg.backbone_lr},
                {"params": [p for p in student.parameters() if id(p) not in ids], "lr": lr}]

    def supervised(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``loss_type``: SSUL's sigmoid BCE or softmax cross-entropy, over labelled pixels."""
        if self.config.loss_type == "bce":
            return ssul.bce_with_ignore(logits, target)
        return labelled_cross_entropy(logits, target)

    def loss(self, student: nn.Module, teacher: Optional[nn.Module], image: torch.Tensor,
             target: torch.Tensor) -> torch.Tensor:
        """Loss of one batch: image N×3×H×W, target N×H×W."""
        return self.supervised(student(image), target)

    def class_scores(self, logits: torch.Tensor) -> torch.Tensor:
        """N×K×H×W scores whose argmax is the prediction (channel k = the learner's class k)."""
        return logits.float()


class Finetune(Recipe):
    """Grow the current model and train it on the new labels only (the lower bound)."""

    name = "finetune"


class Joint(Recipe):
    """A fresh model on all stages' images so far with full labels (the upper bound)."""

    name = "joint"
    replays_seen = True

    @property
    def fresh_student(self) -> bool:
        return True


class Cil(Recipe):
    """Klingner et al.: a (fresh) student learns the new labels and, on unlabelled pixels, the
    teacher's old-class distribution through entropy-weighted distillation (methods.md §1.3)."""

    name = "cil"
    keeps_teacher = True

    @property
    def fresh_student(self) -> bool:
        return not self.config.init_from_teacher

    def loss(self, student: nn.Module, teacher: Optional[nn.Module], image: torch.Tensor,
             target: torch.Tensor) -> torch.Tensor:
        logits = student(image)
        loss = self.supervised(logits, target)
        if teacher is None:
            return loss
        with torch.no_grad():
            teacher_logits = teacher(image)
        return loss + entropy_weighted_distillation(
            logits, teacher_logits, target == IGNORE_INDEX,
            temperature=self.config.temperature, lambda_gs=self.config.lambda_gs,
        )


class Ssul(Recipe):
    """Cha et al. (methods.md §2): per-step heads, unknown class, pseudo-labels, frozen steps."""

    name = "ssul"
    keeps_teacher = True
    needs_background = True
    head = "per_step"

    @property
    def background_first(self) -> bool:
        return self.config.unknown

    def model_kwargs(self, kwargs: dict) -> dict:
        kwargs = super().model_kwargs(kwargs)
        kwargs["unknown"] = self.config.unknown
        return kwargs

    def after_grow(self, model: nn.Module, num_new: int) -> None:
        if self.config.w_transfer:
            ssul.transfer_unknown_head(model.classifier.heads)

    def param_groups(self, student: nn.Module) -> list[dict]:
        """``freeze``: steps ≥ 1 train the new head (and unknown/background heads) only;
        ``bn_freeze``: steps ≥ 1 keep BatchNorm in eval mode with frozen affine parameters."""
        cfg = self.config
        incremental = self.stage.step >= 1
        if incremental and cfg.freeze:
            for p in student.parameters():
                p.requires_grad_(False)
            groups = self.frozen_groups(student)
            for g in groups:
                for p in g["params"]:
                    p.requires_grad_(True)
        else:
            groups = super().param_groups(student)
        if incremental and cfg.bn_freeze:
            ssul.freeze_batchnorm(student)
        return ssul.trainable(groups)

    def frozen_groups(self, student: nn.Module) -> list[dict]:
        """The groups that train in steps ≥ 1 under ``freeze`` (everything else is frozen)."""
        return ssul.frozen_step_groups(student.classifier.heads, lr=self.learning_rate(), unknown=self.config.unknown)

    def pseudo_labels(self, target: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        """``pseudo``: background/unknown pixels take the teacher's confident old foreground class."""
        cfg = self.config
        return ssul.pseudo_label(target, teacher_logits, loss_type=cfg.loss_type, threshold=cfg.pseudo_thresh,
                                 unknown=cfg.unknown)

    def loss(self, student: nn.Module, teacher: Optional[nn.Module], image: torch.Tensor,
             target: torch.Tensor) -> torch.Tensor:
        logits = student(image)
        if teacher is not None and self.config.pseudo:
            with torch.no_grad():
                teacher_logits = teacher(image)
            target = self.pseudo_labels(target, teacher_logits)
        return self.supervised(logits, target)

    def class_scores(self, logits: torch.Tensor) -> torch.Tensor:
        if self.config.unknown:
            return ssul.merge_unknown(ssul.probabilities(logits, self.config.loss_type))
        return logits.float()


class _Expanding(Recipe):
    """MiB/PLOP base: one expanding classifier, background channel 0, ``init_balanced``."""

    keeps_teacher = True
    needs_background = True
    head = "expanding"

    def after_grow(self, model: nn.Module, num_new: int) -> None:
        if self.config.init_balanced:
            mib.init_balanced(model.classifier.conv, num_new)


class Mib(_Expanding):
    """Cermelli et al. (methods.md §5): unbiased CE + ``loss_kd`` · unbiased KD."""

    name = "mib"

    def loss(self, student: nn.Module, teacher: Optional[nn.Module], image: torch.Tensor,
             target: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        logits = student(image)
        loss = mib.unbiased_cross_entropy(logits, target, max(self.stage.old_classes, 1))
        if teacher is None or cfg.loss_kd == 0:
            return loss
        with torch.no_grad():
            teacher_logits = teacher(image)
        return loss + cfg.loss_kd * mib.unbiased_distillation(logits, teacher_logits, alpha=cfg.alpha)


class Plop(_Expanding):
    """Douillard et al. (methods.md §6): entropy pseudo-labels with per-class median thresholds,
    CE weighted by the adaptive factor ν, and local POD on the backbone stages, ASPP and logits.
    Without a teacher (step 0, or a stage that adds no class) it is plain cross-entropy."""

    name = "plop"

    def __init__(self, config: TrainConfig) -> None:
        super().__init__(config)
        self.thresholds: Optional[torch.Tensor] = None

    def begin_stage(self, stage: Stage, teacher_outputs: Optional[TeacherOutputs]) -> None:
        """Per-class thresholds from the teacher's entropy over the stage's training data."""
        super().begin_stage(stage, teacher_outputs)
        self.thresholds = None
        if teacher_outputs is not None:
            histogram = sum(plop.entropy_histogram(batch.target, batch.logits) for batch in teacher_outputs)
            self.thresholds = plop.median_thresholds(histogram, self.config.threshold)

    def loss(self, student: nn.Module, teacher: Optional[nn.Module], image: torch.Tensor,
             target: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if teacher is None:
            logits = student(image)
            return plop.weighted_cross_entropy(logits, target, logits.new_ones(len(logits), dtype=torch.float32))
        features = student.forward_features(image)
        with torch.no_grad():
            old = teacher.forward_features(image)
        target, nu = plop.entropy_pseudo_labels(target, old["logits"], self.thresholds)
        if not cfg.classif_adaptive_factor:
            nu = torch.ones_like(nu)
        loss = plop.weighted_cross_entropy(features["logits"], target, nu)
        new_maps = [features[k] for k in plop.POD_FEATURES]
        new_maps.append(plop.sum_extra_channels(features["logits_lowres"], self.stage.old_classes))
        old_maps = [old[k] for k in plop.POD_FEATURES] + [old["logits_lowres"]]
        factors = [cfg.pod_factor] * len(plop.POD_FEATURES) + [cfg.pod_logits_factor]
        return loss + plop.pod_loss(new_maps, old_maps, factors, channels=self.stage.classes,
                                    new_channels=self.stage.new_classes)


class _FeatureKd(Ssul):
    """IDEC/LAG base: everything SSUL does (per-step heads, unknown, BCE, pseudo-labels,
    ``w_transfer``, ``freeze``/``bn_freeze``, memory) plus an auxiliary feature loss in stages with a
    teacher, on a model with the layer1..3 ASPP taps (contract: :mod:`llseg.methods.idec`).

    ``kd_on_frozen`` false (default): with ``freeze``, a stage with a teacher also trains the body
    (``backbone``, ``aspp``, ``aspp_taps``) at :meth:`body_lr`, BatchNorm frozen by ``bn_freeze``,
    so the auxiliary terms act on it (the papers' method); the BCE reaches the body only with
    ``bce_on_body``. ``kd_on_frozen`` true: SSUL's freezing;
    the terms are computed and recorded but no trainable parameter is upstream of them (the
    released code, methods.md §3.3). A stage without a teacher (step 0, or no new class) is SSUL's.
    """

    def __init__(self, config: TrainConfig) -> None:
        super().__init__(config)
        self.has_teacher = False

    def model_kwargs(self, kwargs: dict) -> dict:
        kwargs = super().model_kwargs(kwargs)
        if kwargs.setdefault("aspp_taps", True) is not True:
            raise ConfigError(f"recipe {self.name} distils the layer1..3 ASPPs; it needs model_kwargs aspp_taps: true, "
                              f"got {kwargs['aspp_taps']!r}")
        return kwargs

    def begin_stage(self, stage: Stage, teacher_outputs: Optional[TeacherOutputs]) -> None:
        super().begin_stage(stage, teacher_outputs)
        self.has_teacher = teacher_outputs is not None

    def body_lr(self) -> float:
        """Learning rate of the body in frozen steps: ``backbone_lr``, or lr · 0.1 when unset."""
        cfg = self.config
        return cfg.backbone_lr if cfg.backbone_lr is not None else self.learning_rate() * BODY_LR_FACTOR

    def frozen_groups(self, student: nn.Module) -> list[dict]:
        groups = super().frozen_groups(student)
        if self.has_teacher and not self.config.kd_on_frozen:
            body = [p for m in (student.backbone, student.aspp, student.aspp_taps) for p in m.parameters()]
            groups.append({"params": body, "lr": self.body_lr()})
        return groups

    def auxiliary(self, features: dict[str, torch.Tensor], old: dict[str, torch.Tensor],
                  target: torch.Tensor) -> dict[str, torch.Tensor]:
        """The method's terms (student ``features``, teacher ``old``, pseudo-labelled ``target``):
        scalars whose ``"total"`` is added to the BCE."""
        raise NotImplementedError

    def loss(self, student: nn.Module, teacher: Optional[nn.Module], image: torch.Tensor,
             target: torch.Tensor) -> torch.Tensor:
        if teacher is None:
            return super().loss(student, teacher, image, target)
        # without bce_on_body (and with a trainable body) the body learns from the feature terms only
        features = student.forward_features(image, detach_head=not (self.config.kd_on_frozen or self.config.bce_on_body))
        with torch.no_grad():
            old = teacher.forward_features(image)
        if self.config.pseudo:
            target = self.pseudo_labels(target, old["logits"])
        bce = self.supervised(features["logits"], target)
        aux = self.auxiliary(features, old, target)
        total = aux.pop("total")
        self.record({"bce": bce, **aux, "aux": total})
        self.aux_gradient = bool(self.aux_gradient) or total.requires_grad
        return bce + total


class Idec(_FeatureKd):
    """Zhao et al. (methods.md §3): SSUL + DADA (feature KD on the four ASPP outputs, λ^(e/E) decay
    of the tap terms) [+ ARCL with ``contrastive_learning``]."""

    name = "idec"

    def auxiliary(self, features: dict[str, torch.Tensor], old: dict[str, torch.Tensor],
                  target: torch.Tensor) -> dict[str, torch.Tensor]:
        cfg = self.config
        return idec.idec_loss(features, old, epoch=self.epoch, epochs=self.epochs, KD_loss_type=cfg.KD_loss_type,
                              use_KD_layer_weight=cfg.use_KD_layer_weight, lamb=cfg.lamb,
                              contrastive_learning=cfg.contrastive_learning, unknown=cfg.unknown,
                              lambda_kd=cfg.lambda_kd, lambda_arcl=cfg.lambda_arcl)


class Lag(_FeatureKd):
    """Yuan et al. (methods.md §4, reconstructed): SSUL + DADA, DCL (``feature_decoupling``), SPM
    on the semantic-invariant channels, SFP on the sample-specific ones and NSC; optional
    uncertainty-aware pseudo-labels (``uncertainty_pseudo``, ``uncertainty_margin``).

    Old prototypes ("solid" old knowledge for SPM and NSC): at the start of a stage with a teacher,
    one teacher pass over the stage's training data accumulates the teacher's class means of the
    ASPP output over its pseudo-labelled targets (:attr:`prototypes`, C_old×256 and a presence
    mask); every batch of the stage uses them. They are rebuilt from the teacher at every step, so
    nothing has to survive a checkpoint: after Sedna's save/load the loaded model is the next
    step's teacher and gives the same prototypes.
    """

    name = "lag"
    teacher_maps = ("aspp",)

    def __init__(self, config: TrainConfig) -> None:
        super().__init__(config)
        self.prototypes: Optional[tuple[torch.Tensor, torch.Tensor]] = None

    def pseudo_labels(self, target: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if not cfg.uncertainty_pseudo:
            return super().pseudo_labels(target, teacher_logits)
        return lag.uncertainty_pseudo_label(target, teacher_logits, loss_type=cfg.loss_type, threshold=cfg.pseudo_thresh,
                                            margin=cfg.uncertainty_margin, unknown=cfg.unknown)

    def begin_stage(self, stage: Stage, teacher_outputs: Optional[TeacherOutputs]) -> None:
        super().begin_stage(stage, teacher_outputs)
        self.prototypes = None
        cfg = self.config
        if teacher_outputs is None or not (cfg.lambda_spm or cfg.lambda_nsc):
            return
        sums: Optional[torch.Tensor] = None
        counts: Optional[torch.Tensor] = None
        for batch in teacher_outputs:
            target = self.pseudo_labels(batch.target, batch.logits) if cfg.pseudo else batch.target
            features = batch.maps["aspp"]
            labels = lag.downsample_labels(target, tuple(features.shape[-2:]))
            s, c = lag.prototype_sums(features, labels, batch.logits.shape[1])
            sums, counts = (s, c) if sums is None else (sums + s, counts + c)
        if sums is not None and counts is not None:
            self.prototypes = (sums / counts.clamp_min(1)[:, None], counts > 0)

    def auxiliary(self, features: dict[str, torch.Tensor], old: dict[str, torch.Tensor],
                  target: torch.Tensor) -> dict[str, torch.Tensor]:
        cfg = self.config
        return lag.lag_loss(features, old, target, epoch=self.epoch, epochs=self.epochs, KD_loss_type=cfg.KD_loss_type,
                            use_KD_layer_weight=cfg.use_KD_layer_weight, lamb=cfg.lamb,
                            feature_decoupling=cfg.feature_decoupling, rho=cfg.rho, lambda_kd=cfg.lambda_kd,
                            lambda_dcl=cfg.lambda_dcl, lambda_spm=cfg.lambda_spm, lambda_sfp=cfg.lambda_sfp,
                            lambda_nsc=cfg.lambda_nsc, old_prototypes=self.prototypes)


RECIPE_TYPES: dict[str, type[Recipe]] = {r.name: r for r in (Joint, Finetune, Cil, Ssul, Mib, Plop, Idec, Lag)}


def make_recipe(config: TrainConfig) -> Recipe:
    """The recipe object of ``config.recipe`` (one of ``config.RECIPES``)."""
    return RECIPE_TYPES[config.recipe](config)
