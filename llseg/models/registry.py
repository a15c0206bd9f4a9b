"""Model registry, the contract every registered model meets, and the helpers that implement it.

Contract (checked by ``create_model`` and by the registry-parametrised tests): a registered model
has ``num_classes``, ``add_classes(num_new)``, ``classifier_parameters()`` and
``forward(x: N×3×H×W) -> logits N×C×H×W`` at the input size, for any H and W.

Capabilities that some recipes need beyond the contract are protocols too (:class:`StepHeadsModel`,
:class:`ExpandingClassifierModel`, :class:`FeatureModel`); recipes check them with ``isinstance``
and never test model names. A registration may carry ``train_defaults``: the optimisation settings
the model family is trained with in its papers, the first layer of a run's resolved config.

Checkpoints are local files only (no downloads): a ``state_dict`` or ``{"state_dict": ...}``,
loaded with ``map_location="cpu"``; a ``module.`` prefix (``nn.DataParallel``) is stripped.
"""
from __future__ import annotations

import inspect
import os
import pickle
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar, cast, runtime_checkable

import torch
from torch import Tensor, nn

ModelBuilder = TypeVar("ModelBuilder", bound=Callable[..., nn.Module])
GrowInit = Literal["default", "zeros", "copy_mean"]
Classifier = TypeVar("Classifier", nn.Conv2d, nn.ConvTranspose2d)

_MODELS: dict[str, Callable[..., nn.Module]] = {}
_TRAIN_DEFAULTS: dict[str, dict[str, Any]] = {}


@runtime_checkable
class SegmentationModel(Protocol):
    """What every registered model exposes (see the module docstring for the output contract)."""

    @property
    def num_classes(self) -> int: ...

    def add_classes(self, num_new: int, *, init: GrowInit = "default") -> None: ...

    def classifier_parameters(self) -> Iterator[nn.Parameter]: ...

    def forward(self, x: Tensor) -> Tensor: ...


@runtime_checkable
class StepHeadsModel(Protocol):
    """One classifier head per step (SSUL): ``step_heads[i]`` is step i's ``nn.Sequential`` whose last
    layer is its 1×1 logit conv."""

    @property
    def step_heads(self) -> nn.ModuleList: ...


@runtime_checkable
class ExpandingClassifierModel(Protocol):
    """One growable 1×1 logit conv for every class (MiB): ``logit_conv`` C×256×1×1."""

    @property
    def logit_conv(self) -> nn.Conv2d: ...


@runtime_checkable
class FeatureModel(Protocol):
    """Intermediate maps for feature distillation.

    ``forward_features(x)`` returns at least ``"layer1".."layer4"``, ``"aspp"``, ``"logits_lowres"``
    and ``"logits"`` (identical to ``forward(x)``), plus ``"aspp_layer1".."aspp_layer3"`` when built
    with taps; ``detach_head`` makes the classifier read detached features; ``preactivation`` gives
    the backbone stages before their last ReLU (PLOP's released POD inputs). ``body_parameters()``:
    every parameter upstream of the classifier (backbone, ASPP, taps).
    """

    def forward_features(self, x: Tensor, *, detach_head: bool = False, preactivation: bool = False) -> dict[str, Tensor]: ...

    def body_parameters(self) -> Iterator[nn.Parameter]: ...


def register_model(
    name: str, *, train_defaults: Mapping[str, Any] | None = None
) -> Callable[[ModelBuilder], ModelBuilder]:
    """Decorator registering ``fn(*, num_classes: int, **kwargs) -> nn.Module`` under ``name``.

    ``train_defaults``: hyperparameters (``TrainConfig`` keys) this model is trained with unless a
    recipe's published defaults or the user say otherwise.

    Raises:
        ValueError: ``name`` is already registered.
    """
    key = name.lower()

    def decorate(fn: ModelBuilder) -> ModelBuilder:
        if key in _MODELS:
            raise ValueError(f"model {key!r} is already registered (by {_MODELS[key].__module__})")
        _MODELS[key] = fn
        _TRAIN_DEFAULTS[key] = dict(train_defaults or {})
        return fn

    return decorate


def model_train_defaults(name: str) -> dict[str, Any]:
    """The ``train_defaults`` registered with model ``name`` (empty for an unknown name)."""
    return dict(_TRAIN_DEFAULTS.get(name.lower(), {}))


def model_accepts(name: str, option: str) -> bool:
    """Whether the builder of model ``name`` takes the keyword ``option`` (e.g. ``head``)."""
    builder = _MODELS.get(name.lower())
    return builder is not None and option in inspect.signature(builder).parameters


def models_accepting(option: str) -> list[str]:
    """Registered names whose builder takes the keyword ``option``."""
    return [name for name in list_models() if model_accepts(name, option)]


def list_models() -> list[str]:
    """Sorted names accepted by :func:`create_model`."""
    return sorted(_MODELS)


def create_model(
    name: str, *, num_classes: int, weights: str | os.PathLike[str] | None = None, **kwargs: object
) -> nn.Module:
    """Build a registered model, optionally loading a local checkpoint of the whole model.

    Args:
        name: registered name (case-insensitive), see :func:`list_models`.
        num_classes: number of output channels C of the logits.
        weights: local checkpoint path for the whole model; ``None`` keeps the builder's init.
        **kwargs: forwarded to the builder (e.g. ``encoder_weights`` for ERFNet).

    Raises:
        ValueError: unknown ``name`` (the message lists the valid names), or a checkpoint that
            does not fit the model (see :func:`load_weights`).
        FileNotFoundError: ``weights`` does not exist.
        TypeError: the builder returned a model that breaks the contract.
    """
    builder = _MODELS.get(name.lower())
    if builder is None:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(list_models())}")
    model = builder(num_classes=num_classes, **kwargs)
    if not isinstance(model, SegmentationModel):
        raise TypeError(f"builder {name!r} returned {type(model).__name__}, which lacks the SegmentationModel API")
    if weights is not None:
        load_weights(model, weights)
    return model


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    """Tensors of a checkpoint file, unwrapped from ``{"state_dict": ...}`` and ``module.``."""
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        raise ValueError(f"{path}: not a readable torch checkpoint ({exc})") from exc
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError(f"{path}: expected a state_dict or {{'state_dict': ...}} of tensors")
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k.removeprefix("module."): v for k, v in obj.items()}
    return dict(obj)


def load_weights(module: nn.Module, path: str | os.PathLike[str], *, prefix: str = "") -> None:
    """Load a local checkpoint into ``module``, strictly, with explanatory errors.

    Args:
        module: the model (or sub-module, e.g. ``model.encoder``) to fill in place.
        path: local checkpoint file.
        prefix: if some checkpoint keys start with it (e.g. ``"encoder."``), only those keys are
            loaded, with the prefix removed; this loads a sub-module from a whole-model file.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: unreadable file, or keys missing / unexpected / of the wrong shape
            (the message names the file and the keys).
    """
    path = Path(path)
    state = _read_state_dict(path)
    if prefix and any(k.startswith(prefix) for k in state):
        state = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
    own = module.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    mismatched = [
        f"{k} (file {tuple(v.shape)} vs model {tuple(own[k].shape)})"
        for k, v in state.items()
        if k in own and v.shape != own[k].shape
    ]
    problems = [
        f"{label}: {', '.join(keys)}"
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched))
        if keys
    ]
    if problems:
        hint = " (fewer classes in the file? build with its num_classes, load, then add_classes)" if mismatched else ""
        raise ValueError(f"{path}: checkpoint does not fit {type(module).__name__}; {'; '.join(problems)}{hint}")
    module.load_state_dict(state)


def fp32_logits(classifier: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """``classifier(x)`` in fp32 when autocast is on for ``x``'s device, else as it is.

    Logits and what is computed from them (softmax targets of distillation, argmax maps) need
    fp32: bf16 keeps 8 significant bits, so a logit near 10 moves in steps of 0.06. A classifier
    is a tiny share of a segmentation network's FLOPs (ERFNet 0.6 %). With bf16 logits ERFNet lost
    3.5 ± 1.3 old-class mIoU points on CIL-3 (benchmarks/PRECISION.md).
    """
    device = x.device.type
    if torch.amp.is_autocast_available(device) and torch.is_autocast_enabled(device):
        with torch.autocast(device, enabled=False):
            return classifier(x.float())
    return classifier(x)


def _fresh_like(layer: nn.Conv2d | nn.ConvTranspose2d, out_channels: int) -> nn.Conv2d | nn.ConvTranspose2d:
    """A freshly initialised copy of ``layer``'s configuration with ``out_channels`` outputs."""
    common: dict[str, Any] = dict(
        kernel_size=layer.kernel_size, stride=layer.stride, padding=layer.padding, dilation=layer.dilation,
        bias=layer.bias is not None, device=layer.weight.device, dtype=layer.weight.dtype,
    )
    if isinstance(layer, nn.ConvTranspose2d):
        output_padding = cast(tuple[int, int], layer.output_padding)
        return nn.ConvTranspose2d(layer.in_channels, out_channels, output_padding=output_padding, **common)
    return nn.Conv2d(layer.in_channels, out_channels, padding_mode=layer.padding_mode, **common)


def grow_classifier(layer: Classifier, num_new: int, *, init: GrowInit = "default") -> Classifier:
    """Return ``layer`` with ``num_new`` output channels appended (class-incremental growth).

    Old channels keep their index and their exact weight/bias values, so old logits are unchanged.
    The output dim of the weight is 0 for ``Conv2d`` (out, in, kH, kW) and 1 for
    ``ConvTranspose2d`` (in, out, kH, kW).

    Args:
        layer: final classifier layer (``groups == 1``).
        num_new: number of channels to append (>= 1).
        init: new channels as in a fresh layer of the grown size (``"default"``), all zeros
            (``"zeros"``, new logits start at 0), or the mean of the old channels (``"copy_mean"``).

    Raises:
        ValueError: ``num_new < 1``, an unknown ``init``, or ``groups != 1``.
    """
    if num_new < 1:
        raise ValueError(f"num_new must be >= 1, got {num_new}")
    if init not in ("default", "zeros", "copy_mean"):
        raise ValueError(f"init must be 'default', 'zeros' or 'copy_mean', got {init!r}")
    if layer.groups != 1:
        raise ValueError(f"grow_classifier needs groups == 1, got groups={layer.groups}")
    old = layer.out_channels
    dim = 1 if isinstance(layer, nn.ConvTranspose2d) else 0
    grown = cast(Classifier, _fresh_like(layer, old + num_new))
    grown.train(layer.training)
    with torch.no_grad():
        for new_p, old_p, d in ((grown.weight, layer.weight, dim), (grown.bias, layer.bias, 0)):
            if old_p is None or new_p is None:
                continue
            tail = new_p.narrow(d, old, num_new)
            if init == "zeros":
                tail.zero_()
            elif init == "copy_mean":
                tail.copy_(old_p.mean(dim=d, keepdim=True).expand_as(tail))
            new_p.narrow(d, 0, old).copy_(old_p)
    return grown
