"""Data-parallel training on CPU with gloo: 2 processes at B/2 and 1 process with accumulate 2 equal
1 process at batch B; only rank 0 writes; a dying worker fails the run in bounded time.

The exactness tests use a small model without batch statistics or dropout (GroupNorm), registered
inside each worker: BatchNorm normalises each micro-batch with its own statistics, so a BatchNorm
model at B/2 is a different computation (on CUDA ``sync_bn`` restores it across processes, not
across accumulated micro-batches). Scenes have the same labelled-pixel count, so per-pixel means of
micro-batches weighted by their sample counts equal the global mean.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from llseg.distributed import GlobalBatchSampler
from llseg.methods.config import resolve_config
from llseg.methods.learner import ContinualLearner
from llseg.models import register_model
from tests.conftest import Rows, write_scene

# fp32 sums of gradients in another order: measured differences 3e-8 (loss) and 5e-8 (weights), docs/distributed.md
ATOL = 1e-5


class TinyNet(nn.Module):
    """conv-GroupNorm-ReLU-conv; no batch statistics, no dropout."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.GroupNorm(2, 8), nn.ReLU())
        self.logit_conv = nn.Conv2d(8, num_classes, 1)

    @property
    def num_classes(self) -> int:
        return self.logit_conv.out_channels

    def add_classes(self, num_new: int, *, init: str = "default") -> None:
        old = self.logit_conv
        new = nn.Conv2d(8, old.out_channels + num_new, 1)
        with torch.no_grad():
            new.weight[: old.out_channels] = old.weight
            new.bias[: old.out_channels] = old.bias
        self.logit_conv = new

    def classifier_parameters(self) -> Any:
        return self.logit_conv.parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logit_conv(self.body(x))


def _register_tiny() -> None:
    from llseg.models.registry import list_models

    if "test_tiny_gn" not in list_models():
        register_model("test_tiny_gn")(lambda *, num_classes, **_: TinyNet(num_classes))


HPS = dict(recipe="finetune", model="test_tiny_gn", epochs=2, batch_size=4, lr=0.05, optimizer="sgd", scale=[1.0, 1.0],
           jitter=0.0, precision="fp32", device="cpu", num_workers=0, seed=3)


def _worker(rank: int, world: int, port: int, hps: dict[str, Any], rows: list[tuple[str, str, str]], out: Path) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank), LLSEG_DIST_TIMEOUT="60")
    torch.set_num_threads(1)
    _register_tiny()
    from llseg import distributed

    die = hps.pop("die_after_learn", False)
    learner = ContinualLearner(resolve_config(hps))
    summary = learner.learn(*(list(c) for c in zip(*rows)))
    learner.save(out / f"checkpoint-rank{rank}.pt")  # only rank 0 writes
    if die and rank == 1:
        os._exit(3)
    scores = learner.evaluate([r[0] for r in rows], [r[1] for r in rows])
    state = {k: v.clone() for k, v in learner.model.state_dict().items()}  # type: ignore[union-attr]
    torch.save({"loss": summary["final_loss"], "state": state, "scores": scores}, out / f"result-rank{rank}.pt")
    if die:  # rank 0 waits for rank 1, which died: the launcher must stop it
        distributed.barrier()
    distributed.shutdown()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(world: int, hps: dict[str, Any], rows: list[tuple[str, str, str]], out: Path) -> dict[str, Any]:
    out.mkdir(parents=True)
    mp.start_processes(_worker, args=(world, _free_port(), hps, rows, out), nprocs=world, start_method="spawn")
    return torch.load(out / "result-rank0.pt", weights_only=False)


@pytest.fixture
def scenes(tmp_path: Path) -> list[tuple[str, str, str]]:
    folder = tmp_path / "scenes"
    folder.mkdir()
    return [write_scene(folder, f"s{i}", [0, 1, 2], (16, 24), {0, 1, 2}, seed=i) for i in range(8)]


def test_global_batch_sampler_splits_the_single_process_order() -> None:
    """Micro-batches of every rank, in rank order, are the batches one process draws at batch B, epoch
    after epoch (two epochs of the same loaders)."""
    single_loader = torch.utils.data.DataLoader(range(10), batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(5))
    single = [[b.tolist() for b in single_loader] for _ in range(2)]
    assert single[0] != single[1]
    for world, accumulate in ((2, 1), (1, 2), (2, 2)):
        loaders = []
        for r in range(world):
            gen = torch.Generator().manual_seed(5)
            sampler = GlobalBatchSampler(10, 4, gen, accumulate=accumulate, rank=r, world=world)
            loaders.append(torch.utils.data.DataLoader(range(10), batch_sampler=sampler, generator=gen))
        for epoch in range(2):
            parts = [[b.tolist() for b in loader] for loader in loaders]
            steps = [sum((parts[r][s * accumulate + a] for r in range(world) for a in range(accumulate)), [])
                     for s in range(len(parts[0]) // accumulate)]
            # the last 2-sample batch is split in two, but not in four (dropped, as a 1-sample batch is)
            assert steps == single[epoch][: 3 if world * accumulate == 2 else 2]


def test_two_processes_and_accumulation_equal_one_process(scenes: list[tuple[str, str, str]], tmp_path: Path) -> None:
    one = _run(1, HPS, scenes, tmp_path / "one")
    two = _run(2, HPS, scenes, tmp_path / "two")
    acc = _run(1, {**HPS, "accumulate": 2}, scenes, tmp_path / "acc")
    assert one["loss"] > 0
    for other in (two, acc):
        assert other["loss"] == pytest.approx(one["loss"], abs=ATOL)
        for key, value in one["state"].items():
            torch.testing.assert_close(other["state"][key], value, atol=ATOL, rtol=0)
    # the two ranks end with identical weights; the evaluation is summed over both ranks' images
    rank1 = torch.load(tmp_path / "two" / "result-rank1.pt", weights_only=False)
    for key, value in two["state"].items():
        assert torch.equal(rank1["state"][key], value)
    assert two["scores"] == rank1["scores"]
    assert two["scores"]["accuracy"] == pytest.approx(one["scores"]["accuracy"], abs=1e-4)
    # only rank 0 wrote its checkpoint
    assert (tmp_path / "two" / "checkpoint-rank0.pt").is_file()
    assert not (tmp_path / "two" / "checkpoint-rank1.pt").exists()


def test_a_dying_worker_fails_the_run_without_hanging(scenes: list[tuple[str, str, str]], tmp_path: Path) -> None:
    start = time.perf_counter()
    with pytest.raises(mp.ProcessExitedException, match="process 1 terminated with exit code 3"):
        _run(2, {**HPS, "epochs": 1, "die_after_learn": True}, scenes, tmp_path / "die")
    assert time.perf_counter() - start < 60


def test_devices_hyperparameter_trains_on_two_workers(make_rows: Callable[..., Rows], tmp_path: Path) -> None:
    """The estimator with devices: 2 returns the same weights as 2 torchrun-style ranks would: rank 0's,
    equal to one process at the same global batch (ERFNet in eval-free fp32, dropout off)."""
    from llseg.ianvs.estimator import ERFNetEstimator

    data = make_rows("d", 4, [0, 1], {0, 1}, size=(16, 32))
    hps = dict(epochs=1, batch_size=4, precision="fp32", device="cpu", scale=[1.0, 1.0], jitter=0.0, num_workers=0)
    parallel = ERFNetEstimator(**hps, devices=2)
    summary = parallel.train(data)
    assert summary["stage"] == 1 and parallel.learner.stages == 1
    assert parallel.learner.classes == [0, 1]
    weights = parallel.get_weights()
    assert all(np.isfinite(v).all() for v in weights.values())
    # a second stage starts from the returned state in fresh workers
    parallel.train(make_rows("e", 4, [0, 2], {2}, size=(16, 32)))
    assert parallel.learner.classes == [0, 1, 2] and parallel.learner.stages == 2


def test_torchrun_runs_llseg_train(tmp_path: Path) -> None:
    """The README's command: torchrun --standalone --nproc_per_node 2 -m llseg train ... on gloo."""
    from llseg.data.cityscapes.synthetic import generate_city_dataset
    from llseg.data.prepare import prepare

    root = tmp_path / "city"
    generate_city_dataset(root, images_per_city=2, size=(32, 64), seed=0)
    prepare("cityscapes", root=root, split="cil-3", out=tmp_path / "prepared")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LLSEG_DIST_TIMEOUT": "120"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "llseg", "train",
           "--prepared", str(tmp_path / "prepared"), "--recipe", "finetune", "--out", str(tmp_path / "out"),
           "--set", "epochs=1", "--set", "device=cpu", "--set", "batch_size=2", "--set", "precision=fp32"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["results.json", "results.md", "stage1.pt", "stage2.pt",
                                                                   "stage3.pt"]
    assert done.stdout.count("checkpoints and results in") == 1  # rank 0 alone reports
    assert "rank 1 of 2 joined (gloo" not in done.stderr  # rank 1 logs warnings only
    assert "rank 0 of 2 joined (gloo, cpu)" in done.stderr


def test_devices_worker_error_is_reported_with_its_rank(make_rows: Callable[..., Rows], tmp_path: Path) -> None:
    from llseg.ianvs.estimator import ERFNetEstimator

    data = make_rows("bad", 4, [0, 1], {0, 1}, size=(16, 32))
    Path(data.x[0][0]).write_bytes(b"not an image")  # every worker reads it in its first epoch
    estimator = ERFNetEstimator(epochs=1, batch_size=4, precision="fp32", device="cpu", devices=2)
    with pytest.raises(RuntimeError, match=r"devices: 2: worker [01] failed \(llseg\.errors\.DataError: .*bad0\.png"):
        estimator.train(data)
    assert estimator.learner.model is None  # nothing half-trained was kept


def test_two_node_rehearsal_equals_one_process(tmp_path: Path) -> None:
    """Two torchrun launchers (--nnodes 2, one process each, c10d rendezvous on 127.0.0.1) run llseg
    train (with the GroupNorm model registered: tests/methods/tiny_llseg.py) on a prepared set; node 1
    writes nothing, and every stage's checkpoint and score equal one process at the same global batch
    and micro-batches (accumulate 2). Against one process at batch B without accumulation the weights
    differ by up to 2e-2: the synthetic labels ignore a different number of pixels per image, and a
    global batch's loss is the per-pixel mean while micro-batches are weighted by their sample counts."""
    from llseg.data.cityscapes.synthetic import generate_city_dataset
    from llseg.data.prepare import prepare
    from llseg.methods.stages import train_stages

    generate_city_dataset(tmp_path / "city", images_per_city=2, size=(32, 64), seed=0)
    prepared = tmp_path / "prepared"
    prepare("cityscapes", root=tmp_path / "city", split="cil-3", out=prepared)
    settings = {**HPS, "batch_size": 4}
    sets = [arg for k, v in settings.items() if k not in ("recipe", "model") for arg in ("--set", f"{k}={v}")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LLSEG_DIST_TIMEOUT": "120",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH", "")])}
    port = _free_port()
    nodes = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
                               "--node_rank", str(r), "--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{port}",
                               "--rdzv_id", "rehearsal", "-m", "tests.methods.tiny_llseg", "train", "--prepared", str(prepared),
                               "--recipe", "finetune", "--model", "test_tiny_gn", "--out", str(tmp_path / f"node{r}"), *sets],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in (0, 1)]
    outputs = [node.communicate(timeout=300) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs[0][1][-3000:] + outputs[1][1][-3000:]
    assert "rank 0 of 2 joined (gloo, cpu)" in outputs[0][1]
    assert sorted(p.name for p in (tmp_path / "node0").iterdir()) == ["results.json", "results.md", "stage1.pt", "stage2.pt",
                                                                    "stage3.pt"]
    assert not any((tmp_path / "node1").iterdir())  # rank 1 wrote nothing
    torch.set_num_threads(1)
    _register_tiny()
    one = train_stages(prepared, tmp_path / "one", {**settings, "accumulate": 2})
    two = json.loads((tmp_path / "node0" / "results.json").read_text())["scores"]
    for stage, scores in one.items():
        assert two[stage] == pytest.approx(scores, abs=1e-6)
    for k in (1, 2, 3):
        ours = torch.load(tmp_path / "node0" / f"stage{k}.pt", weights_only=False)["state_dict"]
        for key, value in torch.load(tmp_path / "one" / f"stage{k}.pt", weights_only=False)["state_dict"].items():
            torch.testing.assert_close(ours[key], value, atol=ATOL, rtol=0)


DEEPLAB = dict(recipe="finetune", model="deeplabv3_mobilenet_v3_large", epochs=1, scale=[1.0, 1.0], jitter=0.0,
               precision="fp32", device="cpu", num_workers=0, seed=3)


def test_pooled_batchnorm_is_found_in_deeplabv3_only() -> None:
    from llseg.methods.engine import pooled_batchnorm
    from llseg.models import create_model

    assert pooled_batchnorm(create_model("deeplabv3_mobilenet_v3_large", num_classes=3))  # ASPP image pooling
    assert not pooled_batchnorm(create_model("erfnet", num_classes=3))
    assert not pooled_batchnorm(TinyNet(3))


def test_deeplabv3_on_two_cpu_ranks_with_one_sample_each_is_a_config_error(scenes: list[tuple[str, str, str]],
                                                                          tmp_path: Path) -> None:
    """Without sync_bn, batch_size 2 on 2 ranks gives each rank 1 sample, on which the ASPP image
    pooling's BatchNorm cannot train: a ConfigError naming the keys and the fix, before any step."""
    with pytest.raises(mp.ProcessRaisedException, match=(
            r"ConfigError: batch_size 2 \(on 8 images\) split into 2 process\(es\) × accumulate 1 gives micro-batches "
            r"of fewer than 2 samples.*set batch_size >= 4, lower accumulate or the number of processes, or set sync_bn")):
        _run(2, {**DEEPLAB, "batch_size": 2}, scenes, tmp_path / "two")
    assert not list((tmp_path / "two").iterdir())  # nothing trained, nothing written


def test_deeplabv3_micro_batches_keep_two_samples(scenes: list[tuple[str, str, str]], one_thread: None) -> None:
    """One process with accumulate 2 splits steps as 2 ranks do: batch_size 2 is refused up front
    (so is batch_size 1 without accumulation); at batch_size 4 on 6 images the last global batch
    of 2 is dropped instead of split into 1-sample micro-batches, and the stage trains."""
    from llseg.errors import ConfigError

    rows = [list(c) for c in zip(*scenes[:6])]
    for settings, message in (({"batch_size": 2, "accumulate": 2}, r"batch_size 2 \(on 6 images\) split into 1 process"),
                              ({"batch_size": 1}, r"batch_size 1 \(on 6 images\).*set batch_size >= 2")):
        learner = ContinualLearner(resolve_config({**DEEPLAB, **settings}))
        with pytest.raises(ConfigError, match=message):
            learner.learn(*rows)
    learner = ContinualLearner(resolve_config({**DEEPLAB, "batch_size": 4, "accumulate": 2}))
    assert np.isfinite(learner.learn(*rows)["final_loss"])
    assert GlobalBatchSampler(6, 4, torch.Generator(), accumulate=2, min_part=2).global_sizes() == [4]
    assert GlobalBatchSampler(6, 4, torch.Generator(), accumulate=2).global_sizes() == [4, 2]
