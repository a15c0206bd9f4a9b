"""Sedna-side modules: behaviour on plain data sources (no Sedna needed), wrong-sedna detection,
and, with KubeEdge Sedna installed, registration in its ClassFactory."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from llseg.ianvs import modules, registry
from llseg.ianvs.modules import (
    GLOBAL_ENTRY,
    LLSegTaskAllocation,
    LLSegTaskDefinition,
    LLSegTaskUpdateDecision,
    LLSegUnseenSampleRecognition,
    LLSegUnseenSampleReRecognition,
)
from tests.ianvs.sedna_env import REPO, needs_sedna


class Source:
    """A plain data source with Sedna's attributes (x rows, y labels, data_type)."""

    def __init__(self, n: int, with_y: bool = True) -> None:
        self.data_type = "train"
        self.x = np.array([[f"img{i}.png", f"full{i}.png"] for i in range(n)])
        self.y = np.array([f"train{i}.png" for i in range(n)]) if with_y else None


class Group:
    """A stored task group as Sedna's index holds it."""

    def __init__(self, tasks: list[Any]) -> None:
        self.tasks = tasks


def test_task_definition_puts_all_samples_into_one_global_task() -> None:
    data = Source(5)
    tasks, extractor, samples = LLSegTaskDefinition()(data, model=object())
    assert [t.entry for t in tasks] == [GLOBAL_ENTRY] == ["global"]
    assert tasks[0].samples is data and samples is data
    assert extractor == {"global": 0}


@pytest.mark.parametrize("form", ["sedna-0.6", "fork-0.4.1"])
def test_task_allocation_maps_every_sample_to_group_0_in_both_call_forms(form: str) -> None:
    data = Source(4)
    if form == "sedna-0.6":
        samples, groups = LLSegTaskAllocation(task_extractor={"global": 0})(samples=data)
    else:
        samples, groups = LLSegTaskAllocation()(task_extractor={"real": 0, "sim": 1}, samples=data)
    assert samples is data
    assert groups == [0, 0, 0, 0]


def test_task_allocation_without_samples_is_an_error() -> None:
    with pytest.raises(ValueError, match="samples"):
        LLSegTaskAllocation()()


@pytest.mark.parametrize("with_y", [True, False])
def test_unseen_sample_recognition_marks_everything_seen(with_y: bool) -> None:
    data = Source(3, with_y=with_y)
    for seen, unseen in (
        LLSegUnseenSampleRecognition("index.pkl", estimator=object())(data),  # Sedna 0.6 form
        LLSegUnseenSampleRecognition()(data, [0.1, 0.2, 0.3], mode="no-inference"),  # fork form
    ):
        assert isinstance(seen, Source) and isinstance(unseen, Source)
        np.testing.assert_array_equal(seen.x, data.x)
        assert unseen.x.shape == (0, 2)
        assert (unseen.y is None) == (not with_y)
    assert len(data.x) == 3  # the input is not modified


def test_re_recognition_splits_so_that_sedna_can_concatenate_the_parts() -> None:
    data = Source(4)
    seen, unseen = LLSegUnseenSampleReRecognition("index.pkl")(data)
    # Sedna's update() concatenates the two parts back together.
    x = np.concatenate((seen.x, unseen.x), axis=0)
    y = np.concatenate((seen.y, unseen.y), axis=0)
    np.testing.assert_array_equal(x, data.x)
    np.testing.assert_array_equal(y, data.y)
    assert seen is not data


def test_update_decision_trains_the_stored_global_task_on_all_samples() -> None:
    stored = modules.PlainTask(GLOBAL_ENTRY, Source(1), meta_attr=GLOBAL_ENTRY)
    stored.model = "/kb/train/0/seen_task/global.model"
    index = {"seen_task": {"task_groups": [Group([stored])]}, "unseen_task": {"task_groups": []}}
    new = Source(7)
    tasks, strategies = LLSegTaskUpdateDecision(index)(new, task_type="seen_task")
    assert tasks == [stored]
    assert tasks[0].samples is new and tasks[0].model == "/kb/train/0/seen_task/global.model"
    assert strategies["global"]["target_model_update"] is True
    assert LLSegTaskUpdateDecision(index)(new, task_type="unseen_task") == ([], {})


def test_update_decision_rejects_a_knowledge_base_of_another_task_definition() -> None:
    index = {"seen_task": {"task_groups": [Group([modules.PlainTask("front", Source(1))])]}}
    with pytest.raises(ValueError, match="LLSegTaskDefinition"):
        LLSegTaskUpdateDecision(index)(Source(2), task_type="seen_task")


def test_modules_are_registered_under_their_aliases() -> None:
    assert registry.lookup(registry.STP, "LLSegTaskDefinition") is LLSegTaskDefinition
    assert registry.lookup(registry.STP, "LLSegTaskAllocation") is LLSegTaskAllocation
    assert registry.lookup(registry.KM, "LLSegTaskUpdateDecision") is LLSegTaskUpdateDecision
    assert registry.lookup(registry.UTD, "LLSegUnseenSampleRecognition") is LLSegUnseenSampleRecognition
    assert registry.lookup(registry.UTD, "LLSegUnseenSampleReRecognition") is LLSegUnseenSampleReRecognition


def _python(code: str, extra_path: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    paths = [str(p) for p in (extra_path, REPO) if p is not None]
    env["PYTHONPATH"] = os.pathsep.join(paths + [env["PYTHONPATH"]] if env.get("PYTHONPATH") else paths)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


def test_modules_import_and_work_without_sedna() -> None:
    # sys.modules["sedna"] = None makes Sedna unimportable even where it is installed.
    done = _python(
        "import sys; sys.modules['sedna'] = None\n"
        "import numpy as np\n"
        "from llseg.ianvs import modules, sedna_compat\n"
        "class S: x = np.array([['a'], ['b']]); y = np.array(['1', '2'])\n"
        "tasks, _, _ = modules.LLSegTaskDefinition()(S())\n"
        "assert type(tasks[0]) is modules.PlainTask and sedna_compat.apply() is None\n"
        "print('ok')\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_the_unrelated_pypi_sedna_gives_an_import_error_with_the_fix(tmp_path: Path) -> None:
    fake = tmp_path / "site" / "sedna"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('"""An unrelated package that happens to be called sedna."""\n__version__ = "0.1.2"\n')
    done = _python("import llseg.ianvs.modules", extra_path=tmp_path / "site")
    assert done.returncode != 0
    assert "ImportError" in done.stderr
    assert "not KubeEdge Sedna" in done.stderr and "pip uninstall sedna" in done.stderr


@pytest.mark.ianvs
@needs_sedna
def test_sedna_class_factory_builds_the_modules_and_uses_sedna_task() -> None:
    from sedna.algorithms.seen_task_learning.artifact import Task
    from sedna.common.class_factory import ClassFactory, ClassType

    assert ClassFactory.get_cls(ClassType.STP, "LLSegTaskDefinition") is LLSegTaskDefinition
    assert ClassFactory.get_cls(ClassType.KM, "LLSegTaskUpdateDecision") is LLSegTaskUpdateDecision
    assert ClassFactory.get_cls(ClassType.UTD, "LLSegUnseenSampleReRecognition") is LLSegUnseenSampleReRecognition
    tasks, _, _ = ClassFactory.get_cls(ClassType.STP, "LLSegTaskDefinition")()(Source(2))
    assert isinstance(tasks[0], Task)
