import os
import platform
import subprocess
import sys

import pytest
import torch

from llseg import runtime


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_precision_on_cpu_uses_bf16_only_when_native(monkeypatch, native, expected):
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: native)
    assert runtime.resolve_precision("auto", torch.device("cpu")) == expected


def test_auto_precision_on_cuda_is_fp16():
    assert runtime.resolve_precision("auto", torch.device("cuda")) == "fp16"


def test_explicit_precisions_and_errors():
    assert runtime.resolve_precision("fp32", torch.device("cpu")) == "fp32"
    with pytest.raises(ValueError, match="fp16 needs CUDA"):
        runtime.resolve_precision("fp16", torch.device("cpu"))
    with pytest.raises(ValueError, match="precision must be one of"):
        runtime.resolve_precision("half", torch.device("cpu"))


def test_device_choice(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert runtime.pick_device(None) == torch.device("cpu")
    assert runtime.pick_device("auto") == torch.device("cpu")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        runtime.pick_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert runtime.pick_device("auto") == torch.device("cuda")


def test_auto_num_workers_none_on_cpu_and_cores_minus_one_up_to_4_with_cuda(monkeypatch):
    assert runtime.resolve_num_workers("auto", torch.device("cpu")) == 0
    assert runtime.resolve_num_workers(3, torch.device("cpu")) == 3
    for cores, expected in ((1, 0), (2, 1), (5, 4), (64, 4)):
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid, n=cores: set(range(n)), raising=False)
        assert runtime.resolve_num_workers("auto", torch.device("cuda")) == expected
    assert runtime.resolve_num_workers(0, torch.device("cuda")) == 0


def test_autocast_is_a_no_op_for_fp32():
    with runtime.autocast("fp32", torch.device("cpu")):
        assert not torch.is_autocast_enabled("cpu")
    with runtime.autocast("bf16", torch.device("cpu")):
        assert torch.is_autocast_enabled("cpu")


def test_keep_freed_memory_is_switched_off_by_the_environment_or_off_glibc(monkeypatch):
    runtime.keep_freed_memory.cache_clear()
    monkeypatch.setenv("LLSEG_KEEP_FREED_MEMORY", "0")
    assert runtime.keep_freed_memory() is False
    runtime.keep_freed_memory.cache_clear()
    monkeypatch.delenv("LLSEG_KEEP_FREED_MEMORY")
    monkeypatch.setattr(platform, "libc_ver", lambda: ("musl", ""))
    assert runtime.keep_freed_memory() is False
    runtime.keep_freed_memory.cache_clear()


_STEPS = """
import resource, torch
from llseg import runtime
from llseg.methods.losses import labelled_cross_entropy
from llseg.models import create_model
print(runtime.keep_freed_memory())
torch.manual_seed(0)
model = create_model("erfnet", num_classes=4).to(memory_format=torch.channels_last)
x, y = torch.randn(2, 3, 128, 256).contiguous(memory_format=torch.channels_last), torch.randint(0, 4, (2, 128, 256))
for _ in range(6):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    labelled_cross_entropy(model(x), y).backward()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt exists only in glibc")
def test_keep_freed_memory_lets_training_steps_reuse_their_buffers():
    """Steps 3..6 of a training loop page-fault (map fresh memory) far less once freed memory is kept.

    Typically ~0-1k faults per step kept, ~10-13k with glibc's defaults; glibc's adaptive mmap
    threshold sometimes spares one default step (0 faults), hence four steps and a factor 4."""
    def run(keep: str) -> tuple[bool, list[int]]:
        out = subprocess.run([sys.executable, "-c", _STEPS], env={**os.environ, "LLSEG_KEEP_FREED_MEMORY": keep},
                             capture_output=True, text=True, check=True).stdout.split()
        return out[0] == "True", [int(n) for n in out[1:]]

    (kept, with_faults), (off, without_faults) = run("1"), run("0")
    assert kept and not off
    assert sum(with_faults[2:]) < 0.25 * sum(without_faults[2:]), (with_faults, without_faults)


def test_llseg_logs_reach_stderr_under_a_host_that_configures_only_its_own_loggers():
    """As under ianvs -f: Ianvs' logger has a handler and does not propagate, root has none; importing
    llseg's estimators makes llseg's INFO lines visible and leaves the host's logger alone."""
    code = (
        "import logging\n"
        "host = logging.getLogger('ianvs'); host.addHandler(logging.StreamHandler()); host.propagate = False\n"
        "import llseg.ianvs.estimator\n"
        "logging.getLogger('llseg.runner').info('round 1 done')\n"
        "logging.getLogger('llseg.runner').debug('hidden')\n"
        "assert len(host.handlers) == 1 and host.level == logging.NOTSET\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "INFO llseg.runner: round 1 done" in done.stderr and "hidden" not in done.stderr


def test_ensure_log_handler_adds_nothing_when_the_root_logger_has_a_handler():
    code = (
        "import logging; logging.basicConfig(level=logging.INFO)\n"
        "from llseg.runtime import ensure_log_handler; ensure_log_handler()\n"
        "assert not logging.getLogger('llseg').handlers\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_progress_lines_have_counts_rate_and_eta(monkeypatch, caplog):
    monkeypatch.setenv(runtime.PROGRESS_ENV, "0")
    caplog.set_level("INFO", logger="llseg.progress")
    progress = runtime.Progress("predict", 3, "image")
    for _ in range(3):
        progress.update()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3 and lines[-1].startswith("predict: 3/3 images, ") and lines[-1].endswith("images/s, ETA 0s")
    assert runtime.format_seconds(3725) == "1h02m" and runtime.format_seconds(185) == "3m05s"
