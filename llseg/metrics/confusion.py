"""Confusion-matrix segmentation metrics: IoU, mIoU, accuracies, old/new/all and hIoU.

Label conventions: targets hold train ids ``0..C-1`` and ``ignore_index`` (default 255) for
pixels that are not scored; predictions hold class ids ``0..C-1``. Confusion matrices are
``(C, C)`` int64 with rows = ground truth and columns = prediction, accumulated over the whole
evaluation set (dataset-level IoU, as in the Cityscapes evaluator and mmseg). A class whose
union is empty (never labelled, never predicted) has IoU NaN and is left out of means.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch

ArrayLike = np.ndarray | torch.Tensor
# (pred, target) after _as_pair: both tensors on one accelerator, or both numpy arrays
_Pair = tuple[torch.Tensor, torch.Tensor] | tuple[np.ndarray, np.ndarray]

_MAX_SHOWN = 10  # offending values listed in an error message
_JOINT_BINS = 1 << 18  # largest joint histogram (int64 counts, 2 MiB) that stays in cache


def _check_num_classes(num_classes: int, ignore_index: int) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer)):
        raise ValueError(f"ignore_index must be an int, got {ignore_index!r}")
    if 0 <= ignore_index < num_classes:
        raise ValueError(
            f"ignore_index={ignore_index} is a real class id (num_classes={num_classes}); use a value "
            f"outside [0, {num_classes}) such as 255, or drop classes with restrict_target()"
        )


def _shown(values: Sequence[int]) -> str:
    values = list(values)
    more = f" ... ({len(values)} distinct)" if len(values) > _MAX_SHOWN else ""
    return f"{values[:_MAX_SHOWN]}{more}"


def _check_int_dtype(name: str, x: ArrayLike) -> None:
    if isinstance(x, torch.Tensor):
        ok = not (x.is_floating_point() or x.is_complex() or x.dtype == torch.bool)
    else:
        ok = np.issubdtype(x.dtype, np.integer)
    if not ok:
        raise ValueError(
            f"{name} must hold integer class ids, got dtype {x.dtype}; pass label maps / "
            f"argmax predictions (e.g. logits.argmax(1)), not logits, probabilities or masks"
        )


def _as_pair(pred: ArrayLike, target: ArrayLike) -> _Pair:
    """Both as torch tensors on one accelerator if either tensor lives on one, else both as numpy arrays.

    CPU tensors become numpy views (no copy) for the host path, whose uint8 target rows and joint
    histograms of several maps (:func:`_confusion_stack_host`) suit the CPU better than the device
    path's masks.
    """
    if isinstance(pred, torch.Tensor) and isinstance(target, torch.Tensor) and pred.device != target.device:
        raise ValueError(f"pred is on {pred.device} but target is on {target.device}; move both to one device")
    for name, x in (("pred", pred), ("target", target)):
        if isinstance(x, torch.Tensor):
            _check_int_dtype(name, x)  # before .numpy(), which fails on bf16
    device = next((x.device for x in (pred, target) if isinstance(x, torch.Tensor)), None)
    pair: _Pair
    if device is not None and device.type != "cpu":
        pair = (torch.as_tensor(pred, device=device), torch.as_tensor(target, device=device))
    else:
        pair = (_host_array(pred), _host_array(target))
    if tuple(pair[0].shape) != tuple(pair[1].shape):
        raise ValueError(f"pred shape {tuple(pair[0].shape)} != target shape {tuple(pair[1].shape)}; they must match")
    _check_int_dtype("pred", pair[0])
    _check_int_dtype("target", pair[1])
    return pair


def _host_array(x: ArrayLike) -> np.ndarray:
    """A CPU tensor as a numpy view (no copy); anything else through ``np.asarray``."""
    return x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _confusion_torch(pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int) -> torch.Tensor:
    """(C, C) int64 counts on the inputs' device; one host sync for validation (plus bincount's own)."""
    c = num_classes
    t = target.reshape(-1).long()
    p = pred.reshape(-1).long()
    keep = t != ignore_index
    bad_t = keep & ((t < 0) | (t >= c))
    bad_p = (p < 0) | (p >= c)
    if bool(bad_t.any() | bad_p.any()):  # the one validation sync
        if bad_t.any():
            raise ValueError(
                f"target has values {_shown(torch.unique(t[bad_t]).tolist())} outside [0, {c}) that are not "
                f"ignore_index={ignore_index}; map them to train ids 0..{c - 1} or to {ignore_index}"
            )
        raise ValueError(
            f"pred has values {_shown(torch.unique(p[bad_p]).tolist())} outside [0, {c}); predictions must be "
            f"class ids 0..{c - 1}"
        )
    # Ignored pixels go to an extra bin c*c instead of being masked out (masking would sync again).
    idx = torch.where(keep, t * c + p, torch.full_like(t, c * c))
    return torch.bincount(idx, minlength=c * c + 1)[: c * c].reshape(c, c)


def _flat_tensor(x: np.ndarray) -> torch.Tensor:
    """Flat torch view of an integer array (a copy for the wide unsigned types torch barely supports)."""
    flat = np.ascontiguousarray(x).reshape(-1)
    if flat.dtype.kind == "u" and flat.dtype.itemsize > 1:
        flat = flat.astype(np.int64)  # uint64 values above int64's range turn negative: still out of range
    elif not flat.flags.writeable:
        flat = flat.copy()  # only read, but torch.from_numpy warns about read-only memory
    return torch.from_numpy(flat)


def _target_rows(target: np.ndarray, num_classes: int, ignore_index: int) -> torch.Tensor:
    """Flat row index per pixel: the train id, or ``num_classes`` (a spare row) for ignored pixels.

    uint8 targets (label maps) take a clamp instead of masks and a gather: every value >= C is
    either ``ignore_index`` (row C) or invalid. The checks run in numpy, whose comparisons of
    uint8 arrays are ~10x faster than torch's here.
    """
    c = num_classes
    t = np.ascontiguousarray(target).reshape(-1)
    if t.dtype == np.uint8 and c < 256:
        bad = t >= c
        if c <= ignore_index < 256:
            bad &= t != ignore_index
        rows = _flat_tensor(t).clamp_max(c)
    else:
        keep = t != ignore_index
        bad = keep & ((t < 0) | (t >= c))
        rows = _flat_tensor(np.where(keep, t, c))
    if bad.any():
        raise ValueError(
            f"target has values {_shown(np.unique(t[bad]).tolist())} outside [0, {c}) that are not "
            f"ignore_index={ignore_index}; map them to train ids 0..{c - 1} or to {ignore_index}"
        )
    return rows


def _confusion_stack_host(maps: Sequence[np.ndarray], target: np.ndarray, num_classes: int, ignore_index: int) -> np.ndarray:
    """``(M, C, C)`` counts of M prediction maps (P pixels each) against one target (P pixels).

    Up to three maps share one joint histogram over (target, pred_1, pred_2, ...) whose marginals
    are their confusion matrices, so the pixels are counted once per group of maps, not per map.
    The arrays are read through torch views: its element-wise ops use every core (numpy's one),
    and its bincount takes int32 keys as they are (numpy's converts them to int64 first).
    """
    c, m = num_classes, len(maps)
    rows = _target_rows(target, c, ignore_index)  # ignored pixels: row c, dropped below
    flat = [_flat_tensor(q) for q in maps]
    for q in flat:
        if q.numel() and (int(q.min()) < 0 or int(q.max()) >= c):
            bad_p = (q < 0) | (q >= c)
            raise ValueError(
                f"pred has values {_shown(torch.unique(q[bad_p]).tolist())} outside [0, {c}); predictions must be "
                f"class ids 0..{c - 1}"
            )
    per = 1
    while per < m and (c + 1) * c ** (per + 1) <= _JOINT_BINS:
        per += 1
    out = torch.empty((m, c, c), dtype=torch.int64)
    for start in range(0, m, per):
        chunk = flat[start : start + per]
        key = rows.to(torch.int32, copy=True)  # a copy; int32 holds (c + 1) * c**per <= _JOINT_BINS
        for q in chunk:
            torch.add(q, key, alpha=c, out=key)  # key·c + q in one pass; q was range-checked above
        hist = torch.bincount(key, minlength=(c + 1) * c ** len(chunk))
        hist = hist.view((c + 1,) + (c,) * len(chunk))[:c]
        for j in range(len(chunk)):
            others = tuple(1 + i for i in range(len(chunk)) if i != j)
            out[start + j] = hist.sum(dim=others) if others else hist  # torch sums all for dim=()
    return out.numpy()


def _confusion_host(pred: np.ndarray, target: np.ndarray, num_classes: int, ignore_index: int) -> np.ndarray:
    return _confusion_stack_host([pred], target, num_classes, ignore_index)[0]


def confusion_stack(
    preds: np.ndarray | Sequence[np.ndarray], target: np.ndarray, num_classes: int, *, ignore_index: int = 255
) -> np.ndarray:
    """Confusion matrices of several prediction maps of one image against its target, in one pass.

    Args:
        preds: ``M×H×W`` class ids ``0..C-1`` (e.g. the class-incremental and task-restricted maps),
            as one array or a sequence of M ``H×W`` arrays (not copied into one).
        target: ``H×W`` train ids or ``ignore_index``.

    Returns:
        ``(M, C, C)`` int64; ``[m]`` equals ``confusion_matrix(preds[m], target, C)``.

    Raises:
        ValueError: as :func:`confusion_matrix`.
    """
    _check_num_classes(num_classes, ignore_index)
    target = np.asarray(target)
    maps = [np.asarray(q) for q in preds]
    for q in maps:
        if tuple(q.shape) != tuple(target.shape):
            raise ValueError(
                f"preds shape {(len(maps), *q.shape)} must be M× the target shape {tuple(target.shape)}; they must match"
            )
        _check_int_dtype("pred", q)
    _check_int_dtype("target", target)
    return _confusion_stack_host(maps, target, num_classes, ignore_index)


def confusion_matrix(pred: ArrayLike, target: ArrayLike, num_classes: int, *, ignore_index: int = 255) -> np.ndarray:
    """Confusion matrix of one batch or image.

    Args:
        pred: Predicted class ids ``0..C-1``, any shape (``N×H×W`` or ``H×W``), integer dtype.
        target: Ground-truth train ids ``0..C-1`` or ``ignore_index``, same shape as ``pred``.
        num_classes: C.
        ignore_index: Target value whose pixels are not counted; must lie outside ``[0, C)``.

    Returns:
        ``(C, C)`` int64 numpy array, rows = ground truth, columns = prediction. Tensors on an
        accelerator are counted with ``torch.bincount`` on their device (one call for the whole
        batch); CPU tensors and numpy arrays on the host.

    Raises:
        ValueError: Mismatched shapes or devices, non-integer dtypes, target values outside
            ``[0, C)`` other than ``ignore_index``, or predictions outside ``[0, C)``.
    """
    _check_num_classes(num_classes, ignore_index)
    pair = _as_pair(pred, target)
    if isinstance(pair[0], torch.Tensor):
        return _confusion_torch(*pair, num_classes, ignore_index).cpu().numpy()
    return _confusion_host(*pair, num_classes, ignore_index)


class ConfusionMatrix:
    """Running confusion matrix over an evaluation set.

    Batches of tensors on an accelerator are counted on their device into a device-side
    accumulator: per batch only a few scalars come back (the range check and ``torch.bincount``'s
    size), and the ``(C, C)`` matrix is copied to the host when :attr:`matrix` is read. Numpy
    batches and CPU tensors are counted on the host. All may be mixed.

    Args:
        num_classes: C.
        ignore_index: Target value that is not counted (outside ``[0, C)``).
    """

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        _check_num_classes(num_classes, ignore_index)
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self._host = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)
        self._on_device: torch.Tensor | None = None

    def update(self, pred: ArrayLike, target: ArrayLike) -> None:
        """Add one batch; same input rules as :func:`confusion_matrix`."""
        pair = _as_pair(pred, target)
        if not isinstance(pair[0], torch.Tensor):
            self._host += _confusion_host(*pair, self.num_classes, self.ignore_index)
            return
        counts = _confusion_torch(*pair, self.num_classes, self.ignore_index)
        if self._on_device is not None and self._on_device.device != counts.device:
            self._host += self._on_device.cpu().numpy()  # batch from another device: fold the old one in
            self._on_device = None
        if self._on_device is None:
            self._on_device = counts
        else:
            self._on_device += counts

    @property
    def matrix(self) -> np.ndarray:
        """The accumulated ``(C, C)`` int64 matrix (a copy), rows = ground truth."""
        if self._on_device is None:
            return self._host.copy()
        return self._host + self._on_device.cpu().numpy()

    def reset(self) -> None:
        """Forget everything counted so far."""
        self._host[:] = 0
        self._on_device = None

    def merge(self, other: ConfusionMatrix) -> None:
        """Add the counts of ``other`` (same ``num_classes`` and ``ignore_index``) into this one."""
        if not isinstance(other, ConfusionMatrix):
            raise ValueError(f"can only merge another ConfusionMatrix, got {type(other).__name__}")
        if (other.num_classes, other.ignore_index) != (self.num_classes, self.ignore_index):
            raise ValueError(
                f"cannot merge a ConfusionMatrix with num_classes={other.num_classes}, ignore_index="
                f"{other.ignore_index} into one with num_classes={self.num_classes}, "
                f"ignore_index={self.ignore_index}"
            )
        self._host += other.matrix


def _check_conf(conf: ArrayLike) -> np.ndarray:
    if isinstance(conf, torch.Tensor):
        conf = conf.detach().cpu().numpy()
    conf = np.asarray(conf)
    if conf.ndim != 2 or conf.shape[0] != conf.shape[1] or conf.shape[0] == 0:
        raise ValueError(f"confusion matrix must be square (C, C) with C >= 1, got shape {conf.shape}")
    if not (np.issubdtype(conf.dtype, np.integer) or np.issubdtype(conf.dtype, np.floating)):
        raise ValueError(f"confusion matrix must be numeric counts, got dtype {conf.dtype}")
    conf = conf.astype(np.float64)
    if not np.all(np.isfinite(conf)) or (conf < 0).any():
        raise ValueError("confusion matrix must hold finite, non-negative counts")
    return conf


def _check_classes(classes: Iterable[int], num_classes: int, what: str = "classes") -> list[int]:
    out = [int(c) for c in classes]
    if not out:
        raise ValueError(f"{what} is empty; give at least one class id in [0, {num_classes})")
    bad = sorted({c for c in out if not 0 <= c < num_classes})
    if bad:
        raise ValueError(f"{what} has ids {_shown(bad)} outside [0, {num_classes})")
    if len(set(out)) != len(out):
        raise ValueError(f"{what} lists a class more than once: {out}; each class must appear once")
    return out


def iou_per_class(conf: ArrayLike) -> np.ndarray:
    """Per-class IoU ``TP / (TP + FP + FN)`` from a ``(C, C)`` matrix (rows = ground truth).

    Returns:
        ``(C,)`` float64; NaN for classes whose union is empty (never labelled, never predicted).
    """
    conf = _check_conf(conf)
    tp = np.diag(conf)
    union = conf.sum(axis=0) + conf.sum(axis=1) - tp
    out = np.full(tp.shape, np.nan)
    np.divide(tp, union, out=out, where=union > 0)
    return out


def mean_iou(conf: ArrayLike, classes: Iterable[int] | None = None) -> float:
    """Mean IoU over ``classes`` (default: all C), skipping classes whose IoU is NaN.

    Raises:
        ValueError: ``classes`` is empty, out of range or repeated, or every selected class is NaN
            (no pixel of those classes was labelled or predicted), so the mean is undefined.
    """
    iou = iou_per_class(conf)
    sel = list(range(len(iou))) if classes is None else _check_classes(classes, len(iou))
    values = iou[sel]
    if np.isnan(values).all():
        raise ValueError(
            f"mIoU undefined: no pixel of classes {_shown(sel)} was labelled or predicted; evaluate on data "
            f"that contains these classes or leave them out of `classes`"
        )
    return float(np.nanmean(values))


def pixel_accuracy(conf: ArrayLike) -> float:
    """Fraction of non-ignored pixels predicted correctly: ``trace / sum``.

    Raises:
        ValueError: The matrix is all zeros (no labelled pixel was counted).
    """
    conf = _check_conf(conf)
    total = conf.sum()
    if total == 0:
        raise ValueError("pixel accuracy undefined: the confusion matrix is empty (every pixel was ignored)")
    return float(np.trace(conf) / total)


def class_accuracy(conf: ArrayLike) -> np.ndarray:
    """Per-class recall ``TP / (TP + FN)``; ``(C,)`` float64, NaN for classes with no ground truth."""
    conf = _check_conf(conf)
    gt = conf.sum(axis=1)
    out = np.full(gt.shape, np.nan)
    np.divide(np.diag(conf), gt, out=out, where=gt > 0)
    return out


def restricted_argmax(logits: torch.Tensor, channels: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """Argmax over a subset of channels (Klingner's task-restricted prediction).

    Args:
        logits: ``N×C×H×W`` or ``C×H×W`` scores.
        channels: Channel ids in ``[0, C)`` that may win, e.g. one task's class block.

    Returns:
        int64 tensor (``N×H×W`` or ``H×W``) holding the winning channel id in the full numbering.
        Ties go to the lowest channel id, as with a plain argmax.
    """
    if not isinstance(logits, torch.Tensor):
        raise ValueError(f"logits must be a torch.Tensor, got {type(logits).__name__}")
    if logits.ndim not in (3, 4):
        raise ValueError(f"logits must be N×C×H×W or C×H×W, got shape {tuple(logits.shape)}")
    dim = logits.ndim - 3
    num_channels = logits.shape[dim]
    if isinstance(channels, torch.Tensor):
        channels = channels.reshape(-1).tolist()
    idx = torch.tensor(sorted(_check_classes(channels, num_channels, "channels")), device=logits.device)
    return idx[logits.index_select(dim, idx).argmax(dim)]


def restrict_target(target: ArrayLike, classes: Iterable[int], *, ignore_index: int = 255) -> ArrayLike:
    """Copy of ``target`` with every label not in ``classes`` set to ``ignore_index``.

    Used for task-restricted scores (other tasks' pixels are not scored). Same type, dtype and
    device as ``target``; the input is not modified.
    """
    keep = [int(c) for c in classes]
    if not keep:
        raise ValueError("classes is empty; give the class ids whose pixels should still be scored")
    if ignore_index in keep:
        raise ValueError(f"classes contains ignore_index={ignore_index}; list real class ids only")
    if isinstance(target, torch.Tensor):
        mask = torch.isin(target, torch.tensor(keep, device=target.device, dtype=target.dtype))
        return torch.where(mask, target, torch.full_like(target, ignore_index))
    target = np.asarray(target)
    return np.where(np.isin(target, keep), target, np.asarray(ignore_index, dtype=target.dtype))


def hiou(old: float, new: float) -> float:
    """Harmonic mean of old- and new-class mIoU: ``2·old·new / (old + new)``; 0 when both are 0."""
    for name, v in (("old", old), ("new", new)):
        if not np.isfinite(v) or v < 0:
            raise ValueError(f"hiou needs finite, non-negative mIoU values, got {name}={v!r}")
    if old + new == 0:
        return 0.0
    return float(2.0 * old * new / (old + new))


def old_new_all(
    conf: ArrayLike, old_classes: Iterable[int], new_classes: Iterable[int]
) -> dict[str, float | None]:
    """Class-incremental report from one confusion matrix (argmax over all seen classes).

    Args:
        conf: ``(C, C)`` matrix, rows = ground truth.
        old_classes: Classes learnt at step 0 (include background if the protocol does).
        new_classes: Classes learnt at later steps; empty at the first step.

    Returns:
        ``{"old", "new", "all", "hiou"}``: mIoU over old, over new, over old ∪ new (so "all" is
        weighted by class count, not the mean of old and new), and :func:`hiou`. ``new`` and
        ``hiou`` are None when ``new_classes`` is empty. Classes with NaN IoU are skipped.
    """
    num_classes = _check_conf(conf).shape[0]
    old = _check_classes(old_classes, num_classes, "old_classes")
    new = [int(c) for c in new_classes]
    overlap = sorted(set(old) & set(new))
    if overlap:
        raise ValueError(f"old_classes and new_classes share {overlap}; a class is either old or new")
    old_miou = mean_iou(conf, old)
    if not new:
        return {"old": old_miou, "new": None, "all": old_miou, "hiou": None}
    new_miou = mean_iou(conf, _check_classes(new, num_classes, "new_classes"))
    return {
        "old": old_miou,
        "new": new_miou,
        "all": mean_iou(conf, old + new),
        "hiou": hiou(old_miou, new_miou),
    }
