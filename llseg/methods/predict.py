"""Colourised predictions of a checkpoint on image files (``llseg predict``).

For every image ``<stem>.<ext>`` two PNGs are written: ``<stem>_mask.png``, the predicted train
ids coloured with the dataset palette, and ``<stem>_overlay.png``, that mask alpha-blended onto
the input. Both have the input's size. A checkpoint trained with ``eval_crop`` S predicts as it is
evaluated (docs/methods.md §9.4): only the centred min(H, W) square, seen by the model at S×S; the
pixels outside it are not predicted (255, black in the mask) and keep the input's colours in the overlay.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from llseg.atomic import check_output_dir
from llseg.data.imageio import read_rgb
from llseg.data.labels import IGNORE_INDEX
from llseg.errors import ConfigError
from llseg.methods.learner import ContinualLearner

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def colorize(label: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """H×W train ids -> H×W×3 uint8 RGB through a ``uint8[256, 3]`` table (``DatasetInfo.palette_lut``)."""
    if label.ndim != 2:
        raise ValueError(f"expected an H×W label map, got shape {label.shape}")
    return lut[label.astype(np.uint8)]


def overlay(rgb: np.ndarray, mask: np.ndarray, alpha: float = 0.5, predicted: np.ndarray | None = None) -> np.ndarray:
    """``(1 - alpha) * rgb + alpha * mask``, rounded to uint8; both H×W×3. Where the H×W bool
    ``predicted`` is False (outside ``eval_crop``'s square) the pixel stays ``rgb``."""
    if rgb.shape != mask.shape:
        raise ValueError(f"image is {rgb.shape} but mask is {mask.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    blend = np.round((1.0 - alpha) * rgb.astype(np.float32) + alpha * mask.astype(np.float32)).astype(np.uint8)
    return blend if predicted is None else np.where(predicted[..., None], blend, rgb)


def list_images(path: Path) -> list[Path]:
    """``path`` itself, or the image files directly inside the folder ``path`` (sorted)."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"image {path} does not exist; pass an image file or a folder of images")
    images = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise ValueError(f"folder {path} holds no image ({', '.join(IMAGE_SUFFIXES)}); pass an image file or another folder")
    stems: dict[str, Path] = {}
    for image in images:
        if image.stem in stems:
            raise ValueError(
                f"{stems[image.stem]} and {image} would both write {image.stem}_mask.png; rename one or predict them separately"
            )
        stems[image.stem] = image
    return images


def predict_images(
    checkpoint: Path, image: Path, out: Path, *, alpha: float = 0.5, device: str | None = "auto"
) -> list[tuple[Path, Path]]:
    """Write ``<stem>_mask.png`` and ``<stem>_overlay.png`` into ``out`` for ``image`` (a file or folder).

    Returns:
        ``(mask, overlay)`` paths, one pair per image, in input order.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"--alpha (overlay weight of the mask) must lie in [0, 1], got {alpha}")
    images = list_images(image)
    check_output_dir(out, "--out")
    learner = ContinualLearner.from_checkpoint(checkpoint, device=device)
    lut = learner.info.palette_lut()
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path, prediction in zip(images, learner.predict([str(p) for p in images])):
        mask = colorize(prediction.pred, lut)
        pair = (out / f"{path.stem}_mask.png", out / f"{path.stem}_overlay.png")
        Image.fromarray(mask).save(pair[0])
        Image.fromarray(overlay(read_rgb(path), mask, alpha, prediction.pred != IGNORE_INDEX)).save(pair[1])
        written.append(pair)
    return written
