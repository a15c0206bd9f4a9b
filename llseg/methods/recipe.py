"""The recipe plugin interface: what a continual method changes in the learner's generic stage loop.

A recipe is one module under :mod:`llseg.methods.recipes`: a :class:`Recipe` subclass registered
with ``@register_recipe("name")`` and, if the method has options of its own, a frozen
:class:`RecipeOptions` dataclass (``Options``) whose defaults are the published values. ``defaults``
holds the published values of shared training options (e.g. SSUL's ``loss_type: bce``).

The learner (:mod:`llseg.methods.learner`) calls the hooks below; every hook has a default that
gives plain fine-tuning. Targets are N×H×W student channel ids (255 = ignore); the background is
channel 0 whenever a recipe needs one (``needs_background``). Vocabulary: docs/glossary.md.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import numpy as np
import torch
from torch import nn

from llseg.data.labels import DatasetInfo
from llseg.errors import ConfigError
from llseg.methods.losses import bce_with_ignore, labelled_cross_entropy
from llseg.models import model_accepts, models_accepting

if TYPE_CHECKING:
    from llseg.methods.config import TrainConfig

Pair = tuple[str, str]  # (image path, label path)
Row = tuple[str, str, str]  # (image, full label, train label)


@dataclass(frozen=True)
class RecipeOptions:
    """Options of a recipe; subclasses add fields whose defaults are the method's published values
    and check their ranges in ``__post_init__`` (raising ``ConfigError``)."""


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
            teacher's classes; 0 in step 0. A domain-incremental stage with a teacher (see
            ``Recipe.domain_stages``) has ``old_classes == classes``: it adds no class.
        classes: all classes of the student |C_1:t|.
    """

    step: int
    old_classes: int
    classes: int

    @property
    def new_classes(self) -> int:
        """|C_t|: classes of the current step (0 in a domain-incremental stage with a teacher)."""
        return self.classes - self.old_classes

    @property
    def same_classes(self) -> bool:
        """A stage ≥ 1 that adds no class (a new domain): the teacher knows every class of the student."""
        return self.step >= 1 and self.classes == self.old_classes


class Recipe:
    """Base recipe: continue the current model, no teacher, supervised loss only."""

    name: ClassVar[str]
    Options: ClassVar[type[RecipeOptions]] = RecipeOptions
    defaults: ClassVar[Mapping[str, Any]] = {}  # published values of shared TrainConfig options
    keeps_teacher: ClassVar[bool] = False  # frozen copy of the previous model when classes are added
    needs_background: ClassVar[bool] = False  # dataset background class, channel 0 of step 0
    # the recipe has a form for domain-incremental splits (every class in every step, no background
    # needed): it keeps its teacher in steps >= 1 although they add no class (Stage.same_classes)
    domain_stages: ClassVar[bool] = False
    one_head_per_group: ClassVar[bool] = False  # the model grows one head per class group (else one block)
    teacher_maps: ClassVar[tuple[str, ...]] = ()  # forward_features maps of the begin_stage teacher pass
    capabilities: ClassVar[tuple[type, ...]] = ()  # protocols of llseg.models the recipe's model must meet

    def __init__(self, config: TrainConfig, info: DatasetInfo) -> None:
        self.config, self.info = config, info
        self.options = config.options
        self.stage = Stage(step=0, old_classes=0, classes=0)
        self.epoch, self.epochs = 1, config.epochs
        self._term_sums: dict[str, torch.Tensor] = {}
        self._term_counts: dict[str, int] = {}
        self.aux_gradient: bool | None = None

    # ---------------------------------------------------------------- configuration
    @classmethod
    def check_config(cls, config: TrainConfig) -> None:
        """Raise ``ConfigError`` for shared options this recipe cannot work with."""

    @property
    def fresh_student(self) -> bool:
        """Every stage starts from a new model (else from the current one, grown)."""
        return False

    @property
    def background_first(self) -> bool:
        """The first stage's first class must be the background (channel 0)."""
        return self.needs_background

    def model_kwargs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Check and complete the builder kwargs of ``config.model``."""
        return kwargs

    def require_model_option(self, kwargs: dict[str, Any], option: str, value: Any, what: str) -> None:
        """Set builder kwarg ``option`` to ``value``; a model without it, or a user value that
        differs, is a ``ConfigError`` naming the models that offer ``what``."""
        model, shown = self.config.model, str(value).lower() if isinstance(value, bool) else value
        if not model_accepts(model, option):
            offering = ", ".join(models_accepting(option)) or "none registered"
            raise ConfigError(f"recipe {self.name} needs a model with {what} (model_kwargs {option}: {shown}); "
                              f"{model!r} has none; models that offer it: {offering}")
        if kwargs.setdefault(option, value) != value:
            raise ConfigError(f"recipe {self.name} needs {what}; it needs model_kwargs {option}: {shown}, "
                              f"got {kwargs[option]!r}")

    def check_model(self, model: nn.Module) -> None:
        """Raise ``ConfigError`` if a freshly built ``model`` lacks one of ``capabilities``."""
        missing = [protocol.__name__ for protocol in self.capabilities if not isinstance(model, protocol)]
        if missing:
            raise ConfigError(f"recipe {self.name} needs a model with {', '.join(missing)} "
                              f"(llseg.models); {type(model).__name__} lacks it")

    def after_grow(self, model: nn.Module, num_new: int) -> None:
        """Initialise the ``num_new`` channels (or head) just appended to ``model``."""

    # ------------------------------------------------------------------------ data
    def target_lut(self, lut: np.ndarray) -> np.ndarray:
        """The ``uint8[256]`` train id -> target channel table, from the learner's class channels."""
        return lut

    def dataset_options(self, pairs: Sequence[Pair]) -> dict[str, Any]:
        """Extra ``SegmentationPairs`` keywords for a stage's training ``pairs``."""
        return {}

    def stage_pairs(self, rows: Sequence[Row]) -> list[Pair]:
        """The (image, label) pairs a stage trains on, from its rows: their train labels."""
        return [(image, train) for image, _, train in rows]

    def replay_pairs(self) -> list[Pair]:
        """(image, full label) exemplars of earlier steps mixed into steps ≥ 1, half of every batch."""
        return []

    @property
    def replay_capacity(self) -> int:
        """The most exemplars :meth:`replay_pairs` can hold (0: no replay); ``llseg bench --plan`` counts them."""
        return 0

    @property
    def teacher_pass(self) -> bool:
        """Whether :meth:`begin_stage` runs the teacher over the stage's data (one forward per image)
        before training; ``llseg bench --plan`` counts it."""
        return False

    def end_stage(self, rows: Sequence[Row], classes: Sequence[int], presence: Callable[[str], np.ndarray],
                  *, seed: int) -> None:
        """Called after a stage's training with the rows it used, the learner's classes, a function
        label path -> ``bool[num_classes]`` presence, and a seed for the stage."""

    def state_dict(self) -> dict[str, Any]:
        """Plain data a checkpoint must keep for later stages (e.g. an exemplar memory)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`."""

    # -------------------------------------------------------------------- training
    def begin_stage(self, stage: Stage, teacher_outputs: TeacherOutputs | None) -> None:
        """Called before a stage's first step; ``teacher_outputs`` (None without a teacher) is lazy:
        it runs the teacher over the training data only if consumed. Resets the recorded terms."""
        self.stage = stage
        self.epoch, self.epochs = 1, self.config.epochs
        self._term_sums, self._term_counts = {}, {}
        self.aux_gradient = None

    def begin_epoch(self, epoch: int, epochs: int) -> None:
        """Called before each epoch's first batch: ``epoch`` is 1-based (1..``epochs``)."""
        self.epoch, self.epochs = epoch, epochs

    def record(self, terms: Mapping[str, torch.Tensor | float]) -> None:
        """Add one batch's value of each named loss term (kept on the device: no synchronisation)."""
        for name, value in terms.items():
            value = value.detach().float() if isinstance(value, torch.Tensor) else torch.tensor(float(value))
            self._term_sums[name] = self._term_sums[name] + value if name in self._term_sums else value
            self._term_counts[name] = self._term_counts.get(name, 0) + 1

    def term_totals(self) -> dict[str, tuple[float, int]]:
        """(sum, batches) of each recorded term so far in the stage (the engine's per-epoch means)."""
        return {k: (float(v), self._term_counts[k]) for k, v in self._term_sums.items()}

    def records(self) -> dict[str, Any]:
        """The recorded loss terms so far (for a resumable training checkpoint)."""
        sums = {k: float(v) for k, v in self._term_sums.items()}
        return {"sums": sums, "counts": dict(self._term_counts), "aux_gradient": self.aux_gradient}

    def load_records(self, records: Mapping[str, Any]) -> None:
        """Restore :meth:`records` (0-dim CPU tensors: they add to terms on any device)."""
        self._term_sums = {k: torch.tensor(v) for k, v in records["sums"].items()}
        self._term_counts = dict(records["counts"])
        self.aux_gradient = records["aux_gradient"]

    def stage_report(self) -> dict[str, Any]:
        """``loss_terms``: mean of each recorded term over the stage's batches; ``aux_gradient``
        (whether an auxiliary term reached a trainable parameter; None without one)."""
        means = {k: float(v) / self._term_counts[k] for k, v in self._term_sums.items()}
        return {"loss_terms": means, "aux_gradient": self.aux_gradient}

    def learning_rate(self) -> float:
        """``lr`` in step 0, ``lr_incremental`` (when set) in later steps."""
        cfg = self.config
        return cfg.lr_incremental if self.stage.step >= 1 and cfg.lr_incremental is not None else cfg.lr

    def gradient_clip(self) -> float | None:
        """``grad_clip`` in step 0, ``grad_clip_incremental`` (when set) in later steps; None = no clipping."""
        cfg = self.config
        return cfg.grad_clip_incremental if self.stage.step >= 1 and cfg.grad_clip_incremental is not None else cfg.grad_clip

    def param_groups(self, student: nn.Module) -> list[dict[str, Any]]:
        """Every parameter trains; ``model.backbone`` at ``backbone_lr`` when set, scaled in steps ≥ 1
        by ``lr_incremental / lr`` like the rest."""
        cfg, lr = self.config, self.learning_rate()
        for p in student.parameters():
            p.requires_grad_(True)
        if cfg.backbone_lr is None:
            return [{"params": list(student.parameters()), "lr": lr}]
        backbone = getattr(student, "backbone", None)
        if backbone is None:
            raise ConfigError(f"backbone_lr: model {cfg.model!r} has no backbone module")
        ids = {id(p) for p in backbone.parameters()}
        backbone_lr = cfg.backbone_lr if lr == cfg.lr else cfg.backbone_lr * (lr / cfg.lr)
        return [{"params": list(backbone.parameters()), "lr": backbone_lr},
                {"params": [p for p in student.parameters() if id(p) not in ids], "lr": lr}]

    def supervised(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``loss_type``: per-class sigmoid BCE or softmax cross-entropy, over labelled pixels."""
        if self.config.loss_type == "bce":
            return bce_with_ignore(logits, target)
        return labelled_cross_entropy(logits, target)

    def loss(self, student: nn.Module, teacher: nn.Module | None, image: torch.Tensor,
             target: torch.Tensor) -> torch.Tensor:
        """Loss of one batch: image N×3×H×W, target N×H×W."""
        return self.supervised(student(image), target)

    # ------------------------------------------------------------------- inference
    def class_scores(self, logits: torch.Tensor) -> torch.Tensor:
        """N×K×H×W scores whose argmax is the prediction (channel k = the learner's class k)."""
        return logits.float()
