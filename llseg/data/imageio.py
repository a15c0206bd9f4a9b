"""Safe image and label-map IO: every failure becomes a :class:`DataError` that names the file.

Images are returned as ``uint8`` arrays of shape ``H x W x 3`` (RGB); label maps as ``uint8``
arrays of shape ``H x W`` holding class ids (255 = ignore, see :mod:`llseg.data.labels`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image

from llseg.errors import DataError

PathLike = Union[str, "os.PathLike[str]"]

# Colour modes PIL can turn into RGB without losing meaning.
_RGB_CONVERTIBLE = frozenset({"RGB", "RGBA", "RGBX", "L", "LA", "P", "PA", "CMYK", "YCbCr", "1"})
_LABEL_MODES = frozenset({"L", "P"})
_FIX = "re-download or regenerate it"


def _open(path: Path) -> Image.Image:
    """Open and fully decode ``path``; truncated or corrupt files raise DataError."""
    if not path.is_file():
        raise DataError(f"{path}: file not found; check the dataset root or {_FIX}")
    try:
        with Image.open(path) as img:
            img.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: unreadable or truncated image ({exc}); {_FIX}") from None
    return img


def image_size(path: PathLike) -> tuple[int, int]:
    """``(H, W)`` of an image, read from its header only (no decoding)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found; check the dataset root or {_FIX}")
    try:
        with Image.open(path) as img:
            w, h = img.size
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: not a readable image ({exc}); {_FIX}") from None
    return h, w


def read_rgb(path: PathLike) -> np.ndarray:
    """Read a PNG/JPEG image as ``uint8 H x W x 3`` RGB (grey, palette and alpha are converted)."""
    path = Path(path)
    img = _open(path)
    if img.mode not in _RGB_CONVERTIBLE:
        raise DataError(f"{path}: image mode {img.mode} is not an 8-bit colour image; save it as 8-bit RGB")
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.uint8)


def read_label_png(path: PathLike) -> np.ndarray:
    """Read a label map as ``uint8 H x W`` class ids (PNG mode L, or P whose indices are the ids)."""
    path = Path(path)
    img = _open(path)
    if img.format != "PNG":
        raise DataError(f"{path}: label maps must be lossless PNG, got {img.format}; {_FIX} as PNG")
    if img.mode not in _LABEL_MODES:
        hint = " (is it a colour visualisation such as *_gtFine_color.png?)" if img.mode.startswith("RGB") else ""
        raise DataError(
            f"{path}: a label map must be a single-channel 8-bit PNG (mode L or P) holding class ids, "
            f"got mode {img.mode}{hint}; use the *_labelIds.png / *_labelTrainIds.png file or {_FIX}"
        )
    return np.asarray(img, dtype=np.uint8)


def write_label_png(path: PathLike, label: np.ndarray) -> None:
    """Write a ``uint8 H x W`` label map as a mode-L PNG, atomically (parents are created)."""
    if label.ndim != 2 or label.dtype != np.uint8:
        raise ValueError(f"label map for {path} must be uint8 H x W, got {label.dtype} {label.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(label).save(tmp, format="PNG", compress_level=1)
    os.replace(tmp, path)
