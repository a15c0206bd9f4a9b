"""Edge-ready models: export a checkpoint to ONNX or TorchScript, and predict with any of the three.

The exported graph is ``ScoreHead``: an N×3×H×W float32 image in [0, 1] (RGB, not normalised) at
the deploy resolution -> N×K×H×W float32 class scores, channel k scoring train id ``classes[k]``
(ImageNet normalisation and the recipe's ``class_scores`` are inside the graph). What the graph
does not hold travels as metadata (ONNX ``metadata_props``, TorchScript extra file
``llseg.json``): ``classes``, ``group_sizes``, ``num_classes``, ``dataset``, ``input_size``
(H, W), ``architecture``, ``recipe``, ``eval_crop``. :func:`load_edge_model` opens a checkpoint
(``.pt``/``.model``), an ``.onnx`` or a TorchScript file (``.ts``/``.torchscript``) behind one
interface, and :func:`predict_image` turns scores into the same train-id mask as
``ContinualLearner.predict`` (bilinear upsampling to the image's size, argmax). A checkpoint
trained with ``eval_crop`` S is exported for S×S inputs and predicts as it is evaluated
(docs/methods.md §9.4): the centred min(H, W) square of the image, resized to S×S, the pixels
outside it 255 (not predicted); without ``eval_crop`` 255 never occurs in a prediction.

ONNX needs the optional extra ``llseg[onnx]`` (onnx, onnxscript, onnxruntime).
"""
from __future__ import annotations

import json
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from llseg.data.imageio import read_rgb
from llseg.data.labels import IGNORE_INDEX
from llseg.data.predictions import predictions_from_logits
from llseg.data.transforms import normalize, resize_pair
from llseg.errors import ConfigError
from llseg.methods.learner import ContinualLearner, center_square

FORMATS = ("onnx", "torchscript")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".ts"}
_META_FILE = "llseg.json"
ONNX_HINT = "ONNX export and ONNX Runtime need the optional extra: pip install 'llseg[onnx]'"


class ScoreHead(nn.Module):
    """Normalisation + model + the recipe's class scores: N×3×H×W in [0, 1] -> N×K×H×W float32."""

    def __init__(self, learner: ContinualLearner) -> None:
        super().__init__()
        if learner.model is None:
            raise ValueError("the learner holds no model: train or load a checkpoint first")
        self.model = learner.model
        self._scores = learner.class_scores

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self._scores(self.model(normalize(image))).float()


@dataclass(frozen=True)
class ModelInfo:
    """What a mask needs besides the scores: channel -> train id, class groups, deploy size."""

    classes: list[int]
    group_sizes: list[int]
    num_classes: int
    dataset: str
    input_size: tuple[int, int] | None
    architecture: str
    recipe: str
    eval_crop: int | None = None  # S: predict the centred square at S×S (input_size (S, S)), 255 outside

    def to_json(self) -> str:
        return json.dumps({**self.__dict__, "input_size": list(self.input_size) if self.input_size else None})

    @classmethod
    def from_json(cls, text: str, source: str) -> ModelInfo:
        try:
            data = json.loads(text)
            size = data["input_size"]
            return cls(
                classes=[int(c) for c in data["classes"]], group_sizes=[int(g) for g in data["group_sizes"]],
                num_classes=int(data["num_classes"]), dataset=str(data["dataset"]),
                input_size=(int(size[0]), int(size[1])) if size else None,
                architecture=str(data["architecture"]), recipe=str(data["recipe"]),
                eval_crop=int(data["eval_crop"]) if data.get("eval_crop") else None,  # absent in older exports
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ConfigError(f"{source}: llseg metadata is missing or malformed ({exc}); "
                              "re-export it with 'llseg export'") from None


class EdgeModel(Protocol):
    """Scores of a batch: N×3×H×W float32 in [0, 1] at ``info.input_size`` -> N×K×H×W float32."""

    info: ModelInfo

    def scores(self, batch: np.ndarray) -> np.ndarray: ...


def _info(learner: ContinualLearner, size: tuple[int, int] | None) -> ModelInfo:
    return ModelInfo(
        classes=[int(c) for c in learner.classes], group_sizes=[len(g) for g in learner.channel_groups],
        num_classes=learner.info.num_classes, dataset=learner.config.dataset, input_size=size,
        architecture=learner.config.model, recipe=learner.config.recipe, eval_crop=learner.config.eval_crop,
    )


class TorchModel:
    """A checkpoint run by PyTorch in fp32 on the CPU (the reference the exports are checked against)."""

    def __init__(self, learner: ContinualLearner, size: tuple[int, int] | None = None) -> None:
        self.head = ScoreHead(learner).eval()
        self.info = _info(learner, size or learner.config.eval_size)

    @torch.no_grad()
    def scores(self, batch: np.ndarray) -> np.ndarray:
        return self.head(torch.from_numpy(batch)).numpy()


class OnnxModel:
    """An exported ``.onnx`` file run by ONNX Runtime on the CPU."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise ConfigError(f"{path}: {ONNX_HINT}") from None
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for unreadable models
            raise ConfigError(f"{path}: not a readable ONNX model ({exc}); re-export it with 'llseg export'") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        self.info = ModelInfo.from_json(meta.get("llseg", ""), str(path))
        self.input = self.session.get_inputs()[0].name

    def scores(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run(None, {self.input: batch})[0])


class ScriptModel:
    """An exported TorchScript file run by PyTorch."""

    def __init__(self, path: Path) -> None:
        extra = {_META_FILE: ""}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, still the portable format
                self.module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra).eval()
        except RuntimeError as exc:
            raise ConfigError(f"{path}: not a readable TorchScript model ({exc}); re-export it with 'llseg export'") from None
        self.info = ModelInfo.from_json(extra[_META_FILE], str(path))

    @torch.no_grad()
    def scores(self, batch: np.ndarray) -> np.ndarray:
        return self.module(torch.from_numpy(batch)).numpy()


def load_edge_model(path: Path, *, threads: int | None = None) -> EdgeModel:
    """An ``.onnx``, TorchScript (``.ts``/``.torchscript``) or checkpoint file, by its suffix."""
    if not path.is_file():
        raise ConfigError(f"model {path} does not exist; train one or export it with 'llseg export'")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return OnnxModel(path, threads)
    if suffix in (".ts", ".torchscript"):
        return ScriptModel(path)
    return TorchModel(ContinualLearner.from_checkpoint(path, device="cpu"))


def to_batch(rgb: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """H×W×3 uint8 -> 1×3×h×w float32 in [0, 1], resized (bilinear) to ``size`` when given."""
    image = torch.from_numpy(rgb if rgb.flags.writeable else rgb.copy()).permute(2, 0, 1).float().div_(255)
    if size is not None and tuple(image.shape[1:]) != tuple(size):
        image, _ = resize_pair(image, None, size)
    return image[None].contiguous().numpy()


def mask_from_scores(scores: np.ndarray, info: ModelInfo, shape: tuple[int, int]) -> np.ndarray:
    """1×K×h×w scores -> H×W uint8 train ids at ``shape`` (bilinear upsampling, then argmax)."""
    tensor = torch.from_numpy(np.ascontiguousarray(scores))
    if tuple(tensor.shape[2:]) != tuple(shape):
        tensor = torch.nn.functional.interpolate(tensor, size=shape, mode="bilinear", align_corners=False)
    pred, _, _ = predictions_from_logits(tensor, info.classes, info.group_sizes)
    return pred[0].numpy()


def predict_image(model: EdgeModel, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(mask H×W uint8 train ids at the image's size, scores 1×K×h×w at the deploy size)``; with
    ``eval_crop`` the mask is 255 outside the centred square (the scores are the square's)."""
    rgb = read_rgb(path)
    if model.info.eval_crop is None:
        scores = model.scores(to_batch(rgb, model.info.input_size))
        return mask_from_scores(scores, model.info, rgb.shape[:2]), scores
    top, left, h, w = center_square(*rgb.shape[:2])
    scores = model.scores(to_batch(rgb[top:top + h, left:left + w], (model.info.eval_crop, model.info.eval_crop)))
    mask = np.full(rgb.shape[:2], IGNORE_INDEX, dtype=np.uint8)
    mask[top:top + h, left:left + w] = mask_from_scores(scores, model.info, (h, w))
    return mask, scores


def export_checkpoint(checkpoint: Path, out: Path, fmt: str, size: tuple[int, int] | None = None) -> Path:
    """Write ``checkpoint`` as ``fmt`` (onnx/torchscript) at ``out`` for ``size`` = (H, W) inputs.

    ``size`` defaults to the checkpoint's ``input_size``. The file appears only when complete
    (written next to ``out``, then renamed). Returns ``out``.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    learner = ContinualLearner.from_checkpoint(checkpoint, device="cpu")
    crop = learner.config.eval_crop
    if crop is not None and size is not None and tuple(size) != (crop, crop):
        raise ConfigError(f"{checkpoint} evaluates with eval_crop {crop} (the centred square at {crop}x{crop}); "
                          f"export it with --size {crop}x{crop} or without --size")
    size = size or learner.config.eval_size
    if size is None:
        raise ConfigError(f"{checkpoint} has no input_size: give the deploy resolution with --size HxW")
    model = TorchModel(learner, size)
    example = torch.zeros(1, 3, *size)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, still the portable TorchScript path
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # constants (normalisation) baked in on purpose
            if fmt == "onnx":
                _export_onnx(model, example, Path(tmp))
            else:
                traced = torch.jit.trace(model.head, example, check_trace=False)
                torch.jit.save(traced, tmp, _extra_files={_META_FILE: model.info.to_json()})
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def _export_onnx(model: TorchModel, example: torch.Tensor, path: Path) -> None:
    try:
        import onnx
    except ImportError:
        raise ConfigError(ONNX_HINT) from None
    program: Any = torch.onnx.export(
        model.head, (example,), input_names=["image"], output_names=["scores"],
        dynamic_shapes=({0: torch.export.Dim("batch", max=64)},), dynamo=True, verbose=False,
    )
    proto = program.model_proto
    entry = proto.metadata_props.add()
    entry.key, entry.value = "llseg", model.info.to_json()
    onnx.save(proto, str(path))
