"""The resolved configuration of a run: shared training options plus the recipe's own options.

:func:`resolve_config` turns YAML-style key/value pairs (Ianvs hyperparameters, ``llseg train
--set``) into a :class:`TrainConfig`, in four layers, later ones winning:

1. the defaults of :class:`TrainConfig` (Klingner et al.'s ERFNet settings, docs/methods.md §1.4);
2. the model's ``train_defaults`` (``llseg.models.register_model``; DeepLabV3: SSUL's VOC settings);
3. the recipe's published defaults (``Recipe.defaults`` and its ``Options`` dataclass);
4. the keys the user sets.

``llseg train --print-config`` prints the result, and the estimators log it, so every entry point
resolves the same keys the same way.
"""
from __future__ import annotations

import dataclasses
import difflib
import logging
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Union

from llseg.data.transforms import UPSAMPLE_MODES
from llseg.errors import ConfigError
from llseg.methods.events import check_available
from llseg.methods.optim import LR_POLICIES, OPTIMIZERS
from llseg.methods.recipe import RecipeOptions
from llseg.methods.registry import canonical_name, get_recipe, list_recipes
from llseg.models import model_train_defaults
from llseg.runtime import PRECISIONS

log = logging.getLogger("llseg.config")
LOSS_TYPES = ("ce", "bce")
VAL_METRICS = ("all", "current")  # val_metric: mIoU over the learned classes, or the current step's
DEFAULT_RECIPE = "klingner"
SIZE_KEYS = ("input_size", "crop_size")


def parse_size(value: Any, key: str) -> tuple[int, int] | None:
    """``"128x256"``, ``[128, 256]`` or ``None`` -> (H, W)."""
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        raise ConfigError(f"hyperparameter {key}: got the number {value}; YAML reads 0x... as a hexadecimal number: "
                          "write the size in quotes, e.g. '64x128', or as [64, 128]")
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
    """Everything that shapes training and prediction. Each recipe's own options are in ``options``
    (its ``Options`` dataclass); option meanings and published values: docs/methods.md.

    Attributes:
        recipe: registered recipe name (``llseg.methods.registry.list_recipes``).
        model: model registry name; ``model_kwargs`` go to its builder.
        dataset: label table (``llseg.data.labels``): cityscapes, voc, isprs, ...
        split: split preset (``llseg.data.splits``, e.g. ``voc-15-1``) whose steps are the class
            groups: a stage that shows any class of a step adds the whole step. Without it, a
            group is the set of new classes a stage's labels show.
        epochs, batch_size, lr, weight_decay: per stage; ``lr_power`` of the poly policies.
        optimizer: ``adam`` or ``sgd`` (Nesterov 0.9). ``lr_policy``: ``poly`` | ``warm_poly`` |
            ``step`` per iteration (``llseg.methods.optim``); ``step_size`` iterations per decay.
        backbone_lr: learning rate of ``model.backbone``; None = ``lr``.
        lr_incremental: learning rate instead of ``lr`` in steps ≥ 1 (the backbone's is scaled by the
            same ratio); None = ``lr``.
        loss_type: ``ce`` (softmax cross-entropy) or ``bce`` (per-class sigmoid BCE).
        input_size: (H, W) images are resized to before augmentation and for prediction; None keeps
            each image's size. ``crop_size``: random training crop; None trains on whole images.
        eval_upsample: how prediction scores at ``input_size`` are resized to the label size:
            ``bilinear`` or ``nearest`` (Klingner et al.'s evaluation, docs/methods.md §1.5).
        eval_crop: S: evaluate as MiB/PLOP/SSUL do (resize the shorter side to S, center-crop S×S):
            the model sees the centred min(H, W) square of each image resized to S×S, and pixels
            outside that square are predicted 255 and not scored (docs/methods.md §9.4); None: the
            full image.
        scale, flip, jitter: random down-rescale range (image shrinks by 1/s), horizontal flip,
            colour jitter strength.
        data_ratio: steps ≥ 1 train on round(δ · N) of their N images (LAG's data-limited protocol,
            docs/methods.md §4.1), a subset fixed by ``seed``; step 0 uses every image.
        grad_clip: maximum global L2 norm of the trainable gradients; None = off.
        grad_clip_incremental: ``grad_clip`` instead in steps ≥ 1 (None: ``grad_clip`` in every step).
        precision: ``auto`` (fp16 on CUDA, bf16 on CPUs with native bf16, else fp32), ``fp32``,
            ``bf16`` or ``fp16``. device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        num_workers: DataLoader workers; ``auto``: none on CPU, min(4, cores − 1) with CUDA.
        seed: seeds initialisation, data order and augmentation (drawn per sample).
        accumulate: micro-batches per optimiser step: each step still sees ``batch_size`` samples
            (the global batch, split over ``accumulate`` × the data-parallel processes;
            ``llseg.distributed``). sync_bn: SyncBatchNorm across the processes (CUDA only).
        devices: processes a stage trains on when run in one process (the estimators, ``llseg
            bench``): N > 1 launches N local data-parallel workers (one GPU each on CUDA, gloo on
            CPU; ``llseg.methods.launch``). Under ``torchrun`` the world size comes from torchrun.
        val_every: N > 0: score the model on the validation images (``val_index``) every N epochs
            and after the last one, and keep the weights of the best epoch (mIoU over the classes
            learned so far, ``mIoU_all``; the earliest on ties) as the stage's result; 0 = the
            last epoch's weights (docs/methods.md §9.4).
        val_index: index file of the validation images (``<image> <full_label> ...`` per line);
            ``llseg train`` defaults it to the prepared folder's ``val_index.txt``.
        val_metric: the validation score ``val_every`` maximises: ``all`` (mIoU over the classes
            learned so far) or ``current`` (mIoU over the current step's classes, background
            included in step 0: SSUL's released rule).
        checkpoint_every: epochs between resumable training checkpoints, when the caller names a
            file for them (``llseg train --out``, ``llseg bench``); 0 = none. No effect on results.
        tensorboard: folder for TensorBoard event files (losses, lr, per-round mIoU;
            ``llseg.methods.events``, extra ``llseg[tensorboard]``); None = none written.
        options: the recipe's options (``get_recipe(recipe).Options``).
    """

    recipe: str = DEFAULT_RECIPE
    model: str = "erfnet"
    dataset: str = "cityscapes"
    split: str | None = None
    epochs: int = 10
    batch_size: int = 6
    lr: float = 5e-4
    weight_decay: float = 3e-4
    lr_power: float = 0.9
    optimizer: str = "adam"
    lr_policy: str = "poly"
    step_size: int = 10000
    backbone_lr: float | None = None
    lr_incremental: float | None = None
    loss_type: str = "ce"
    input_size: tuple[int, int] | None = None
    crop_size: tuple[int, int] | None = None
    eval_upsample: str = "bilinear"
    eval_crop: int | None = None
    scale: tuple[float, float] = (1.0, 1.5)
    flip: bool = True
    jitter: float = 0.2
    data_ratio: float = 1.0
    grad_clip: float | None = None
    grad_clip_incremental: float | None = None
    precision: str = "auto"
    device: str = "auto"
    num_workers: int | str = "auto"
    seed: int = 1234
    accumulate: int = 1
    sync_bn: bool = False
    devices: int = 1
    checkpoint_every: int = 1
    tensorboard: str | None = None
    val_every: int = 0
    val_index: str | None = None
    val_metric: str = "all"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    options: RecipeOptions = field(default=None)  # type: ignore[assignment]  # filled in __post_init__

    @classmethod
    def from_hyperparameters(cls, hyperparameters: Mapping[str, Any], *, source: str = "hyperparameters") -> TrainConfig:
        """:func:`resolve_config`."""
        return resolve_config(hyperparameters, source=source)

    def __post_init__(self) -> None:
        """Raise ``ConfigError`` for values or combinations that cannot work."""
        recipe = get_recipe(self.recipe)
        if self.options is None:
            object.__setattr__(self, "options", recipe.Options())
        elif type(self.options) is not recipe.Options:
            raise ConfigError(f"recipe {self.recipe} takes {recipe.Options.__name__}, got {type(self.options).__name__}")
        choices = (("loss_type", LOSS_TYPES), ("optimizer", OPTIMIZERS), ("lr_policy", LR_POLICIES),
                   ("precision", PRECISIONS), ("eval_upsample", UPSAMPLE_MODES))
        for key, valid in choices:
            if getattr(self, key) not in valid:
                raise ConfigError(f"{key} must be one of {', '.join(valid)}, got {getattr(self, key)!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.step_size < 1:
            raise ConfigError("epochs, batch_size and step_size must be >= 1")
        if self.accumulate < 1 or self.devices < 1:
            raise ConfigError(f"accumulate and devices must be >= 1, got {self.accumulate} and {self.devices}")
        if self.eval_crop is not None and self.eval_crop < 1:
            raise ConfigError(f"eval_crop must be a crop side >= 1 (e.g. 512) or null for full images, got {self.eval_crop}")
        if self.val_every < 0:
            raise ConfigError(f"val_every must be >= 0 (0: keep the last epoch), got {self.val_every}")
        if self.val_every > 0 and not self.val_index:
            raise ConfigError("val_every needs val_index: the index file of the validation images (e.g. the prepared "
                              "folder's val_index.txt); llseg train sets it from --data")
        if self.val_metric not in VAL_METRICS:
            raise ConfigError(f"val_metric must be one of {', '.join(VAL_METRICS)} (the score val_every maximises), "
                              f"got {self.val_metric!r}")
        if self.checkpoint_every < 0:
            raise ConfigError(f"checkpoint_every must be >= 0 (0: no training checkpoints), got {self.checkpoint_every}")
        if self.num_workers != "auto" and (isinstance(self.num_workers, bool) or not isinstance(self.num_workers, int)
                                           or self.num_workers < 0):
            raise ConfigError(f"num_workers must be 'auto' or an integer >= 0, got {self.num_workers!r}")
        if not 0.0 < self.data_ratio <= 1.0:
            raise ConfigError(f"data_ratio must be in (0, 1], got {self.data_ratio}")
        if self.lr_incremental is not None and self.lr_incremental <= 0:
            raise ConfigError(f"lr_incremental must be > 0, got {self.lr_incremental}")
        for name in ("grad_clip", "grad_clip_incremental"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(f"{name} (a gradient norm) must be > 0, got {value}")
        if "unknown" in self.model_kwargs:
            raise ConfigError("model_kwargs: unknown is set by the recipe; use the hyperparameter unknown instead")
        if self.tensorboard is not None:
            check_available()
        recipe.check_config(self)

    @property
    def eval_size(self) -> tuple[int, int] | None:
        """(H, W) the model sees when predicting: the ``eval_crop`` square (S, S), else ``input_size``
        (None: the image's own size)."""
        return (self.eval_crop, self.eval_crop) if self.eval_crop is not None else self.input_size

    def to_dict(self) -> dict[str, Any]:
        """Flat plain data (tuples as lists): the shared options, then the recipe's options. The
        form of checkpoints, reports and ``--print-config``; :func:`resolve_config` reads it back."""
        shared = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "options"}
        own = {f.name: getattr(self.options, f.name) for f in dataclasses.fields(self.options)}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in {**shared, **own}.items()}


SHARED_KEYS = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name != "options")


def resolve_config(hyperparameters: Mapping[str, Any], *, source: str = "hyperparameters") -> TrainConfig:
    """The :class:`TrainConfig` of YAML-style ``hyperparameters`` (see the module docstring).

    Raises:
        ConfigError: an unknown key (naming the recipes it belongs to, or the closest valid key),
            a value of the wrong type, or a combination that cannot work; ``source`` prefixes it.
    """
    try:
        return _resolve(dict(hyperparameters), source)
    except ConfigError as exc:
        message = str(exc)
        raise ConfigError(message if message.startswith(f"{source}:") else f"{source}: {message}") from None


def _resolve(hps: dict[str, Any], source: str) -> TrainConfig:
    if "amp" in hps:
        amp = _convert("amp", hps.pop("amp"), bool)
        if "precision" in hps:
            raise ConfigError("amp is the deprecated name of precision; set only precision")
        log.warning("%s: hyperparameter amp is deprecated; use precision: %s", source, "auto" if amp else "fp32")
        if not amp:
            hps["precision"] = "fp32"
    recipe_name = canonical_name(str(hps.get("recipe", DEFAULT_RECIPE)))
    recipe = get_recipe(recipe_name)
    model = str(hps.get("model", TrainConfig.model))
    values = {**model_train_defaults(model), **recipe.defaults, **hps, "recipe": recipe_name}
    shared_hints = typing.get_type_hints(TrainConfig)
    option_hints = typing.get_type_hints(recipe.Options)
    shared: dict[str, Any] = {}
    own: dict[str, Any] = {}
    for key, value in values.items():
        if key in SHARED_KEYS:
            shared[key] = _convert(key, value, shared_hints[key])
        elif key in option_hints:
            own[key] = _convert(key, value, option_hints[key])
        else:
            raise ConfigError(_unknown_key(key, recipe_name, [*SHARED_KEYS, *option_hints]))
    return TrainConfig(**shared, options=recipe.Options(**own))


def _unknown_key(key: str, recipe: str, valid: list[str]) -> str:
    owners = [name for name in list_recipes() if key in typing.get_type_hints(get_recipe(name).Options)]
    if owners:
        plural = "s" if len(owners) > 1 else ""
        return f"{key} applies to recipe{plural} {', '.join(owners)} only, not {recipe!r}"
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else f"; valid keys for recipe {recipe}: {', '.join(valid)}"
    return f"unknown hyperparameter {key!r}{hint}"


def _convert(key: str, value: Any, hint: Any) -> Any:
    """``value`` (a YAML scalar, list or mapping, or a string from ``--set``) as type ``hint``."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (Union, types.UnionType) and type(None) in args:
        if value is None or value == "":
            return None
        hint = next(a for a in args if a is not type(None))
    if key in SIZE_KEYS:
        return parse_size(value, key)
    if key == "scale":
        try:
            low, high = (float(v) for v in value)
        except (TypeError, ValueError):
            raise ConfigError(f"hyperparameter scale: expected [low, high], got {value!r}") from None
        if not 0 < low <= high:
            raise ConfigError(f"hyperparameter scale: need 0 < low <= high, got {value!r}")
        return low, high
    if key == "num_workers" and value == "auto":
        return value
    if key == "num_workers":
        hint = int
    if key == "model_kwargs":
        if not isinstance(value, dict):
            raise ConfigError(f"hyperparameter model_kwargs: expected a mapping, got {value!r}")
        return dict(value)
    if hint is bool:
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            raise ConfigError(f"hyperparameter {key}: expected true/false, got {value!r}")
        return value
    if hint in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"hyperparameter {key}: expected a number, got {value!r}")
        try:
            number = hint(value)
        except (TypeError, ValueError):
            raise ConfigError(f"hyperparameter {key}: expected a number, got {value!r}") from None
        if hint is int and number != float(value):
            raise ConfigError(f"hyperparameter {key}: expected an integer, got {value!r}")
        return number
    return str(value)
