"""PLOP ``mode: released`` vs ``mode: corrected`` (docs/methods.md §6.2) trained on the same tiny synthetic VOC split.

Generates synthetic objects (``llseg synth --kind objects``), prepares them as ``--split`` (default VOC 15-5) and
trains ``plop`` with DeepLabV3-ResNet-50 (``mode: released`` needs a ResNet: POD reads its stages before the last
ReLU) once per mode with the same seed, each task on the train part of its chunk as under Ianvs; prints and
optionally writes old / new / all mIoU on the test index after the last step. Step 0 has no teacher, so both modes
train the same step-0 model; they differ from step 1 on (entropy scale, median thresholds, adaptive factor, POD
inputs and regions). A CPU run of the defaults takes a few minutes::

    PYTHONPATH=. python benchmarks/plop_modes.py --work /tmp/plop_modes
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from llseg.data.prepare import prepare
from llseg.data.voc.synthetic import generate_objects_dataset
from llseg.methods.stages import train_stages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="folder for the generated data and the runs (emptied runs)")
    parser.add_argument("--split", default="voc-15-5")
    parser.add_argument("--images", type=int, default=48, help="train images of the generated dataset")
    parser.add_argument("--size", type=int, default=64, help="square image and crop side (64: 4x4 maps at stride 16)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--json", type=Path, default=None, help="also write the scores here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    generate_objects_dataset(args.work / "objects", seed=args.seed, size=(args.size, args.size), images=args.images,
                             class_tint=0.7)
    prepared = args.work / f"prepared-{args.split}"
    if not (prepared / "manifest.json").is_file():
        prepare("voc", root=args.work / "objects", split=args.split, out=prepared, seed=args.seed)
    scores: dict[str, dict[str, float | None]] = {}
    for mode in ("released", "corrected"):
        out = args.work / f"plop-{mode}"
        if out.exists():
            for path in sorted(out.iterdir()):
                path.unlink()
        # from-scratch CPU settings as benchmarks/accuracy.py (BN momentum 0.1, lr 0.05 then 0.005)
        hps = dict(recipe="plop", model="deeplabv3_resnet50", model_kwargs={"output_stride": 16, "bn_momentum": 0.1},
                   epochs=args.epochs, batch_size=4, crop_size=f"{args.size}x{args.size}", scale=[1.0, 1.0], jitter=0.0,
                   optimizer="sgd", lr=0.05, backbone_lr=0.05, lr_incremental=0.005, seed=args.seed, mode=mode,
                   num_workers=0, checkpoint_every=0)
        start = time.perf_counter()
        results = train_stages(prepared, out, hps)
        last = results[list(results)[-1]]
        scores[mode] = {k: last.get(k) for k in ("mIoU_old", "mIoU_new", "mIoU_all")}
        scores[mode]["seconds"] = round(time.perf_counter() - start, 1)
        print(mode, json.dumps(scores[mode]), flush=True)
    print("\n| mode | old | new | all | seconds |\n|---|---|---|---|---|")
    for mode, row in scores.items():
        cells = ["–" if row[k] is None else f"{100 * row[k]:.1f}" for k in ("mIoU_old", "mIoU_new", "mIoU_all")]
        print(f"| {mode} | " + " | ".join(cells) + f" | {row['seconds']} |")
    if args.json is not None:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "scores": scores}, indent=1) + "\n")


if __name__ == "__main__":
    main()
