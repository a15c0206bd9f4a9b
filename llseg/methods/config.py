"""Hyperparameters of a continual segmentation run, validated from YAML-style key/value pairs."""
from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any, Optional

from llseg.errors import ConfigError

RECIPES = ("joint", "finetune", "cil")


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
            ``finetune`` (new labels only, no distillation) or ``cil`` (Klingner's distillation).
        model: registry name of the architecture; ``model_kwargs`` go to its builder.
        input_size: (H, W) images are resized to before augmentation and for prediction (the paper
            uses 512×1024 for Cityscapes); ``None`` keeps each image's size.
        crop_size: (H, W) random training crop (paper 192×640); ``None`` trains on whole images.
        scale: range of the random down-rescale factor s (image shrinks by 1/s).
        temperature, lambda_gs: distillation temperature T and entropy weight λ_GS (cil only).
        init_from_teacher: cil only; start the student from the teacher instead of a fresh model
            (the paper re-initialises the student every stage).
        precision: ``auto`` (fp16 autocast on CUDA, bf16 autocast on CPUs with native bf16, else
            fp32), ``fp32``, ``bf16`` or ``fp16``.
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
        config = cls(**values)
        if config.recipe not in RECIPES:
            raise ConfigError(f"{source}: recipe must be one of {', '.join(RECIPES)}, got {config.recipe!r}")
        if config.epochs < 1 or config.batch_size < 1:
            raise ConfigError(f"{source}: epochs and batch_size must be >= 1")
        return config

    @staticmethod
    def _convert(key: str, value: Any, default: Any) -> Any:
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
