"""Where llseg's training step goes: ``ContinualLearner.learn`` on ERFNet under ``torch.profiler``, time grouped by op.

Trains ERFNet (19 classes, Adam, recipe finetune) on synthetic street scenes (generated here) for warm-up epochs,
then profiles one more epoch and prints a markdown table: each op group's share of the profiled epoch's wall
time. Every profiled op counts with its self time in the first group whose rule matches it or one of its callers
(data loading and the optimizer by caller, the rest by op name); what no op accounts for is Python and the
learner's own work. docs/performance.md holds a run's table.

Run from the repository root::

    .venv/bin/python benchmarks/profile_step.py                       # 256x512, batch 4, 8 images, fp32
    .venv/bin/python benchmarks/profile_step.py --size 64 128 --batch 8 --images 16 --precision auto
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.autograd.profiler_util import FunctionEvent
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import cpu_has_amx, cpu_model, write_dataset  # noqa: E402

from llseg.methods.config import TrainConfig  # noqa: E402
from llseg.methods.learner import ContinualLearner  # noqa: E402
from llseg.runtime import cpu_has_native_bf16  # noqa: E402

# (group, substrings of the op or caller names); the first rule matching the op or a caller wins
CALLER_RULES = (
    ("data loading and augmentation", ("enumerate(DataLoader)",)),
    ("optimizer (fused Adam, zero_grad)", ("Optimizer.",)),
    ("dropout (Dropout2d, forward and backward)", ("feature_dropout", "MulBackward0")),
    ("loss (log-softmax + NLL, forward and backward)", ("cross_entropy", "log_softmax", "nll_loss", "LogSoftmaxBackward",
                                                      "NllLoss")),
)
OP_RULES = (  # backward before forward: "aten::convolution" is also in "aten::convolution_backward"
    ("convolution backward", ("convolution_backward",)),
    ("convolution forward", ("aten::conv2d", "aten::conv_transpose2d", "aten::convolution", "mkldnn_convolution")),
    ("BatchNorm backward", ("native_batch_norm_backward",)),
    ("BatchNorm forward", ("aten::batch_norm", "native_batch_norm")),
    ("ReLU forward and backward", ("threshold_backward", "aten::relu", "clamp_min")),
    ("max-pool, concat, pad, crop (forward and backward)", ("max_pool", "aten::cat", "pad", "slice", "narrow",
                                                            "CatBackward", "SliceBackward")),
    ("residual adds, gradient accumulation", ("aten::add", "AccumulateGrad")),
    ("layout conversions and copies", ("aten::copy_", "contiguous", "aten::clone", "aten::to", "_to_copy")),
    ("allocation and zero-fill", ("aten::empty", "aten::fill_", "aten::zero", "resize_")),
)


def callers(event: FunctionEvent) -> list[str]:
    """Names of ``event`` and its callers, innermost first."""
    names = []
    node: FunctionEvent | None = event
    while node is not None:
        names.append(node.name)
        node = node.cpu_parent
    return names


def group_of(event: FunctionEvent) -> str:
    """The op group of ``event``: by caller (data, optimizer, dropout, loss), else by the outermost op
    (e.g. an allocation inside a convolution counts as convolution)."""
    names = callers(event)[::-1]
    for group, keys in CALLER_RULES:
        if any(key in name for name in names for key in keys):
            return group
    for name in names:
        for group, keys in OP_RULES:
            if any(key in name for key in keys):
                return group
    return "other ops"


def grouped_ms(events: Sequence[FunctionEvent]) -> dict[str, float]:
    """Self CPU milliseconds of the main thread's ops by group."""
    main = events[0].thread if events else 0
    totals: dict[str, float] = defaultdict(float)
    for event in events:
        if event.thread == main and not event.is_async:
            totals[group_of(event)] += event.self_cpu_time_total / 1000
    return dict(totals)


def profile_epoch(size: tuple[int, int], batch: int, images: int, precision: str, warmup: int) -> tuple[float, dict]:
    """(wall seconds of the profiled epoch, self ms by group)."""
    with tempfile.TemporaryDirectory(prefix="llseg-profile-") as tmp:
        paths, labels = write_dataset(Path(tmp), images, (2 * size[0], 2 * size[1]))
        config = TrainConfig(recipe="finetune", epochs=1, batch_size=batch, input_size=size, precision=precision,
                             num_workers=0)
        learner = ContinualLearner(config)
        for _ in range(warmup):
            learner.learn(paths, labels, labels)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            start = time.perf_counter()
            learner.learn(paths, labels, labels)
            wall = time.perf_counter() - start
    return wall, grouped_ms(prof.events())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--size", type=int, nargs=2, default=(256, 512), metavar=("H", "W"))
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--images", type=int, default=8, help="images per epoch")
    parser.add_argument("--precision", default="fp32", help="fp32, bf16 or auto")
    parser.add_argument("--warmup", type=int, default=2, help="unprofiled epochs first")
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    wall, groups = profile_epoch(tuple(args.size), args.batch, args.images, args.precision, args.warmup)
    groups["Python, learner bookkeeping (not in any op)"] = max(0.0, 1000 * wall - sum(groups.values()))
    print(f"ERFNet {args.size[0]}x{args.size[1]} batch {args.batch}, {args.images} images, precision {args.precision}; "
          f"{cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} threads, "
          f"AMX-BF16: {cpu_has_amx()}, native bf16: {cpu_has_native_bf16()}; load average {load:.1f} -> "
          f"{os.getloadavg()[0]:.1f}; profiled epoch {wall:.1f} s\n")
    print("| op group | ms per step | % of step |\n|---|---|---|")
    steps = args.images // args.batch
    for group, ms in sorted(groups.items(), key=lambda item: -item[1]):
        print(f"| {group} | {ms / steps:.0f} | {100 * ms / (1000 * wall):.1f}% |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
