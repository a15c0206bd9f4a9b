"""``llseg train --resume`` after SIGTERM and SIGKILL mid-stage: the same checkpoints and scores as an
uninterrupted run (CPU, fp32), a one-line hint with exit code 143, refusal of a changed config."""
from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import torch

from llseg.data.cityscapes.synthetic import generate_city_dataset
from llseg.data.prepare import prepare
from tests.interrupt import exists, llseg, stop_when

SETTINGS = ["--set", "epochs=4", "--set", "batch_size=2", "--set", "device=cpu", "--set", "precision=fp32",
            "--set", "input_size=32x64"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("train-resume")
    generate_city_dataset(root / "city", seed=0, size=(32, 64), images_per_city=2)
    prepare("cityscapes", root=root / "city", split="cil-3", out=root / "prep")
    return root / "prep"


def _train(prepared: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--prepared", str(prepared), "--recipe", "klingner", "--out", str(out), *SETTINGS, *extra]


def test_killed_training_resumes_to_identical_results(prepared: Path, tmp_path: Path) -> None:
    reference = tmp_path / "straight"
    assert llseg(_train(prepared, reference), tmp_path).returncode == 0

    out = tmp_path / "interrupted"
    code, err = stop_when(_train(prepared, out), tmp_path, exists(out / "stage1.resume.pt"), signal.SIGTERM)
    assert code == 143
    assert "stopped by SIGTERM; finished stages and the last saved epoch are kept; continue with: llseg train " in err
    assert err.rstrip().endswith("--resume") and "Traceback" not in err
    assert not (out / "results.json").exists()
    # SIGKILL in stage 2, then while stage 3 saves epochs (possibly mid-write): no cleanup runs at all
    for point in ("stage2.resume.pt", ".stage3.resume.pt.*"):
        stop_when(_train(prepared, out, "--resume"), tmp_path, lambda p=point: any(out.glob(p)))
    assert not (out / "stage3.pt").exists()
    finished = llseg(_train(prepared, out, "--resume"), tmp_path)
    assert finished.returncode == 0, finished.stderr

    expected = json.loads((reference / "results.json").read_text())
    assert json.loads((out / "results.json").read_text())["scores"] == expected["scores"]
    for k in (1, 2, 3):
        mine, theirs = (torch.load(d / f"stage{k}.pt", weights_only=True)["state_dict"] for d in (out, reference))
        assert all(torch.equal(v, theirs[name]) for name, v in mine.items())
    assert sorted(p.name for p in out.iterdir()) == ["results.json", "results.md", "stage1.pt", "stage2.pt", "stage3.pt"]


def test_resume_refuses_changed_settings_and_fresh_runs_refuse_old_files(prepared: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    stop_when(_train(prepared, out), tmp_path, exists(out / "stage2.resume.pt"))
    changed = llseg(_train(prepared, out, "--resume", "--set", "lr=0.001"), tmp_path)
    assert changed.returncode == 2 and "Traceback" not in changed.stderr
    assert f"llseg train --resume: {out} was trained with other hyperparameters" in changed.stderr
    fresh = llseg(_train(prepared, out), tmp_path)
    assert fresh.returncode == 2
    assert f"--out {out} holds an earlier run (results.json, results.md, stage1.pt, stage2.resume.pt); continue it with " \
           "--resume, or choose an empty folder" in fresh.stderr
