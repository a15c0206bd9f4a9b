"""The FLOP count that benchmarks/speed.py compares to the machine's matmul limit, and how
benchmarks/accuracy.py pairs and merges its precision runs."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode


def _load(name: str):
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


speed, accuracy = _load("speed"), _load("accuracy")


def _flops(fn) -> int:
    custom = {torch.ops.aten.convolution_backward: speed.conv_backward_flops}
    with FlopCounterMode(display=False, custom_mapping=custom) as counter:
        fn()
    return counter.get_total_flops()


@pytest.mark.parametrize("groups", [1, 4, 32])
@pytest.mark.parametrize("transposed", [False, True])
def test_a_conv_backward_costs_twice_its_forward(groups: int, transposed: bool) -> None:
    kind = torch.nn.ConvTranspose2d if transposed else torch.nn.Conv2d
    conv = kind(32, 64, 3, stride=2, padding=1, groups=groups, bias=False)
    x = torch.randn(2, 32, 16, 16, requires_grad=True)
    forward = _flops(lambda: conv(x))
    # hand count: every output (input, for a transposed conv) position does 32/groups * 9 MACs per output channel
    positions = 2 * 64 * (16 * 16 if transposed else 8 * 8)
    assert forward == 2 * positions * 32 // groups * 9
    assert _flops(lambda: conv(x).sum().backward()) == 3 * forward
    # without an input gradient only the weight gradient is computed
    x.requires_grad_(False)
    assert _flops(lambda: conv(x).sum().backward()) == 2 * forward


@pytest.mark.parametrize("name", ["erfnet", "deeplabv3_mobilenet_v3_large"])
def test_training_flops_are_three_forwards(name: str) -> None:
    """Counted on the meta device. MobileNetV3's depthwise convolutions (groups = channels) used to
    count their weight gradient groups times."""
    size = (64, 64)
    kwargs = {} if name == "erfnet" else speed.DEEPLAB_KWARGS
    train = speed.train_flops_per_image(size, name, speed.VOC_CLASSES, **kwargs)
    with torch.device("meta"):
        model = speed.create_model(name, num_classes=speed.VOC_CLASSES, **kwargs).train()
        x = torch.randn(2, 3, *size)
    forward = _flops(lambda: model(x)) / 2
    # forward + input and weight gradients of every layer, less the first conv's input gradient
    assert 2.9 * forward < train < 3 * forward


def _runs(values: dict[int, float]) -> list[dict]:
    return [{"seed": seed, "scores": {"mIoU_all": v}, "seconds": 60.0} for seed, v in values.items()]


def test_precision_differences_pair_runs_by_seed_not_by_position() -> None:
    base = _runs({1: 0.10, 2: 0.20, 3: 0.30})
    other = _runs({3: 0.33, 1: 0.11, 9: 0.99})  # seed 9 has no fp32 run; seed 2 no variant run
    lines = accuracy.paired_table(base, other, ["mIoU_all"], "variant − fp32", "test")
    assert "(2 seeds;" in lines[1]
    assert lines[-1] == "| +2.00 ± 1.00 |"  # differences 1 and 3 points: mean 2, standard error sqrt(2) / sqrt(2)
    assert accuracy.paired_table(base, _runs({1: 0.2}), ["mIoU_all"], "x", "y") == []  # one pair has no error bar


def test_precision_append_refuses_a_record_made_with_other_settings(tmp_path: Path) -> None:
    record = tmp_path / "p.json"
    record.write_text(json.dumps({"hyperparameters": {"epochs": 4, "lr": 0.001}, "auto": "bf16", "seeds": [1],
                                  "results": {}}))
    assert accuracy.precision_record(record, {"epochs": 4, "lr": 0.001}, "bf16")["seeds"] == [1]
    with pytest.raises(SystemExit, match="other settings \\(epochs\\)"):
        accuracy.precision_record(record, {"epochs": 5, "lr": 0.001}, "bf16")
    with pytest.raises(SystemExit, match="auto precision"):
        accuracy.precision_record(record, {"epochs": 4, "lr": 0.001}, "fp32")
    with pytest.raises(SystemExit, match="run without --append first"):
        accuracy.precision_record(tmp_path / "none.json", {}, "bf16")


def test_parity_helpers_without_the_authors_code(tmp_path: Path) -> None:
    """benchmarks/parity.py needs the authors' checkouts for its rows; its own pieces are checked here:
    NaN-aware differences, the loader refusing a wrong path, the generated edge cases and the table."""
    parity = _load("parity")
    assert parity.max_diff(torch.tensor([1.0, float("nan")]), torch.tensor([1.5, float("nan")])) == 0.5
    assert torch.isnan(torch.tensor(parity.max_diff(torch.tensor([1.0]), torch.tensor([float("nan")]))))
    with pytest.raises(SystemExit, match="not found"):
        with parity.upstream(tmp_path):
            parity.load(tmp_path, "utils/loss.py", "missing")
    assert str(tmp_path) not in sys.path
    batches = list(parity.cases(0))
    assert [(old, new) for _, old, new, _ in batches] == [(o, n) for o, n in parity.SPLITS for _ in parity.SHAPES]
    for _, old, new, b in batches:
        target = b["target"]
        assert not ((target[1] == 0).any())  # an image without background
        assert (target == 255).any() and target[target != 255].max() < old + new
        if new > 1:
            assert not (target == old).any()  # an empty new class
    row = parity.Row("M", "term", "up.py f", "llseg.f")
    row.add(1e-7, 2e-9)
    row.add(float("nan"), None, "why")
    table = parity.markdown([row])
    assert "| M | term | up.py f | `llseg.f` | 2 | nan | 2.0e-09 | why |" in table
    with pytest.raises(SystemExit):
        parity.main([])
    assert torch.get_default_dtype() == torch.float32  # a refused call leaves the caller's dtype alone


def test_peer_ratio_is_the_median_of_the_interleaved_rounds_ratios() -> None:
    """A load spike that slows one round's trials alike must not move the ratio: the median of the
    per-round ratios (2.0, 2.0, 1.0 -> 2.0), not the ratio of medians taken from different rounds
    (2.0 / 1.5 = 1.33)."""
    config = speed.TrainingConfig("erfnet", "", (512, 1024), (256, 512), 4, 8, 1)
    rounds = [speed.Round(peer=p, llseg=q, peer_infer=p, llseg_infer=2 * q, loads=(load, load + 1))
              for p, q, load in ((3.0, 6.0, 1.0), (1.0, 2.0, 7.0), (1.5, 1.5, 2.0))]
    m = speed.Measurement(config=config, flops=1e9, reference=1.0, reference_data_share=0.0, rounds=rounds, runs={},
                          auto="fp32", workers1=None, not_kept=None, reference_infer=1.0, decode_ms=1.0)
    assert (m.peer, m.best, m.fp32) == (1.5, 2.0, 2.0)
    assert m.ratio == 2.0 and m.infer_ratio == 4.0
    lines = speed.peer_lines([m], "fp32")
    assert lines[0].startswith("- ERFNet 256x512 training vs plain fp32 channels_last loop: **2.00x** ")
    assert "rounds 2.00, 2.00, 1.00; load 1.0-8.0;" in lines[0]
    assert lines[1].startswith("- ERFNet 256x512 inference vs plain fp32 channels_last loop: **4.00x** ")
    # the training table states the same ratio (the ratio of the medians would read 1.33x)
    assert speed.training_rows([m], deeplab=False) == ["| 256x512 batch 4 | 1.00 | 1.50 | 2.00 (2.00x) | 2.00 (2.00x) | 2.00x |"]


def test_profile_groups_ops_by_caller_then_outermost_op() -> None:
    """benchmarks/profile_step.py: a conv-BN-ReLU-dropout step and a fused Adam step land in their groups
    (backward ops by their own name, an allocation inside a convolution as convolution)."""
    from torch import nn
    from torch.profiler import ProfilerActivity, profile

    profile_step = _load("profile_step")
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout2d(0.5))
    optimizer = torch.optim.Adam(model.parameters(), fused=True)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        model(torch.randn(2, 3, 8, 8)).sum().backward()
        optimizer.step()
    groups = profile_step.grouped_ms(prof.events())
    for group in ("convolution forward", "convolution backward", "BatchNorm forward", "BatchNorm backward",
                  "ReLU forward and backward", "dropout (Dropout2d, forward and backward)",
                  "optimizer (fused Adam, zero_grad)"):
        assert groups.get(group, 0) > 0, (group, groups)
    inside_conv = [e for e in prof.events() if "aten::conv2d" in profile_step.callers(e)]
    assert len(inside_conv) > 1 and {profile_step.group_of(e) for e in inside_conv} == {"convolution forward"}
