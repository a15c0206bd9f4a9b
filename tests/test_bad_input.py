"""The bad-input battery: malformed invocations end with exit code 2 and one message naming the file
or key and the fix, before any work or output, never with a traceback (the issue's cases, and more)."""
from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from llseg.cli import main
from tests.conftest import rows_writer
from tests.helpers import JOB, tiny_city_repo, two_stage_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")

PREPARED = "data/synthetic-city-cil3"


def unwritable(tmp_path: Path) -> Path:
    """A folder nothing can be created in: read-only for a normal user, /sys for root (which ignores modes)."""
    if os.geteuid() != 0:
        folder = tmp_path / "readonly"
        folder.mkdir(mode=0o500)
        return folder
    return Path("/sys")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository with the default job on tiny data, a trained checkpoint and malformed files."""
    root = tmp_path_factory.mktemp("battery")
    tiny_city_repo(root)
    two_stage_checkpoint(rows_writer(tmp_path_factory.mktemp("scenes")), root / "stage2.pt")
    (root / "a_file").write_text("not a folder")
    (root / "folder").mkdir()
    image = np.full((32, 64, 3), 90, np.uint8)
    Image.fromarray(image).save(root / "img.png")
    Image.fromarray(np.zeros((16, 64), np.uint8)).save(root / "small_label.png")
    Image.fromarray(np.full((32, 64), 30, np.uint8)).save(root / "bad_ids.png")
    (root / "size.txt").write_text("img.png small_label.png\n")
    (root / "ids.txt").write_text("img.png bad_ids.png\n")
    return root


def _train(*extra: str) -> list[str]:
    return ["train", "--prepared", PREPARED, "--recipe", "klingner", *extra]


def _job(root: Path, name: str, **changes: object) -> str:
    """A copy of the default job with top-level ``changes``; the second algorithm gets ``lr: fast``."""
    data = yaml.safe_load((root / JOB).read_text())
    data["benchmarkingjob"].update(changes)
    (root / name).write_text(yaml.safe_dump(data, sort_keys=False))
    return name


# (argv, message parts, paths that must not exist afterwards); {ro} is an unwritable folder
BATTERY: list[tuple[list[str], list[str], list[str]]] = [
    (["synth", "--out", "{ro}/city"], ["--out {ro}/city: cannot create folders in {ro}", "choose a writable location"], []),
    (["synth", "--out", "a_file/city"], ["--out a_file/city: not a folder (a_file is a file)"], []),
    (["synth", "--out", "huge", "--size", "100000x100000"], ["size '100000x100000' is too large; both sides must be <= 16384"],
     ["huge"]),
    (["synth", "--out", "neg", "--size", "-32x64"], ["size '-32x64' is too small; both sides must be >= 16"], ["neg"]),
    (["prepare", "--dataset", "cityscapes", "--root", "data/synthetic-city", "--split", "cil-3", "--out", "a_file"],
     ["--out a_file: not a folder"], []),
    (["prepare", "--dataset", "cityscapes", "--root", "data/synthetic-city", "--split", "cil-3", "--out", "{ro}/p"],
     ["--out {ro}/p: cannot create folders in {ro}"], []),
    (_train("--out", "a_file/run"), ["--out a_file/run: not a folder (a_file is a file)"], []),
    (_train("--out", "{ro}/run"), ["--out {ro}/run: cannot create folders in {ro}"], []),
    (_train("--out", "r1", "--set", "recipe=joint"), ["set recipe with --recipe, not --set recipe=..."], ["r1"]),
    (_train("--out", "r2", "--set", "batch_size=true"), ["hyperparameter batch_size: expected a number, got True"], ["r2"]),
    (_train("--out", "r3", "--set", "crop_size=0x40"), ["crop_size: got the number 64; YAML reads 0x... as a hexadecimal"],
     ["r3"]),
    (_train("--out", "r4", "--set", "checkpoint_every=-1"), ["checkpoint_every must be >= 0"], ["r4"]),
    (["predict", "--checkpoint", "stage2.pt", "--image", "img.png", "--out", "a_file"], ["--out a_file: not a folder"], []),
    (["predict", "--checkpoint", "stage2.pt", "--image", "img.png", "--out", "p1", "--alpha", "2"],
     ["--alpha (overlay weight of the mask) must lie in [0, 1], got 2.0"], ["p1"]),
    (["eval", "--checkpoint", "stage2.pt", "--index", "size.txt", "--csv", "{ro}/t.csv"],
     ["--csv {ro}/t.csv: cannot write into {ro}"], []),
    (["eval", "--checkpoint", "stage2.pt", "--index", "size.txt", "--csv", "folder"], ["--csv folder is a folder"], []),
    (["eval", "--checkpoint", "stage2.pt", "--index", "size.txt"],
     ["label {root}/small_label.png is 16x64 but its image {root}/img.png is 32x64"], []),
    (["eval", "--checkpoint", "stage2.pt", "--index", "ids.txt"], ["{root}/bad_ids.png", "[30]"], []),
    (["export-backbone", "--checkpoint", "stage2.pt", "--out", "folder"], ["--out folder is a folder; give a file name"], []),
    (["export-backbone", "--checkpoint", "stage2.pt", "--out", "{ro}/b.pth"], ["--out {ro}/b.pth: cannot write into {ro}"], []),
    (["bench", "-f", "job_file_workspace.yaml"],
     ["workspace a_file/erfnet_cil-3_synthetic-city: not a folder (a_file is a file)"], []),
    (["bench", "-f", "job_bad_hps.yaml"], ["erfnet_finetune_bad.yaml: algorithm erfnet_finetune", "lr: expected a number"],
     ["workspace/erfnet_cil-3_synthetic-city"]),
    (["bench", "-f", JOB, "--case", "erfnet_nothing"], ["--case erfnet_nothing: no such algorithm in this job; choose from "
                                                        "erfnet_klingner, erfnet_finetune, erfnet_joint"], []),
    (["bench", "-f", JOB, "--rank-only"], ["--rank-only: ./workspace/erfnet_cil-3_synthetic-city holds no finished test case"],
     []),
    (["bench", "-f", JOB, "--rank-only", "--resume"], ["--rank-only runs nothing; drop --resume, --case and --jobs"], []),
    (["bench", "-f", JOB, "--rank-only", "--jobs", "2"], ["--rank-only runs nothing; drop --resume, --case and --jobs"], []),
]


@pytest.mark.parametrize(("argv", "message", "absent"), BATTERY, ids=[" ".join(a)[:60] for a, _, _ in BATTERY])
def test_bad_input_gets_one_clear_error(argv: list[str], message: list[str], absent: list[str], root: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(root)
    ro = unwritable(tmp_path)
    _job(root, "job_file_workspace.yaml", workspace="a_file")
    bad = yaml.safe_load((root / "testalgorithms/erfnet_finetune_cil-3_synthetic-city.yaml").read_text())
    hps = bad["algorithm"]["modules"][0]["hyperparameters"]
    hps[:] = [h for h in hps if "lr" not in h] + [{"lr": {"values": ["fast"]}}]
    (root / "testalgorithms/erfnet_finetune_bad.yaml").write_text(yaml.safe_dump(bad, sort_keys=False))
    job = yaml.safe_load((root / JOB).read_text())
    job["benchmarkingjob"]["test_object"]["algorithms"][1]["url"] = "testalgorithms/erfnet_finetune_bad.yaml"
    (root / "job_bad_hps.yaml").write_text(yaml.safe_dump(job, sort_keys=False))

    for handler in logging.getLogger("llseg").handlers:  # log into this test's captured stderr
        if isinstance(handler, logging.StreamHandler):
            handler.stream = sys.stderr
    fill = {"ro": str(ro), "root": str(root)}
    try:
        code = main([a.format(**fill) for a in argv])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    for part in message:
        assert part.format(**fill) in err, err
    for path in absent:
        assert not (root / path).exists(), path
    shutil.rmtree(root / "workspace", ignore_errors=True)
