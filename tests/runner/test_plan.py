"""``llseg bench --plan``: per test case and round, images × epochs, FLOPs and an estimate; nothing trains."""
from __future__ import annotations

from pathlib import Path

import pytest

from llseg.cli import main
from llseg.runner.plan import plan_job
from tests.runner.test_e2e import JOB, _tiny_repo


def test_plan_counts_every_round_and_trains_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str], one_thread: None) -> None:
    monkeypatch.chdir(tmp_path)
    _tiny_repo(tmp_path)  # 1 epoch, batch 4, 32x64 inputs; train_index: 3 chunks of 4 lines, train ratio 0.8 -> 3 train lines
    lines = Path("data/synthetic-city-cil3/train_index.txt").read_text().splitlines()
    chunk = len(lines) // 3
    train = int(chunk * 0.8)
    tests = len(Path("data/synthetic-city-cil3/test_index.txt").read_text().splitlines())
    plans = plan_job(JOB)
    assert [(p.case, p.round) for p in plans] == [(c, r) for c in ("erfnet_klingner", "erfnet_finetune", "erfnet_joint")
                                                  for r in range(4)]
    joint = [p.images for p in plans if p.case == "erfnet_joint"]
    assert joint == [2, train, 2 * train, 3 * train]  # round 0's single line is trained as two views; joint keeps all
    assert [p.images for p in plans if p.case == "erfnet_finetune"] == [2, train, train, train]
    evals = 3 * (chunk - train)
    assert [p.eval_images for p in plans[:4]] == [evals, evals + 3, evals + 3, evals + 3 + 2 * tests]
    klingner, finetune = plans[1], plans[5]
    assert finetune.train_flops > 0 and klingner.train_flops == pytest.approx(finetune.train_flops * 4 / 3)  # + teacher
    assert all(p.seconds > 0 for p in plans)

    assert main(["bench", "-f", JOB, "--plan"]) == 0
    out = capsys.readouterr().out
    assert f"| erfnet_joint | 3 | {3 * train} × 1 = {3 * train} |" in out
    assert "job total:" in out and "estimated" in out
    assert not Path("workspace").exists()  # nothing trained or written
