"""``llseg train`` trains each task on its chunk's train part only, as Ianvs does."""
from __future__ import annotations

from pathlib import Path

import pytest

from llseg.data.indexfile import read_index
from llseg.data.prepare import prepare
from llseg.data.voc.synthetic import generate_objects_dataset
from llseg.methods import stages
from llseg.methods.learner import ContinualLearner
from llseg.runner.splitting import fwt_chunks


def test_each_stage_trains_on_the_train_part_of_its_chunk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    generate_objects_dataset(tmp_path / "objects", seed=0, size=(32, 32), images=80)
    manifest = prepare("voc", root=tmp_path / "objects", split="voc-15-5", out=tmp_path / "prep", seed=0)
    seen: list[list[str]] = []
    monkeypatch.setattr(ContinualLearner, "learn",
                        lambda self, images, full, train, checkpoints=None: seen.append(list(images)) or {})
    monkeypatch.setattr(ContinualLearner, "save", lambda self, path: None)
    monkeypatch.setattr(ContinualLearner, "evaluate", lambda self, images, labels: {"accuracy": 0.0})
    stages.train_stages(tmp_path / "prep", tmp_path / "out", {"recipe": "finetune", "dataset": "voc"})
    lines = [" ".join(str(t) for t in row) for row in read_index(tmp_path / "prep" / "train_index.txt", columns=3)]
    ianvs = fwt_chunks(lines, manifest.train_ratio, len(manifest.tasks))[1:]  # without round 0
    assert seen == [[line.split(" ")[0] for line in train] for train, _ in ianvs]
