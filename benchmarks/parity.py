"""Cross-check llseg's loss, pseudo-label, classifier-initialisation and metric functions against
the authors' released code, on seeded random inputs (docs/methods.md, "Deviations").

The authors' repositories are NOT part of llseg: clone them yourself and pass their paths::

    git clone https://github.com/fcdl94/MiB
    git clone https://github.com/arthurdouillard/CVPR2021_PLOP
    git clone https://github.com/clovaai/SSUL
    git clone https://github.com/ifnspaml/CIL_Segmentation
    git clone https://github.com/YBIO/IDEC
    python benchmarks/parity.py --mib MiB --plop CVPR2021_PLOP --ssul SSUL --klingner CIL_Segmentation --idec IDEC

Their modules are imported from those paths at run time. Heavy imports they do not need for the
compared functions (apex, inplace_abn, sklearn, their model packages) are replaced by empty
stand-ins while their files load. Every comparison runs over several class splits (VOC 15-5,
15-1, 10-1, 5-3 shapes), ignore pixels, an image without background, an empty class and
non-square maps, and reports the largest absolute difference of the value and, for losses, of
the gradient with respect to the logits. Results and the reason for every mismatch:
benchmarks/PARITY.md. A repository left out is skipped (its rows are not printed).
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import functools
import importlib.util
import json
import math
import sys
import tempfile
import types
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from llseg.data.dataset import SegmentationPairs, channel_lut
from llseg.data.transforms import upsample_scores
from llseg.methods.losses import bce_with_ignore, labelled_cross_entropy
from llseg.methods.recipes import feature_kd as ll_feature_kd
from llseg.methods.recipes import klingner as ll_klingner
from llseg.methods.recipes import mib as ll_mib
from llseg.methods.recipes import plop as ll_plop
from llseg.methods.recipes import ssul as ll_ssul
from llseg.metrics.confusion import confusion_matrix, mean_iou

IGNORE = 255
# (old channels incl. background, new channels): VOC 15-5, 15-1, 10-1, 5-3 at their first later step
SPLITS = ((16, 5), (16, 1), (11, 1), (6, 3))
SHAPES = ((12, 12), (10, 14))  # square and non-square logit maps


@dataclass
class Row:
    """One compared term: largest |Δ| of value and gradient over all cases (NaN = not comparable)."""

    method: str
    term: str
    upstream: str
    llseg: str
    value: float = 0.0
    grad: float | None = None
    cases: int = 0
    notes: list[str] = field(default_factory=list)

    def add(self, value: float, grad: float | None = None, note: str | None = None) -> None:
        self.cases += 1
        self.value = _worst(self.value, value)
        if grad is not None:
            self.grad = grad if self.grad is None else _worst(self.grad, grad)
        if note and note not in self.notes:
            self.notes.append(note)


def _worst(a: float, b: float) -> float:
    return b if math.isnan(b) or b > a else a


def max_diff(a: Any, b: Any) -> float:
    """max |a − b| over tensors/arrays; NaN where exactly one side is NaN (equal NaNs count as 0)."""
    a = torch.as_tensor(np.asarray(a, dtype=np.float64) if not torch.is_tensor(a) else a).double()
    b = torch.as_tensor(np.asarray(b, dtype=np.float64) if not torch.is_tensor(b) else b).double()
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    both_nan = torch.isnan(a) & torch.isnan(b)
    one_nan = torch.isnan(a) ^ torch.isnan(b)
    if one_nan.any():
        return math.nan
    same_inf = torch.isinf(a) & (a == b)
    d = (a - b).abs().masked_fill(both_nan | same_inf, 0.0)
    return float(d.max()) if d.numel() else 0.0


def value_and_grad(fn: Callable[[torch.Tensor], torch.Tensor], logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """fn(logits) and d fn / d logits (zeros where the value is not finite)."""
    x = logits.detach().clone().double().requires_grad_(True)
    value = fn(x)
    if value.requires_grad and torch.isfinite(value):
        (grad,) = torch.autograd.grad(value, x, allow_unused=True)
        grad = torch.zeros_like(x) if grad is None else grad
    else:
        grad = torch.full_like(x, math.nan)
    return value.detach(), grad


def compare_loss(row: Row, theirs: Callable[[torch.Tensor], torch.Tensor], ours: Callable[[torch.Tensor], torch.Tensor],
                 logits: torch.Tensor, note: str | None = None) -> None:
    v1, g1 = value_and_grad(theirs, logits)
    v2, g2 = value_and_grad(ours, logits)
    row.add(max_diff(v1, v2), max_diff(g1, g2), note)


# ---------------------------------------------------------------------------------------------
# Loading the authors' files


@contextlib.contextmanager
def upstream(root: Path, stubs: dict[str, types.ModuleType] | None = None) -> Iterator[None]:
    """Make ``root`` importable (first on sys.path) with ``stubs`` standing in for heavy modules;
    afterwards every module imported meanwhile is dropped again (MiB and PLOP share names)."""
    before = set(sys.modules)
    sys.path.insert(0, str(root))
    sys.modules.update(stubs or {})
    try:
        yield
    finally:
        sys.path.remove(str(root))
        for name in set(sys.modules) - before:
            del sys.modules[name]


def load(root: Path, relative: str, tag: str) -> types.ModuleType:
    """Execute ``root/relative`` as module ``_upstream_<tag>`` (inside :func:`upstream`)."""
    path = root / relative
    if not path.is_file():
        raise SystemExit(f"{path} not found: pass the root of a checkout of the authors' repository")
    spec = importlib.util.spec_from_file_location(f"_upstream_{tag}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stub(name: str, **attrs: Any) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__path__ = []  # a package, so "from x.y import z" finds stubs registered as x.y
    for key, value in attrs.items():
        setattr(module, key, value)
    return module


class _Anything:
    """Stand-in class for names imported from stubbed modules (never called by the compared code)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a stubbed upstream dependency was used")


def abn_stubs() -> dict[str, types.ModuleType]:
    return {"inplace_abn": stub("inplace_abn", InPlaceABNSync=_Anything, InPlaceABN=_Anything, ABN=_Anything),
            "models": stub("models"), "modules": stub("modules", DeeplabV3=_Anything)}


# ---------------------------------------------------------------------------------------------
# Inputs


def make_batch(gen: torch.Generator, old: int, new: int, shape: tuple[int, int], *, n: int = 3,
               scale: float = 3.0) -> dict[str, torch.Tensor]:
    """Student logits N×(old+new)×H×W, teacher logits N×old×H×W and a step target (background 0,
    new classes old..old+new−1, 10 % ignore). Image 1 has no background pixel; new class ``old``
    is absent from the batch when there are several new classes (an empty class)."""
    h, w = shape
    c = old + new
    logits = torch.randn(n, c, h, w, generator=gen, dtype=torch.float64) * scale
    teacher = torch.randn(n, old, h, w, generator=gen, dtype=torch.float64) * scale
    teacher[0, :, : h // 2] *= 4  # confident region: low entropy
    first_new = old + 1 if new > 1 else old  # class `old` stays empty when new > 1
    labels = torch.randint(first_new, c, (n, h, w), generator=gen)
    background = torch.rand(n, h, w, generator=gen) < 0.5
    background[1] = False  # image 1: no background pixel
    target = torch.where(background, torch.zeros_like(labels), labels)
    target[torch.rand(n, h, w, generator=gen) < 0.1] = IGNORE
    return {"logits": logits, "teacher": teacher, "target": target}


def cases(seed: int) -> Iterator[tuple[str, int, int, dict[str, torch.Tensor]]]:
    gen = torch.Generator().manual_seed(seed)
    for old, new in SPLITS:
        for shape in SHAPES:
            yield f"{old}+{new} {shape[0]}x{shape[1]}", old, new, make_batch(gen, old, new, shape)


# ---------------------------------------------------------------------------------------------
# MiB (fcdl94/MiB)


def check_mib(root: Path, seed: int) -> list[Row]:
    with upstream(root, abn_stubs()):
        loss = load(root, "utils/loss.py", "mib_loss")
        segmod = load(root, "segmentation_module.py", "mib_segmentation_module")
        metrics = load(root, "metrics/stream_metrics.py", "mib_metrics")
    unce = Row("MiB", "unbiased cross-entropy (UNCE)", "utils/loss.py UnbiasedCrossEntropy (reduction none, .mean())",
               "mib.unbiased_cross_entropy")
    unkd = Row("MiB", "unbiased distillation (UNKD), α = 1 and 2", "utils/loss.py UnbiasedKnowledgeDistillationLoss",
               "mib.unbiased_distillation")
    init = Row("MiB", "init_balanced (weights, biases)",
               "segmentation_module.py IncrementalSegmentationModule.init_new_classifier", "mib.init_balanced")
    miou = Row("MiB", "mean IoU", "metrics/stream_metrics.py StreamSegMetrics.get_results", "metrics.confusion.mean_iou")
    for _, old, new, b in cases(seed):
        criterion = loss.UnbiasedCrossEntropy(old_cl=old, ignore_index=IGNORE, reduction="none")
        compare_loss(unce, functools.partial(_mean_of, criterion, b["target"]),
                     functools.partial(ll_mib.unbiased_cross_entropy, target=b["target"], old_channels=old), b["logits"])
        for alpha in (1.0, 2.0):
            kd = loss.UnbiasedKnowledgeDistillationLoss(alpha=alpha)
            compare_loss(unkd, functools.partial(_swap, kd, b["teacher"]),
                         functools.partial(ll_mib.unbiased_distillation, teacher_logits=b["teacher"], alpha=alpha),
                         b["logits"])
        # init_balanced: their per-step heads vs llseg's one grown 1x1 conv
        torch.manual_seed(seed + old)
        heads = [nn.Conv2d(8, old, 1), nn.Conv2d(8, new, 1)]
        fake = types.SimpleNamespace(cls=nn.ModuleList(heads), classes=[old, new])
        with torch.no_grad():
            segmod.IncrementalSegmentationModule.init_new_classifier(fake, torch.device("cpu"))
        conv = nn.Conv2d(8, old + new, 1)
        with torch.no_grad():
            torch.manual_seed(seed + old)
            first = nn.Conv2d(8, old, 1)
            conv.weight[:old] = first.weight
            _bias(conv)[:old] = _bias(first)
        ll_mib.init_balanced(conv, new)
        theirs_w = torch.cat([heads[0].weight, heads[1].weight]).detach()
        theirs_b = torch.cat([_bias(heads[0]), _bias(heads[1])]).detach()
        init.add(max(max_diff(theirs_w, conv.weight.detach()), max_diff(theirs_b, _bias(conv).detach())))
        compare_miou(miou, metrics.StreamSegMetrics(old + new), b, old + new, absent="skipped")
    return [unce, unkd, init, miou]


def _bias(conv: nn.Conv2d) -> torch.Tensor:
    assert conv.bias is not None
    return conv.bias


def _mean_of(criterion: Any, target: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """MiB's criterion (reduction none) averaged over all pixels, as its trainer does."""
    return criterion(x, target).mean()


def compare_miou(row: Row, metric: Any, b: dict[str, torch.Tensor], classes: int, *, absent: str) -> None:
    """Their StreamSegMetrics against llseg's confusion matrix + mean_iou on the argmax of the
    student logits (``absent``: how they treat classes never labelled)."""
    pred = b["logits"].argmax(1).numpy()
    target = b["target"].numpy()
    metric.update(target, pred)
    metric.confusion_matrix_to_fig = lambda: None  # MiB draws a matplotlib figure here
    theirs = metric.get_results()["Mean IoU"]
    conf = confusion_matrix(pred, target, classes)
    labelled = [c for c in range(classes) if conf[c].sum() > 0]
    ours = mean_iou(conf, labelled if absent == "skipped" else None)
    note = None
    if absent == "zero":
        # SSUL: classes never labelled and never predicted count as IoU 0 (EPS in the denominator)
        iou = np.nan_to_num(np.diag(conf) / np.maximum(conf.sum(0) + conf.sum(1) - np.diag(conf), 1), nan=0.0)
        ours_zero = float(iou.mean())
        if abs(ours_zero - theirs) < 1e-5 and abs(ours - theirs) > 1e-5:
            note = "classes never labelled nor predicted count as 0 in SSUL's mean; llseg skips them"
    row.add(abs(theirs - ours), None, note)


# ---------------------------------------------------------------------------------------------
# PLOP (arthurdouillard/CVPR2021_PLOP)


class _Captured(Exception):
    pass


def plop_modules(root: Path) -> tuple[types.ModuleType, types.ModuleType]:
    captured: dict[str, Any] = {}

    @contextlib.contextmanager
    def scale_loss(loss: torch.Tensor, optim: Any) -> Iterator[torch.Tensor]:
        captured["loss"] = loss  # not detached: the domain rows differentiate it
        raise _Captured
        yield loss  # pragma: no cover

    apex = stub("apex", amp=types.SimpleNamespace(scale_loss=scale_loss))
    utils = stub("utils", get_regularizer=lambda *a, **k: None)
    stubs = {**abn_stubs(), "apex": apex, "utils": utils}
    with upstream(root, stubs):
        sys.modules["utils.loss"] = load(root, "utils/loss.py", "plop_loss")
        train = load(root, "train.py", "plop_train")
        sys.modules["tasks"] = load(root, "tasks.py", "plop_tasks")
        argparser = load(root, "argparser.py", "plop_argparser")
    train._captured = captured  # type: ignore[attr-defined]
    return train, argparser


class _FakeModel:
    """What PLOP's Trainer calls: model(images, ret_intermediate) -> (logits, features)."""

    def __init__(self, outputs: torch.Tensor, features: dict[str, Any] | None = None) -> None:
        self.outputs, self.features = outputs, features or {}
        self.module = types.SimpleNamespace(in_eval=False)
        self.in_eval = False

    def __call__(self, images: torch.Tensor, ret_intermediate: bool = False) -> tuple[torch.Tensor, dict[str, Any]]:
        return self.outputs, self.features

    def train(self) -> None:
        pass


def _recording_ce(seen: dict[str, torch.Tensor], outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """PLOP's criterion (CE, reduction none) that also records the labels it is handed."""
    seen["labels"] = labels.clone()
    return F.cross_entropy(outputs, labels, ignore_index=IGNORE, reduction="none")


class _Loader(list):
    sampler = types.SimpleNamespace(set_epoch=lambda epoch: None)


_LOG = types.SimpleNamespace(info=lambda *a, **k: None, add_scalar=lambda *a, **k: None)


def plop_trainer(train: types.ModuleType, argparser: types.ModuleType, old: int, new: int, b: dict[str, torch.Tensor]) -> Any:
    opts = argparser.modify_command_options(argparser.get_argparser().parse_args(
        ["--method", "PLOP", "--dataset", "voc", "--task", "15-5", "--step", "1"]))
    trainer = train.Trainer(_FakeModel(b["logits"]), _FakeModel(b["teacher"]), torch.device("cpu"), opts,
                            classes=[old, new], step=1)
    return trainer


def check_plop(root: Path, seed: int) -> list[Row]:
    train, argparser = plop_modules(root)
    entropy = Row("PLOP", "entropy score, mode released", "train.py entropy(p) / log|C_1:t|", "plop.released_entropy")
    entropy_paper = Row("PLOP", "entropy score, mode corrected", "train.py entropy(p) / log|C_1:t|",
                        "plop.normalized_entropy")
    median = Row("PLOP", "per-class thresholds, mode released", "train.py Trainer.find_median(mode='entropy')",
                 "plop.entropy_histogram + released_median_thresholds")
    median_paper = Row("PLOP", "per-class thresholds, mode corrected", "train.py Trainer.find_median(mode='entropy')",
                       "plop.entropy_histogram + median_thresholds")
    pseudo = Row("PLOP", "pseudo-labels + adaptive factor ν · CE, mode released",
                 "train.py Trainer.train (labels handed to the criterion; loss_tot)",
                 "plop.entropy_pseudo_labels(channels=|C_1:t|) + weighted_cross_entropy")
    pseudo_paper = Row("PLOP", "pseudo-labels + adaptive factor ν · CE, mode corrected",
                       "train.py Trainer.train (labels handed to the criterion; loss_tot)",
                       "plop.entropy_pseudo_labels + weighted_cross_entropy")
    pod = Row("PLOP", "local POD (6 maps, logits with extra channels summed), released",
              "train.py features_distillation (PLOP's pod_options)", "plop.pod_loss(released=True)")
    pod_paper = Row("PLOP", "local POD, mode corrected", "train.py features_distillation (PLOP's pod_options)",
                    "plop.pod_loss")
    for _, old, new, b in cases(seed):
        channels = old + new
        trainer = plop_trainer(train, argparser, old, new, b)
        probs = torch.softmax(b["teacher"], 1)
        theirs = train.entropy(probs) / math.log(channels)
        entropy.add(max_diff(theirs, ll_plop.released_entropy(b["teacher"], channels)))
        entropy_paper.add(max_diff(theirs, ll_plop.normalized_entropy(b["teacher"])),
                          note="the code averages over channels and divides by log|C_1:t| once more")
        # thresholds over two batches (the loader)
        loader = _Loader([(torch.zeros(len(b["target"]), 3, 2, 2), b["target"])])
        trainer.model_old = _FakeModel(b["teacher"])
        thr, _ = trainer.find_median(loader, torch.device("cpu"), _LOG, mode="entropy")
        thr = thr[:old]
        histogram = ll_plop.entropy_histogram(b["target"], b["teacher"], channels=channels)
        median.add(max_diff(thr, ll_plop.released_median_thresholds(histogram, trainer.threshold)))
        median_paper.add(max_diff(thr, ll_plop.median_thresholds(ll_plop.entropy_histogram(b["target"], b["teacher"]),
                                                                 trainer.threshold)),
                         note="the code's running sum adds bin indices, not counts; other entropy scale")
        # pseudo-labels and ν, through Trainer.train (CE only: no POD)
        trainer.thresholds = thr.clone()
        trainer.max_entropy = torch.log(torch.tensor(float(channels)))
        trainer.pod = None
        seen: dict[str, torch.Tensor] = {}
        trainer.criterion = functools.partial(_recording_ce, seen)
        trainer.model = _FakeModel(b["logits"])
        trainer.model_old = _FakeModel(b["teacher"])
        data = _Loader([(torch.zeros(len(b["target"]), 3, 2, 2), b["target"].clone())])
        with contextlib.suppress(_Captured):
            trainer.train(0, types.SimpleNamespace(zero_grad=lambda: None, param_groups=[{"lr": 0.0}]), data, logger=_LOG)
        loss_theirs = train._captured["loss"]
        for row, kwargs, thresholds in ((pseudo, {"channels": channels}, thr),
                                        (pseudo_paper, {}, ll_plop.median_thresholds(
                                            ll_plop.entropy_histogram(b["target"], b["teacher"]), trainer.threshold))):
            labels, nu = ll_plop.entropy_pseudo_labels(b["target"], b["teacher"], thresholds, **kwargs)
            loss_ours = ll_plop.weighted_cross_entropy(b["logits"], labels, nu)
            label_diff = float((labels != seen["labels"]).float().mean())  # share of pixels labelled differently
            row.add(max(max_diff(loss_theirs, loss_ours), label_diff), None,
                    None if kwargs else "ν = 0 on the image without background in the code (1 in llseg); other "
                                        "thresholds and entropy scale change the accepted pixels")
        # local POD with PLOP's own options
        for shape in ((8, 8), (12, 12), (9, 9), (12, 8)):
            compare_pod(pod, pod_paper, train, trainer, old, new, shape, seed)
    return [entropy, entropy_paper, median, median_paper, pseudo, pseudo_paper, pod, pod_paper,
            *check_domain(train, argparser, seed)]


# The domain-incremental Cityscapes scripts (scripts/cityscapesDomain/*.sh): --method FT plus these options
DOMAIN_MIB = ["--loss_kd", "10.0"]
DOMAIN_PLOP = ["--pod", "local", "--pod_factor", "0.0001", "--pod_logits", "--pod_options",
               '{"switch": {"after": {"extra_channels": "sum", "factor": 0.0001, "type": "local"}}}']


class _FeatureFake:
    """What llseg's PLOP recipe calls: forward_features(image, preactivation) -> its named maps."""

    def __init__(self, maps: dict[str, torch.Tensor]) -> None:
        self.maps = maps

    def forward_features(self, image: torch.Tensor, preactivation: bool = False) -> dict[str, torch.Tensor]:
        return self.maps


def _domain_loss(train: types.ModuleType, argparser: types.ModuleType, options: list[str], target: torch.Tensor,
                 new: tuple[torch.Tensor, dict[str, Any]], old: tuple[torch.Tensor, dict[str, Any]]) -> torch.Tensor:
    """loss_tot of one step-1 batch of PLOP's Trainer.train on cityscapes_domain with ``options``."""
    opts = argparser.modify_command_options(argparser.get_argparser().parse_args(
        ["--method", "FT", "--dataset", "cityscapes_domain", "--task", "11-1", "--step", "1", *options]))
    trainer = train.Trainer(_FakeModel(*new), _FakeModel(*old), torch.device("cpu"), opts, step=1)
    data = _Loader([(torch.zeros(len(target), 3, 2, 2), target.clone())])
    with contextlib.suppress(_Captured):
        trainer.train(0, types.SimpleNamespace(zero_grad=lambda: None, param_groups=[{"lr": 0.0}]), data, logger=_LOG)
    return train._captured["loss"]


def check_domain(train: types.ModuleType, argparser: types.ModuleType, seed: int) -> list[Row]:
    """MiB and PLOP on a domain step (19 classes, no new class, no background) against the Trainer of
    PLOP's released domain scripts; llseg's recipes in a stage with ``Stage.same_classes``."""
    mib_row = Row("MiB", "domain step: CE + 10 · KD (Cityscapes domains, mib_cityscapesDomain_1-1.sh)",
                  "PLOP's train.py Trainer.train, --method FT --loss_kd 10 (loss_tot)", "Mib.loss (Stage.same_classes)")
    rows = {mode: Row("PLOP", f"domain step: CE + local POD, mode {mode} (plop_cityscapesDomain_11-1.sh)",
                      "train.py Trainer.train, --method FT --pod local --pod_factor 0.0001 --pod_logits (loss_tot)",
                      f"Plop.loss (Stage.same_classes, mode {mode})") for mode in ("released", "corrected")}
    gen = torch.Generator().manual_seed(seed)
    # full logits and the low-resolution maps POD reads (square, sides 4 divides: the same regions in both modes)
    for shape, small in (((12, 12), (8, 8)), ((10, 14), (4, 4)), ((16, 16), (12, 12))):
        compare_domain_case(mib_row, rows, train, argparser, gen, shape, small)
    return [mib_row, *rows.values()]


def compare_domain_case(mib_row: Row, plop_rows: dict[str, Row], train: types.ModuleType, argparser: types.ModuleType,
                        gen: torch.Generator, shape: tuple[int, int], small: tuple[int, int]) -> None:
    from llseg.methods.config import TrainConfig
    from llseg.methods.recipe import Stage
    from llseg.methods.registry import make_recipe

    classes, n = 19, 2
    logits = torch.randn(n, classes, *shape, generator=gen) * 3
    teacher = torch.randn(n, classes, *shape, generator=gen) * 3
    target = torch.randint(0, classes, (n, *shape), generator=gen)
    target[torch.rand(n, *shape, generator=gen) < 0.1] = IGNORE
    image = torch.zeros(n, 3, *shape)
    stage = Stage(step=1, old_classes=classes, classes=classes)
    settings = dict(dataset="cityscapes", split="cityscapes-domain-11-1", model="deeplabv3_resnet50")

    def ours_mib(x: torch.Tensor) -> torch.Tensor:
        recipe = make_recipe(TrainConfig.from_hyperparameters(dict(recipe="mib", **settings)))
        recipe.begin_stage(stage, None)
        return recipe.loss(lambda _: x, lambda _: teacher, image, target).double()

    compare_loss(mib_row, lambda x: _domain_loss(train, argparser, DOMAIN_MIB, target, (x, {}), (teacher, {})),
                 ours_mib, logits)
    feats_new = [torch.randn(n, 4, *small, generator=gen) for _ in range(5)]
    feats_old = [f + 0.3 * torch.randn(f.shape, generator=gen) for f in feats_new]
    small_old = torch.randn(n, classes, *small, generator=gen)
    small_new = torch.randn(n, classes, *small, generator=gen)

    def maps(feats: list[torch.Tensor], full: torch.Tensor, lowres: torch.Tensor) -> _FeatureFake:
        names = ("layer1", "layer2", "layer3", "layer4", "aspp")
        return _FeatureFake({**dict(zip(names, feats)), "aspp_before_dropout": feats[4], "logits": full,
                             "logits_lowres": lowres})

    def theirs_plop(x: torch.Tensor) -> torch.Tensor:
        new = (logits, {"attentions": list(feats_new), "sem_logits_small": x})
        old = (teacher, {"attentions": list(feats_old), "sem_logits_small": small_old})
        return _domain_loss(train, argparser, DOMAIN_PLOP, target, new, old)

    def ours_plop(mode: str) -> Callable[[torch.Tensor], torch.Tensor]:
        def fn(x: torch.Tensor) -> torch.Tensor:
            recipe = make_recipe(TrainConfig.from_hyperparameters(dict(
                recipe="plop", pod_factor=0.0001, pod_logits_factor=0.0001, mode=mode, crop_size="512x512", **settings)))
            recipe.begin_stage(stage, None)
            return recipe.loss(maps(feats_new, logits, x), maps(feats_old, teacher, small_old), image, target).double()
        return fn

    for mode, row in plop_rows.items():
        compare_loss(row, theirs_plop, ours_plop(mode), small_new)


def compare_pod(pod: Row, pod_paper: Row, train: types.ModuleType, trainer: Any, old: int, new: int,
                shape: tuple[int, int], seed: int) -> None:
    gen = torch.Generator().manual_seed(seed + shape[0] * 31 + shape[1])
    h, w = shape
    feats_new = [torch.randn(2, 4, h, w, generator=gen, dtype=torch.float64) for _ in range(5)]
    feats_old = [f + 0.3 * torch.randn(f.shape, generator=gen, dtype=torch.float64) for f in feats_new]
    logits_new = torch.randn(2, old + new, h, w, generator=gen, dtype=torch.float64)
    logits_old = torch.randn(2, old, h, w, generator=gen, dtype=torch.float64)
    labels = torch.zeros(2, h, w, dtype=torch.long)

    def theirs(x: torch.Tensor) -> torch.Tensor:
        return train.features_distillation(
            [*feats_old, logits_old], [*feats_new, x], collapse_channels=trainer.pod_options and "local",
            labels=labels, index_new_class=old, pod_factor=0.01, prepro="pow", pod_options=trainer.pod_options,
            spp_scales=[1, 2, 4], use_pod_schedule=True, nb_current_classes=old + new, nb_new_classes=new)

    def ours(released: bool) -> Callable[[torch.Tensor], torch.Tensor]:
        def fn(x: torch.Tensor) -> torch.Tensor:
            maps = [*feats_new, ll_plop.sum_extra_channels(x, old)]
            return ll_plop.pod_loss(maps, [*feats_old, logits_old], [0.01] * 5 + [0.0005], channels=old + new,
                                    new_channels=new, released=released).double()
        return fn

    try:
        v1, g1 = value_and_grad(theirs, logits_new)
    except (AssertionError, RuntimeError):  # the code asserts finite losses: empty regions of wide maps
        v1, g1 = torch.tensor(math.nan), torch.full_like(logits_new, math.nan)
    try:
        v2, g2 = value_and_grad(ours(True), logits_new)
        pod.add(max_diff(v1, v2), max_diff(g1, g2))
    except ValueError:
        pod.add(0.0 if math.isnan(float(v1)) else math.nan, None,
                f"{h}x{w}: the code fails (empty regions), llseg's released mode refuses such maps")
    v3, g3 = value_and_grad(ours(False), logits_new)
    note = None if h == w and h % 4 == 0 else "maps whose side 4 does not divide, or non-square: adaptive regions"
    pod_paper.add(max_diff(v1, v3), max_diff(g1, g3), note)


# ---------------------------------------------------------------------------------------------
# SSUL (clovaai/SSUL)


def ssul_statement(root: Path, target: str) -> types.CodeType:
    """Compile the assignment to ``target`` in SSUL's main.py (the training loop is a script)."""
    tree = ast.parse((root / "main.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == target for t in node.targets):
            return compile(ast.Module(body=[node], type_ignores=[]), str(root / "main.py"), "exec")
    raise SystemExit(f"no assignment to {target} in {root / 'main.py'}")


def check_ssul(root: Path, seed: int) -> list[Row]:
    sk = stub("sklearn", metrics=stub("sklearn.metrics", confusion_matrix=None))
    with upstream(root, {"sklearn": sk, "sklearn.metrics": sk.metrics}):
        loss = load(root, "utils/loss.py", "ssul_loss")
        tasks = load(root, "utils/tasks.py", "ssul_tasks")
        sys.modules["utils.tasks"] = tasks
        sys.modules["utils"] = stub("utils", tasks=tasks)
        voc = load(root, "datasets/voc.py", "ssul_voc")
        metrics = load(root, "metrics/stream_metrics.py", "ssul_metrics")
    pseudo_code = ssul_statement(root, "pseudo_labels")
    bce = Row("SSUL", "BCE with ignore", "utils/loss.py BCEWithLogitsLossWithIgnoreIndex (mean)", "losses.bce_with_ignore")
    bce_edge = Row("SSUL", "BCE, edge: every pixel ignored", "utils/loss.py BCEWithLogitsLossWithIgnoreIndex (mean)",
                   "losses.bce_with_ignore")
    pseudo = Row("SSUL", "pseudo-labels (sigmoid, τ = 0.7, unknown)", "main.py `pseudo_labels = torch.where(...)`",
                 "ssul.pseudo_label")
    relabel = Row("SSUL", "unknown relabelling (step labels, saliency)", "datasets/voc.py VOCSegmentation.__getitem__ "
                  "(image_set train)", "learner LUT + ssul.unknown_lut + SegmentationPairs(saliency)")
    memory = Row("SSUL", "memory labels (SSUL-M, unknown)", "datasets/voc.py VOCSegmentation.__getitem__ "
                 "(image_set memory)", "learner._target_lut(old) + ssul.unknown_lut")
    merge = Row("SSUL", "inference: unknown merged into background", "main.py validate", "ssul.merge_unknown")
    miou = Row("SSUL", "mean IoU", "metrics/stream_metrics.py StreamSegMetrics.get_results", "metrics.confusion.mean_iou")
    for _, old, new, b in cases(seed):
        # BCE: unknown layout (channel 0 unknown), all channels
        criterion = loss.BCEWithLogitsLossWithIgnoreIndex(reduction="mean")
        target = b["target"]
        compare_loss(bce, functools.partial(_swap, criterion, target), functools.partial(bce_with_ignore, target=target),
                     b["logits"])
        all_ignored = torch.full_like(target, IGNORE)
        v_theirs = criterion(b["logits"], all_ignored)
        bce_edge.add(max_diff(v_theirs, bce_with_ignore(b["logits"], all_ignored)), None,
                     "NaN (mean of nothing) in the code, 0 in llseg")
        # pseudo-labels with the unknown layout: fg_idx = 1
        shifted = torch.where(target == IGNORE, IGNORE, target + 1)
        shifted[:, :2, :2] = 0  # some unknown pixels
        # unknown + background + old, float32 as the code runs (sigmoid saturates to ties there)
        teacher = torch.cat([b["teacher"][:, :1] - 1, b["teacher"]], 1).float()
        scope = {"torch": torch, "labels": shifted, "fg_idx": 1, "opts": types.SimpleNamespace(pseudo_thresh=0.7)}
        pred_prob = torch.sigmoid(teacher)
        scope["pred_scores"], scope["pred_labels"] = torch.max(pred_prob, dim=1)
        exec(pseudo_code, scope)
        ours = ll_ssul.pseudo_label(shifted, teacher, loss_type="bce", threshold=0.7, unknown=True)
        pseudo.add(max_diff(scope["pseudo_labels"], ours))
        # inference merge
        probs = torch.sigmoid(b["logits"])
        theirs_m = probs.clone()
        theirs_m[:, 1] += theirs_m[:, 0]
        merge.add(max_diff(theirs_m[:, 1:], ll_ssul.merge_unknown(probs)))
        compare_miou(miou, metrics.StreamSegMetrics(old + new, "voc"), b, old + new, absent="zero")
    compare_relabel(relabel, memory, voc, tasks, seed)
    return [bce, bce_edge, pseudo, relabel, memory, merge, miou]


def compare_relabel(relabel: Row, memory: Row, voc: types.ModuleType, tasks: types.ModuleType, seed: int) -> None:
    """Run SSUL's VOCSegmentation.__getitem__ on written PNGs and llseg's SegmentationPairs on the same files."""
    rng = np.random.default_rng(seed)
    for task in ("15-5", "15-1", "10-1", "5-3"):
        steps = [tasks.get_tasks("voc", task, s) for s in sorted(tasks.get_tasks("voc", task))]
        step = 1
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            label = rng.integers(0, 21, (9, 13)).astype(np.uint8)
            label[rng.random(label.shape) < 0.1] = IGNORE
            label[:3, :3] = 0
            saliency = (rng.random(label.shape) < 0.5).astype(np.uint8) * 255
            Image.fromarray(np.zeros((*label.shape, 3), np.uint8)).save(folder / "a.png")
            Image.fromarray(label).save(folder / "l.png")
            Image.fromarray(saliency).save(folder / "s.png")
            for image_set, row in (("train", relabel), ("memory", memory)):
                classes = list(steps[step]) if image_set == "train" else [c for s in steps[: step + 1] for c in s]
                fake = types.SimpleNamespace(
                    file_names=["a"], images=[folder / "a.png"], masks=[folder / "l.png"], sal_maps=[folder / "s.png"],
                    image_set=image_set, unknown=True, target_cls=[*classes, IGNORE],
                    ordering_map=_ordering_map(steps), transform=_to_tensors)
                fake.gt_label_mapping = types.MethodType(voc.VOCSegmentation.gt_label_mapping, fake)
                _, theirs, _, _ = voc.VOCSegmentation.__getitem__(fake, 0)
                learned = [c for s in steps[: step + 1] for c in s]  # llseg: channel = index among learned classes
                lut = channel_lut(learned)
                if image_set == "train":
                    keep = np.zeros(256, dtype=bool)
                    keep[[*steps[step], IGNORE]] = True
                else:
                    keep = np.zeros(256, dtype=bool)
                    keep[[*[c for s in steps[:step] for c in s], IGNORE]] = True
                lut = np.where(keep, lut, lut[0]).astype(np.uint8)
                lut = ll_ssul.unknown_lut(lut, 0)
                pairs = SegmentationPairs([folder / "a.png"], [folder / "l.png"], lut=lut, size=None,
                                          saliency=[folder / "s.png"] if image_set == "train" else None)
                _, ours = pairs[0]
                differ = float((theirs.long() != ours).float().mean())
                note = None
                if image_set == "memory" and differ:
                    note = ("the code keeps memory labels unshifted (no +1 for the unknown channel, no "
                            "background -> unknown) and keeps the current step's classes; llseg uses the unknown "
                            "layout and maps current-step classes to background")
                row.add(differ, None, note)


def _ordering_map(steps: Sequence[Sequence[int]]) -> np.ndarray:
    order = [c for s in steps for c in s]
    out = np.full(256, IGNORE, dtype=np.uint8)
    out[: len(order)] = [order.index(x) for x in range(len(order))]
    return out


def _to_tensors(img: Image.Image, target: Image.Image, sal: Image.Image) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return (torch.zeros(1), torch.from_numpy(np.array(target)), torch.from_numpy(np.array(sal)))


# ---------------------------------------------------------------------------------------------
# Klingner et al. (ifnspaml/CIL_Segmentation)


def check_klingner(root: Path, seed: int) -> list[Row]:
    with upstream(root):
        losses = load(root, "models/train/losses.py", "klingner_losses")
    ce_row = Row("Klingner", "CE on new classes", "models/train/losses.py CrossEntropyLoss(ignore_background=True, "
                 "train_id_0=C_old) on log_softmax[:, C_old:]", "losses.labelled_cross_entropy")
    kd_row = Row("Klingner", "entropy-weighted distillation, T ∈ {1, 2}, λ_GS ∈ {0, 1}",
                 "models/train/losses.py KnowledgeDistillationCELossWithGradientScaling",
                 "klingner.entropy_weighted_distillation")
    kd_edge = Row("Klingner", "distillation, edge: no unlabelled pixel",
                  "models/train/losses.py KnowledgeDistillationCELossWithGradientScaling",
                  "klingner.entropy_weighted_distillation")
    up_row = Row("Klingner", "evaluation upsampling (nearest)", "evaluate_erfnet.py F.interpolate(mode='nearest')",
                 "data.transforms.upsample_scores(mode='nearest')")
    device = torch.device("cpu")
    for _, old, _, b in cases(seed):
        # Klingner's labels: no background; step target = new classes at old.., 255 elsewhere
        target = torch.where(b["target"] == 0, IGNORE, b["target"])
        criterion = losses.CrossEntropyLoss(ignore_background=True, train_id_0=old, device=device)
        compare_loss(ce_row, functools.partial(_klingner_ce, criterion, old=old, target=target),
                     functools.partial(labelled_cross_entropy, target=target), b["logits"])
        for temp in (1, 2):
            for gs in (0.0, 1.0):
                kd = losses.KnowledgeDistillationCELossWithGradientScaling(temp=temp, device=device, gs=gs)
                soft = F.softmax(b["teacher"] / temp, 1)
                theirs = functools.partial(_klingner_kd, kd, old=old, temp=temp, soft=soft, target=target)
                ours = functools.partial(ll_klingner.entropy_weighted_distillation, teacher_logits=b["teacher"],
                                         unlabelled=target == IGNORE, temperature=temp, lambda_gs=gs)
                compare_loss(kd_row, theirs, ours, b["logits"])
        labelled = torch.full_like(target, 3)  # no unlabelled pixel
        kd = losses.KnowledgeDistillationCELossWithGradientScaling(temp=1, device=device, gs=1.0)
        theirs = functools.partial(_klingner_kd, kd, old=old, temp=1, soft=F.softmax(b["teacher"], 1), target=labelled)
        ours = functools.partial(ll_klingner.entropy_weighted_distillation, teacher_logits=b["teacher"],
                                 unlabelled=labelled == IGNORE)
        compare_loss(kd_edge, theirs, ours, b["logits"], "0/0 = NaN in the code, 0 in llseg")
        size = (b["logits"].shape[2] * 2 + 1, b["logits"].shape[3] * 3)
        nearest = F.interpolate(b["logits"], size, mode="nearest")
        up_row.add(max_diff(nearest, upsample_scores(b["logits"], size, mode="nearest")))
    return [ce_row, kd_row, kd_edge, up_row]


# ---------------------------------------------------------------------------------------------
# IDEC (YBIO/IDEC; LAG's YBIO/LAG builds on the same main.py)


def idec_statements(root: Path) -> types.CodeType:
    """The DADA block of IDEC's training loop (main.py): ``lamb = ...``, the ``if
    opts.use_KD_layer_weight:`` block and ``KD_loss_ret = ...``, compiled in that order."""
    tree = ast.parse((root / "main.py").read_text())
    picked: list[ast.stmt] = []
    for node in ast.walk(tree):
        names = {t.id for t in getattr(node, "targets", []) if isinstance(t, ast.Name)}
        initial = isinstance(getattr(node, "value", None), ast.Call | ast.Constant)  # KD_loss_ret = torch.tensor(0.)
        if isinstance(node, ast.Assign) and ("lamb" in names or "KD_loss_ret" in names and not initial):
            picked.append(node)
        if isinstance(node, ast.If) and ast.unparse(node.test) == "opts.use_KD_layer_weight" \
                and "KD_loss_ret_l1" in ast.unparse(node):
            picked.append(node)
    picked.sort(key=lambda n: n.lineno)
    if len(picked) != 3:
        raise SystemExit(f"IDEC's DADA block not found in {root / 'main.py'} ({len(picked)} statements)")
    return compile(ast.Module(body=picked, type_ignores=[]), str(root / "main.py"), "exec")


def check_idec(root: Path, seed: int) -> list[Row]:
    with upstream(root):
        loss = load(root, "utils/loss.py", "idec_loss")
    dada_code = idec_statements(root)
    upstream_fns: tuple[tuple[ll_feature_kd.KDLossType, str], ...] = (
        ("KD_loss", "utils/loss.py KnowledgeDistillationLoss(alpha=2.0)"),
        ("KLDiv_loss", "main.py torch.nn.KLDivLoss() on raw features"),
        ("L1_loss", "main.py torch.nn.L1Loss()"),
        ("L2_loss", "main.py torch.nn.BCELoss() (named L2_loss)"))
    rows = {kind: Row("IDEC", f"feature distance {kind}", fn, f"feature_kd.feature_distance('{kind}')")
            for kind, fn in upstream_fns}
    dada_w = Row("IDEC", "DADA sum, use_KD_layer_weight, λ = 0.9, e = 1..3 of 3", "main.py training loop (lamb, "
                 "KD_layer_weight, KD_loss_ret)", "feature_kd.dada_loss")
    dada_u = Row("IDEC", "DADA sum without use_KD_layer_weight", "main.py training loop", "feature_kd.dada_loss")
    criteria = {"KD_loss": loss.KnowledgeDistillationLoss(alpha=2.0), "KLDiv_loss": nn.KLDivLoss(reduction="mean"),
                "L1_loss": nn.L1Loss(), "L2_loss": nn.BCELoss()}
    gen = torch.Generator().manual_seed(seed)
    taps = {"l1": "aspp_layer1", "l2": "aspp_layer2", "l3": "aspp_layer3", "out": "aspp"}
    for shape in ((6, 6), (5, 9)):
        feats = {k: torch.relu(torch.randn(2, 8, *shape, generator=gen)) for k in taps}
        prev = {k: torch.relu(v + 0.5 * torch.randn(v.shape, generator=gen)) for k, v in feats.items()}
        for kind, row in rows.items():
            a, b = feats["out"], prev["out"]
            if kind == "L2_loss":  # BCELoss needs values in [0, 1]
                a, b = torch.sigmoid(a), torch.sigmoid(b)
            note = {"KLDiv_loss": "the code applies KLDivLoss to raw features (no softmax; not 0 for equal inputs)",
                    "L2_loss": "the code's L2_loss is BCELoss; llseg computes the mean squared error"}.get(kind)
            compare_loss(row, functools.partial(_swap, criteria[kind], b), functools.partial(
                ll_feature_kd.feature_distance, teacher=b, KD_loss_type=kind), a, note)
        for weighted, row in ((True, dada_w), (False, dada_u)):
            for epoch in (1, 2, 3):
                opts = types.SimpleNamespace(lamb=0.9 if weighted else 1.0, train_epoch=3, use_KD_layer_weight=weighted)
                scope = {"math": math, "opts": opts, "cur_epochs": epoch, "criterion_KD": criteria["KD_loss"],
                         "ret_features": {f"feature_{k}": v for k, v in feats.items()},
                         "ret_features_prev": {f"feature_{k}": v for k, v in prev.items()},
                         "KD_layer_weight": {"l1": 0.5, "l2": 1.0, "l3": 2.0, "out": 1.0},
                         "KD_loss_ret_l3": torch.tensor(0.0)}  # its initial value before the loop
                exec(dada_code, scope)
                ours = ll_feature_kd.dada_loss({taps[k]: v for k, v in feats.items()}, {taps[k]: v for k, v in prev.items()},
                                               KD_loss_type="KD_loss", use_KD_layer_weight=weighted, lamb=opts.lamb,
                                               epoch=epoch, epochs=3)
                note = None if weighted else ("the code's unweighted branch assigns the l3 term to KD_loss_ret_l2 and "
                                              "leaves KD_loss_ret_l3 at 0: l1 + l3 + out; llseg: l1 + l2 + l3 + out")
                row.add(max_diff(scope["KD_loss_ret"], ours), None, note)
    return [*rows.values(), dada_w, dada_u]


def _swap(criterion: Any, teacher: torch.Tensor, student: torch.Tensor) -> torch.Tensor:
    """IDEC calls criterion_KD(new features, old features)."""
    return criterion(student, teacher)


def _klingner_ce(criterion: Any, x: torch.Tensor, *, old: int, target: torch.Tensor) -> torch.Tensor:
    """Their CE as their trainer calls it: log-softmax over all channels, cut to the new ones."""
    return criterion(F.log_softmax(x, 1)[:, old:], target.clone())


def _klingner_kd(kd: Any, x: torch.Tensor, *, old: int, temp: int, soft: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Their distillation as their trainer calls it: log-softmax over all channels at temperature T,
    cut to the old channels; targets = softmax(teacher / T); ``targets_new`` = the step's labels."""
    return kd(F.log_softmax(x / temp, 1)[:, :old], soft, targets_new=target)


# ---------------------------------------------------------------------------------------------


def markdown(rows: Sequence[Row]) -> str:
    lines = ["| method | term | upstream file and function | llseg function | cases | max abs Δ value | "
             "max abs Δ gradient | notes |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        grad = "–" if r.grad is None else f"{r.grad:.1e}"
        lines.append(f"| {r.method} | {r.term} | {r.upstream} | `{r.llseg}` | {r.cases} | {r.value:.1e} | {grad} | "
                     f"{'; '.join(r.notes)} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=Path, help="checkout of fcdl94/MiB")
    parser.add_argument("--plop", type=Path, help="checkout of arthurdouillard/CVPR2021_PLOP")
    parser.add_argument("--ssul", type=Path, help="checkout of clovaai/SSUL")
    parser.add_argument("--klingner", type=Path, help="checkout of ifnspaml/CIL_Segmentation")
    parser.add_argument("--idec", type=Path, help="checkout of YBIO/IDEC")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    checks = [(args.mib, check_mib), (args.plop, check_plop), (args.ssul, check_ssul), (args.klingner, check_klingner),
              (args.idec, check_idec)]
    if not any(path for path, _ in checks):
        parser.error("pass at least one repository path")
    torch.set_default_dtype(torch.float64)  # only once the arguments are valid: callers keep their dtype on an error
    rows = [row for path, check in checks if path for row in check(path.resolve(), args.seed)]
    print(markdown(rows))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
