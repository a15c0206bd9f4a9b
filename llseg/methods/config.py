"""Hyperparameters of a continual segmentation run, validated from YAML-style key/value pairs."""
from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any, Optional

from llseg.errors import ConfigError
from llseg.methods.optim import LR_POLICIES, OPTIMIZERS

RECIPES = ("joint", "finetune", "cil", "ssul")
LOSS_TYPES = ("ce", "bce")
# SSUL's flags (methods.md §2); they change nothing in the other recipes, so setting them there is an error.
SSUL_ONLY = ("unknown", "saliency_dir", "pseudo", "freeze", "bn_freeze", "w_transfer", "mem_size")
# Keys whose default is None: the type their values convert to.
OPTIONAL_TYPES: dict[str, type] = {"backbone_lr": float, "split": str, "saliency_dir": str, "amp": bool}


def parse_size(value: Any, key: str) -> Optional[tuple[int, int]]:
    """``"128x256"``, ``[128, 256]`` or ``None`` -> (H, W)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        parts = value.lower().split("x")
    elif isinstance(value, (list, tuple)):
        parts = list(value)
    else:
        raise ConfigError(f"hyperparameter {key}: expected HxW like '128x256' or [128, 256], got {value!r}")
    try:
        h, w = (int(v) for v in parts)
    except (TypeError, ValueError):
        raise ConfigError(f"hyperparameter {key}: expected HxW like '128x256' or [128, 256], got {value!r}") from None
    if h <= 0 or w <= 0:
        raise ConfigError(f"hyperparameter {key}: sizes must be positive, got {value!r}")
    return h, w


@dataclass(frozen=True)
class TrainConfig:
    """Everything that shapes training and prediction. Defaults follow Klingner et al. (methods.md §1.4)
    except ``epochs``, which is small so CPU runs take minutes; paper value: 200.

    Attributes:
        recipe: ``joint`` (all classes at once, full labels, retrained on every round's data so far),
            ``finetune`` (new labels only, no distillation), ``cil`` (Klingner's distillation) or
            ``ssul`` (Cha et al.: per-step heads, frozen old model, pseudo-labels; DeepLabV3 only).
        split: split preset (``llseg.data.splits``, e.g. ``voc-15-1``) whose steps are the class
            groups: a stage that shows any class of a step adds the whole step as one group, so a
            first round that sees only some step-0 classes still builds step 0's head. Without it,
            a group is the set of new classes a stage's labels show.
        model: registry name of the architecture; ``model_kwargs`` go to its builder.
        input_size: (H, W) images are resized to before augmentation and for prediction (the paper
            uses 512×1024 for Cityscapes); ``None`` keeps each image's size.
        crop_size: (H, W) random training crop (paper 192×640); ``None`` trains on whole images.
        scale: range of the random down-rescale factor s (image shrinks by 1/s).
        temperature, lambda_gs: distillation temperature T and entropy weight λ_GS (cil only).
        init_from_teacher: cil only; start the student from the teacher instead of a fresh model
            (the paper re-initialises the student every stage).
        precision: ``auto`` (fp16 autocast on CUDA, bf16 autocast on CPUs with native bf16, else
            fp32), ``fp32``, ``bf16`` or ``fp16``. ``amp`` (the SSUL flag) overrides it:
            ``false`` = fp32, ``true`` = mixed precision (``precision`` must not be fp32).
        optimizer: ``adam`` (Klingner) or ``sgd`` (Nesterov 0.9; SSUL/MiB/PLOP).
        lr_policy: ``poly`` | ``warm_poly`` | ``step`` per iteration (see ``llseg.methods.optim``);
            ``step_size`` iterations per decay for ``step``.
        backbone_lr: learning rate of ``model.backbone`` (SSUL: 0.001 with lr 0.01); None = lr.
        loss_type: ``ce`` (softmax cross-entropy) or ``bce`` (SSUL's per-class sigmoid BCE; also
            switches prediction and pseudo-labelling to sigmoid).

    SSUL only (methods.md §2):
        unknown: an unknown channel; background pixels are labelled unknown (all of them, or the
            salient ones when ``saliency_dir`` holds ``<image stem>.png`` maps); merged into the
            background at inference.
        pseudo, pseudo_thresh: pseudo-label background with the old model's confident foreground.
        freeze: steps ≥ 1 train only the new head (and the unknown head, and the background head
            at lr · 1e-4). bn_freeze: steps ≥ 1 keep every BatchNorm in eval mode, affine frozen.
        w_transfer: initialise each new head from the unknown head (needs ``unknown``).
        mem_size: class-balanced exemplar memory of earlier steps' images; half of every batch.
    """

    recipe: str = "cil"
    model: str = "erfnet"
    dataset: str = "cityscapes"
    epochs: int = 10
    batch_size: int = 6
    lr: float = 5e-4
    weight_decay: float = 3e-4
    lr_power: float = 0.9
    input_size: Optional[tuple[int, int]] = None
    crop_size: Optional[tuple[int, int]] = None
    scale: tuple[float, float] = (1.0, 1.5)
    flip: bool = True
    jitter: float = 0.2
    temperature: float = 1.0
    lambda_gs: float = 1.0
    init_from_teacher: bool = False
    seed: int = 1234
    device: str = "auto"
    precision: str = "auto"
    num_workers: int = 0
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    split: Optional[str] = None
    optimizer: str = "adam"
    lr_policy: str = "poly"
    step_size: int = 10000
    backbone_lr: Optional[float] = None
    loss_type: str = "ce"
    amp: Optional[bool] = None
    unknown: bool = False
    saliency_dir: Optional[str] = None
    pseudo: bool = False
    pseudo_thresh: float = 0.7
    freeze: bool = False
    bn_freeze: bool = False
    w_transfer: bool = False
    mem_size: int = 0

    @classmethod
    def from_hyperparameters(cls, hyperparameters: dict[str, Any], *, source: str = "hyperparameters") -> "TrainConfig":
        """Build from Ianvs-style kwargs; unknown keys and bad values raise ``ConfigError`` naming them."""
        names = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for key, value in hyperparameters.items():
            if key not in names:
                close = difflib.get_close_matches(key, names, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else f"; valid keys: {', '.join(names)}"
                raise ConfigError(f"{source}: unknown hyperparameter {key!r}{hint}")
            values[key] = cls._convert(key, value, names[key].default)
        try:
            return cls(**values)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None

    def __post_init__(self) -> None:
        """Raise ``ConfigError`` for values or combinations that cannot work."""
        choices = (("recipe", RECIPES), ("loss_type", LOSS_TYPES), ("optimizer", OPTIMIZERS), ("lr_policy", LR_POLICIES))
        for key, valid in choices:
            if getattr(self, key) not in valid:
                raise ConfigError(f"{key} must be one of {', '.join(valid)}, got {getattr(self, key)!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.step_size < 1:
            raise ConfigError("epochs, batch_size and step_size must be >= 1")
        if self.mem_size < 0 or not 0.0 <= self.pseudo_thresh <= 1.0:
            raise ConfigError("need mem_size >= 0 and 0 <= pseudo_thresh <= 1")
        if self.recipe != "ssul":
            defaults = {f.name: f.default for f in dataclasses.fields(self)}
            misplaced = [k for k in SSUL_ONLY if getattr(self, k) != defaults[k]]
            if misplaced:
                raise ConfigError(f"{', '.join(misplaced)} apply to recipe ssul only, not {self.recipe!r}")
        if self.w_transfer and not self.unknown:
            raise ConfigError("w_transfer copies the unknown head; set unknown: true")
        if self.saliency_dir and not self.unknown:
            raise ConfigError("saliency_dir labels the unknown class; set unknown: true")
        if self.amp and self.precision == "fp32":
            raise ConfigError("amp: true contradicts precision: fp32; drop one of them")
        if self.mem_size and self.batch_size < 2:
            raise ConfigError("mem_size fills half of every batch; use batch_size >= 2")

    @property
    def effective_precision(self) -> str:
        """``precision`` after the ``amp`` flag: amp false -> fp32."""
        return "fp32" if self.amp is False else self.precision

    @staticmethod
    def _convert(key: str, value: Any, default: Any) -> Any:
        if key in OPTIONAL_TYPES:
            if value is None or value == "":
                return None
            default = OPTIONAL_TYPES[key]()
        if key in ("input_size", "crop_size"):
            return parse_size(value, key)
        if key == "scale":
            try:
                low, high = (float(v) for v in value)
            except (TypeError, ValueError):
                raise ConfigError(f"hyperparameter scale: expected [low, high], got {value!r}") from None
            if not 0 < low <= high:
                raise ConfigError(f"hyperparameter scale: need 0 < low <= high, got {value!r}")
            return low, high
        if key == "model_kwargs":
            if not isinstance(value, dict):
                raise ConfigError(f"hyperparameter model_kwargs: expected a mapping, got {value!r}")
            return dict(value)
        if isinstance(default, bool):
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
            if not isinstance(value, bool):
                raise ConfigError(f"hyperparameter {key}: expected true/false, got {value!r}")
            return value
        if isinstance(default, (int, float)):
            try:
                number = type(default)(value)
            except (TypeError, ValueError):
                raise ConfigError(f"hyperparameter {key}: expected a number, got {value!r}") from None
            if isinstance(default, int) and number != float(value):
                raise ConfigError(f"hyperparameter {key}: expected an integer, got {value!r}")
            return number
        return str(value)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (tuples as lists) for checkpoints and reports."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}
