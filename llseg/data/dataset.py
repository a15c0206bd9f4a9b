"""Torch datasets over (image, train-id label) file pairs, as listed by index files.

Labels on disk are train-id maps (0..C-1, 255 = ignore). A dataset maps them to *channel*
indices of the model being trained through a ``uint8[256]`` lookup table, so class order in the
model (order of arrival) is independent of dataset train ids.
"""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from llseg.data.imageio import image_size, read_label_png, read_rgb
from llseg.data.labels import IGNORE_INDEX
from llseg.data.transforms import TrainAugment, normalize, resize_label, resize_pair, to_unit_float
from llseg.errors import ConfigError, DataError

CACHE_ENV = "LLSEG_CACHE_DIR"
CACHE_MAX_ENV = "LLSEG_CACHE_MAX_GB"  # bound of the disk cache in GB (default DEFAULT_CACHE_GB)
DEFAULT_CACHE_GB = 5.0
_CACHE_FORMAT = 2  # part of every disk key: bump when what an entry holds changes (2: keyed by content)

log = logging.getLogger(__name__)


def default_cache_dir() -> Path | None:
    """Disk cache folder: ``$LLSEG_CACHE_DIR`` (``off`` or empty: none), else
    ``$XDG_CACHE_HOME/llseg/decoded`` (``~/.cache/llseg/decoded``)."""
    value = os.environ.get(CACHE_ENV)
    if value is not None:
        return None if value.strip().lower() in ("", "off", "0", "none") else Path(value).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "llseg" / "decoded"


def cache_limit_bytes() -> int:
    """The disk cache's size bound: ``$LLSEG_CACHE_MAX_GB`` (a number of GB), else 5 GB."""
    value = os.environ.get(CACHE_MAX_ENV, "").strip()
    try:
        gb = float(value) if value else DEFAULT_CACHE_GB
    except ValueError:
        raise ConfigError(f"{CACHE_MAX_ENV}={value!r}: expected a number of GB, e.g. 5 or 0.5") from None
    if gb < 0:
        raise ConfigError(f"{CACHE_MAX_ENV}={value!r}: must be >= 0 (0: no disk entries kept)")
    return int(gb * 1e9)


def _decode(kind: str, path: Path, size: tuple[int, int] | None) -> np.ndarray:
    """``rgb``: H×W×3 uint8, resized bilinear (as :func:`resize_pair`) and rounded; ``label``:
    H×W uint8, resized nearest."""
    array = read_rgb(path) if kind == "rgb" else read_label_png(path)
    if not array.flags.writeable:  # PIL's buffer; torch.from_numpy needs writable memory
        array = array.copy()
    if kind == "rgb":
        if size is not None and array.shape[:2] != tuple(size):
            image, _ = resize_pair(torch.from_numpy(array).permute(2, 0, 1).float(), None, size)
            array = image.round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
        return array
    if size is not None and array.shape != tuple(size):
        array = resize_label(torch.from_numpy(array), size).numpy()
    return array


class DecodedCache:
    """Decoded images (H×W×3 uint8) and label maps (H×W uint8), optionally resized, kept in
    memory (up to ``max_bytes``, first come first kept) and on disk for other processes and runs.

    Entries are keyed by kind, the file's content (SHA-1 of its bytes, hashed once per path, size
    and mtime) and the requested size: an edited file is decoded again, and two checkouts or copies
    of the same data share entries. Disk entries are ``.npy`` files in ``directory`` (``"auto"``:
    :func:`default_cache_dir`; ``None``: memory only), written under a temporary name and renamed
    into place, so concurrent processes (DataLoader workers, parallel runs) read a whole entry or
    none. The folder is bounded by ``disk_bytes`` (default :func:`cache_limit_bytes`): beyond it the
    least recently used entries (by mtime, renewed on every disk hit) are deleted. The folder can be
    deleted at any time; an unwritable one is reported once and skipped.
    """

    def __init__(self, max_bytes: int = 2 << 30, directory: str | Path | None = "auto",
                 disk_bytes: int | None = None) -> None:
        self.max_bytes = max_bytes
        self.directory = default_cache_dir() if directory == "auto" else (None if directory is None else Path(directory))
        self.disk_bytes = cache_limit_bytes() if disk_bytes is None else disk_bytes
        self._items: dict[tuple, np.ndarray] = {}
        self._digests: dict[tuple, str] = {}
        self._bytes = 0
        self._disk_used: int | None = None  # estimate of the folder's size, scanned on the first write

    def _digest(self, path: Path, st: os.stat_result) -> str:
        stamp = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
        digest = self._digests.get(stamp)
        if digest is None:
            with open(path, "rb") as handle:
                digest = self._digests[stamp] = hashlib.sha1(handle.read()).hexdigest()
        return digest

    def get(self, kind: str, path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
        """The ``kind`` (``rgb`` or ``label``) array of ``path``, resized to ``size`` (H, W) if given."""
        try:
            st = os.stat(path)
            digest = self._digest(Path(path), st)
        except OSError:
            return _decode(kind, Path(path), size)  # raises DataError naming the file
        key = (kind, digest, None if size is None else tuple(size))
        hit = self._items.get(key)
        if hit is not None:
            return hit
        file = self._file(key)
        array = self._load(file, kind, key[-1])
        if array is None:
            array = _decode(kind, Path(path), size)
            self._save(file, array)
        if self._bytes + array.nbytes <= self.max_bytes:
            self._items[key] = array
            self._bytes += array.nbytes
        return array

    def _file(self, key: tuple) -> Path | None:
        if self.directory is None:
            return None
        digest = hashlib.sha1(repr((_CACHE_FORMAT, *key)).encode()).hexdigest()
        return self.directory / digest[:2] / f"{digest}.npy"

    @staticmethod
    def _load(file: Path | None, kind: str, size: tuple[int, ...] | None) -> np.ndarray | None:
        if file is None or not file.is_file():
            return None
        try:
            array = np.load(file, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            array = None
        ndim = 3 if kind == "rgb" else 2
        if array is None or array.dtype != np.uint8 or array.ndim != ndim or (size is not None and array.shape[:2] != size):
            try:
                file.unlink(missing_ok=True)  # damaged or foreign: decode again
            except OSError:
                pass  # a read-only cache: the entry is just not used
            return None
        try:
            os.utime(file)  # recently used: the last to be evicted
        except OSError:
            pass
        return array

    def _save(self, file: Path | None, array: np.ndarray) -> None:
        if file is None:
            return
        tmp = None
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=".", suffix=".tmp")
            with os.fdopen(fd, "wb") as out:
                np.save(out, array, allow_pickle=False)
            os.replace(tmp, file)
            self._account(file.stat().st_size)
        except OSError as exc:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
            log.warning("cannot write the decode cache in %s (%s); decoding in memory only from now on. "
                        "Set %s to a writable folder, or to 'off'", self.directory, exc, CACHE_ENV)
            self.directory = None


    def _account(self, written: int) -> None:
        """Add a new entry's size; past the bound, delete the least recently used entries down to
        90 % of it (other processes' entries too: the folder is shared)."""
        assert self.directory is not None
        if self._disk_used is None:
            self._disk_used = sum(self._sizes().values())
        else:
            self._disk_used += written
        if self._disk_used <= self.disk_bytes:
            return
        sizes = self._sizes()
        self._disk_used = sum(sizes.values())
        for entry in sorted(sizes, key=lambda f: _mtime(f)):
            if self._disk_used <= 0.9 * self.disk_bytes:
                break
            try:
                entry.unlink()
            except OSError:
                continue  # gone already (another process) or read-only
            self._disk_used -= sizes[entry]
        log.info("decode cache %s: least recently used entries deleted down to %.2f GB (bound %.2f GB, %s)",
                 self.directory, self._disk_used / 1e9, self.disk_bytes / 1e9, CACHE_MAX_ENV)

    def _sizes(self) -> dict[Path, int]:
        assert self.directory is not None
        sizes = {}
        for entry in self.directory.glob("*/*.npy"):
            try:
                sizes[entry] = entry.stat().st_size
            except OSError:
                pass
        return sizes


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def label_counts(label: np.ndarray, num_classes: int, path: Path) -> np.ndarray:
    """Pixel count per train id (length ``num_classes``); ``DataError`` for ids outside 0..C-1 and 255."""
    counts = np.bincount(label.ravel(), minlength=256)
    bad = np.flatnonzero(counts[num_classes:IGNORE_INDEX])
    if bad.size:
        raise DataError(
            f"label map {path} contains ids {(bad + num_classes).tolist()} outside the {num_classes} train ids "
            f"and {IGNORE_INDEX} (ignore); regenerate it with 'llseg prepare' or map it to train ids"
        )
    return counts[:num_classes]


def channel_lut(classes: Sequence[int]) -> np.ndarray:
    """``uint8[256]`` table: train id -> channel index of ``classes``; every other id -> 255."""
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    lut[np.asarray(classes, dtype=np.int64)] = np.arange(len(classes), dtype=np.uint8)
    return lut


class SegmentationPairs(Dataset):
    """(image, label) pairs -> (normalised float 3×H×W, int64 H×W channel labels).

    Args:
        images, labels: equally long lists of file paths (RGB images; train-id label PNGs).
        lut: train id -> channel lookup (see :func:`channel_lut`).
        augment: training augmentation, or ``None`` for none.
        size: (H, W) to resize to when ``augment`` is ``None`` (evaluation input size).
        seed: base seed; sample ``i`` of epoch ``e`` uses seed ``(seed, e, i)`` so runs repeat exactly.
        saliency: optional saliency map per image (grey PNG, > 0 = salient, same size as the
            label); pixels that ``lut`` maps to channel ``relabel[0]`` and that are not salient get
            channel ``relabel[1]`` (SSUL's unknown labelling: every pixel the step labels background,
            old and future classes included, is unknown where salient and background elsewhere).
    """

    def __init__(
        self,
        images: Sequence[Path],
        labels: Sequence[Path],
        *,
        lut: np.ndarray,
        augment: TrainAugment | None = None,
        size: tuple[int, int] | None = None,
        seed: int = 0,
        cache: DecodedCache | None = None,
        saliency: Sequence[Path] | None = None,
        relabel: tuple[int, int] = (0, 1),
    ) -> None:
        if len(images) != len(labels) or (saliency is not None and len(saliency) != len(images)):
            raise ValueError(f"{len(images)} images but {len(labels)} labels"
                             + ("" if saliency is None else f" and {len(saliency)} saliency maps"))
        self.images, self.labels = list(images), list(labels)
        lut = np.asarray(lut)
        if lut.shape != (256,) or not np.issubdtype(lut.dtype, np.integer) or lut.min() < 0 or lut.max() > 255:
            raise ValueError(f"lut must map the 256 train ids to channels 0..255 (see channel_lut), got "
                             f"{lut.dtype} {lut.shape} values")
        self.lut = lut.astype(np.uint8)
        self.augment, self.size, self.seed = augment, size, seed
        self.cache = cache or DecodedCache()
        self.saliency, self.relabel = (None if saliency is None else list(saliency)), relabel
        self.epoch = 0
        self._checked: set[int] = set()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if index not in self._checked:  # sizes from the headers: the cache may hand out resized maps
            self._check_sizes(index)
            self._checked.add(index)
        size = self.augment.base_size if self.augment is not None else self.size
        rgb = self.cache.get("rgb", self.images[index], size)
        raw = self.cache.get("label", self.labels[index], size)
        image = torch.from_numpy(rgb).permute(2, 0, 1)  # uint8 until after the flip
        label = torch.from_numpy(np.take(self.lut, raw))  # uint8 until the end: cheaper flips and resizes
        if self.saliency is not None:
            salient = self.cache.get("label", self.saliency[index], size)
            plain = (label == self.relabel[0]) & torch.from_numpy(salient == 0)
            label = torch.where(plain, self.relabel[1], label)
        if self.augment is not None:
            gen = torch.Generator().manual_seed(hash((self.seed, self.epoch, index)) & 0x7FFFFFFF)
            image, label = self.augment(image, label, gen)
        return normalize(to_unit_float(image)), label.long()

    def _check_sizes(self, index: int) -> None:
        shape = image_size(self.labels[index])
        others = [("image", self.images[index])] + ([] if self.saliency is None else [("saliency map", self.saliency[index])])
        for what, path in others:
            other = image_size(path)
            if other != shape:
                raise DataError(f"{what} {path} is {other} but label {self.labels[index]} is {shape}; "
                                f"they must have the same size")
