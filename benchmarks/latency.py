"""CPU inference latency per image of the edge models: PyTorch (fp32) against ONNX Runtime.

For ERFNet and DeepLabV3-MobileNetV3-Large with Cityscapes' 19 classes, a checkpoint is made (one
short stage on two synthetic images: weights do not change the latency), exported with
``llseg export --format onnx`` and timed at the deploy resolutions: the median over ``--reps``
single-image forwards (after ``--warmup`` ones) of the exported graph (normalisation, network,
class scores) in PyTorch (:class:`llseg.export.TorchModel`) and in ONNX Runtime
(:class:`llseg.export.OnnxModel`), both with the same number of intra-op threads, plus the
end-to-end time of :func:`llseg.export.predict_image` (PNG decode, resize, forward, upsampling,
argmax). The share of pixels whose masks agree between the two runtimes is reported too.

Run from the repository root (needs the extra ``llseg[onnx]``)::

    .venv/bin/python benchmarks/latency.py                    # writes benchmarks/LATENCY.md
    .venv/bin/python benchmarks/latency.py --smoke --out /tmp/latency.md   # tiny sizes: checks the code paths only
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from llseg.export import OnnxModel, TorchModel, export_checkpoint, predict_image, to_batch
from llseg.methods.config import TrainConfig
from llseg.methods.learner import ContinualLearner

MODELS = ("erfnet", "deeplabv3_mobilenet_v3_large")
SIZES = ((512, 1024), (256, 512))


def make_checkpoint(model: str, folder: Path) -> Path:
    """A 19-class Cityscapes checkpoint of ``model`` after one tiny stage (two 32×64 band images)."""
    rng = np.random.default_rng(0)
    images, labels = [], []
    for i in range(2):
        label = np.repeat(np.arange(19, dtype=np.uint8), 2)[None].repeat(32, 0)[:, :38]
        label = np.pad(label, ((0, 0), (0, 64 - label.shape[1])), mode="edge")
        rgb = rng.integers(0, 256, (32, 64, 3), dtype=np.uint8)
        images.append(folder / f"img{i}.png")
        labels.append(folder / f"lab{i}.png")
        Image.fromarray(rgb).save(images[-1])
        Image.fromarray(label).save(labels[-1])
    hps = {"model": model, "recipe": "finetune", "dataset": "cityscapes", "epochs": 1, "batch_size": 2,
           "device": "cpu", "precision": "fp32", "seed": 0, "lr": 1e-4}
    learner = ContinualLearner(TrainConfig.from_hyperparameters(hps))
    learner.learn([str(p) for p in images], [str(p) for p in labels], [str(p) for p in labels])
    path = folder / f"{model}.pt"
    learner.save(path)
    return path


def median_ms(fn: Callable[[], object], warmup: int, reps: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def measure(model: str, size: tuple[int, int], folder: Path, warmup: int, reps: int) -> dict[str, object]:
    checkpoint = folder / f"{model}.pt"
    if not checkpoint.exists():
        checkpoint = make_checkpoint(model, folder)
    onnx_path = export_checkpoint(checkpoint, folder / f"{model}-{size[0]}x{size[1]}.onnx", "onnx", size)
    torch_model = TorchModel(ContinualLearner.from_checkpoint(checkpoint, device="cpu"), size)
    onnx_model = OnnxModel(onnx_path, threads=torch.get_num_threads())
    image = folder / f"frame-{size[0]}x{size[1]}.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (*size, 3), dtype=np.uint8)).save(image)
    batch = to_batch(np.asarray(Image.open(image)), size)
    row: dict[str, object] = {"model": model, "size": f"{size[0]}x{size[1]}"}
    row["torch_ms"] = median_ms(lambda: torch_model.scores(batch), warmup, reps)
    row["onnx_ms"] = median_ms(lambda: onnx_model.scores(batch), warmup, reps)
    row["torch_e2e_ms"] = median_ms(lambda: predict_image(torch_model, image), 1, max(1, reps // 2))
    row["onnx_e2e_ms"] = median_ms(lambda: predict_image(onnx_model, image), 1, max(1, reps // 2))
    row["agree"] = float(np.mean(predict_image(torch_model, image)[0] == predict_image(onnx_model, image)[0]))
    row["onnx_mb"] = onnx_path.stat().st_size / 2**20
    return row


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "unknown")


def write_table(rows: list[dict[str, object]], out: Path, reps: int) -> None:
    import onnxruntime

    lines = [
        "# CPU inference latency per image: PyTorch vs ONNX Runtime",
        "",
        f"Written by `benchmarks/latency.py` on {dt.date.today()}: CPU {cpu_model()}, "
        f"{torch.get_num_threads()} intra-op thread(s) for both runtimes, torch {torch.__version__}, "
        f"onnxruntime {onnxruntime.__version__}, fp32, batch 1, median of {reps} runs after warm-up.",
        f"**Caveat:** 1-minute load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores at the end of the run: "
        "on a shared, loaded machine absolute numbers vary by tens of percent between runs (an end-to-end time below "
        "its forward time is such noise); rerun on a quiet machine or the edge device.",
        "",
        "`forward`: the exported graph (normalisation, network, class scores) on one image already at the deploy "
        "resolution; `end to end`: `predict_image` (PNG decode, resize, forward, bilinear upsampling, argmax). "
        "`masks agree`: share of pixels with the same class in both runtimes (random weights and a noise image, "
        "so near-ties are frequent; the parity test on trained models requires identical masks). PyTorch runs the graph "
        "eagerly in fp32 NCHW; `llseg predict` / the estimators add channels-last and, on CPUs with native bf16, bf16 autocast.",
        "",
        "| model | deploy size | PyTorch forward ms | ONNX Runtime forward ms | speed-up | PyTorch end to end ms "
        "| ONNX Runtime end to end ms | masks agree | ONNX file MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['size']} | {r['torch_ms']:.0f} | {r['onnx_ms']:.0f} | "
            f"{float(r['torch_ms']) / float(r['onnx_ms']):.2f}x | {r['torch_e2e_ms']:.0f} | {r['onnx_e2e_ms']:.0f} | "
            f"{float(r['agree']):.2%} | {r['onnx_mb']:.1f} |"
        )
    out.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("LATENCY.md"))
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1,
                        help="intra-op threads of both runtimes (default 1: on a shared machine, spinning OpenMP threads "
                             "of PyTorch slow down by up to 10x when another job takes a core)")
    parser.add_argument("--smoke", action="store_true", help="32x64 inputs, 1 repetition: checks the code paths only")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    sizes = ((32, 64),) if args.smoke else SIZES
    reps, warmup = (1, 0) if args.smoke else (args.reps, args.warmup)
    rows = []
    with tempfile.TemporaryDirectory(prefix="llseg-latency-") as tmp:
        for model in MODELS:
            for size in sizes:
                rows.append(measure(model, size, Path(tmp), warmup, reps))
                print(rows[-1], flush=True)
    write_table(rows, args.out, reps)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
