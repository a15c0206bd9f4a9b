"""Sedna-side lifelong-learning modules for llseg: one task named "global", every sample seen.

llseg runs class-incremental stages with one continually trained model, so Sedna's task machinery
is reduced to a single task:

* ``LLSegTaskDefinition`` puts ALL samples into ONE task whose entry is ``"global"``. Sedna merges
  tasks with fewer than ``MIN_TRAIN_SAMPLE`` (10) samples into a "rare task" model that it always
  names ``global.model`` with entry ``global``; ``fwt_splitting`` makes round 0 a single sample, so
  round 0 takes that path while later rounds take the normal one (which names the model
  ``<entry>.model``). With the entry ``"global"`` both paths produce the same model name and the
  same task entry, so the per-task keys of Ianvs' ``MATRIX`` (``all``, ``global``, ``task_avg``)
  are identical in every round and BWT/FWT/``MATRIX`` stay computable (docs/ianvs-sedna.md §4.2, §5.2).
* ``LLSegTaskAllocation`` sends every sample to task group 0 (the only one).
* ``LLSegTaskUpdateDecision`` gives the stored ``global`` task all new samples.
* ``LLSegUnseenSampleRecognition`` / ``LLSegUnseenSampleReRecognition`` mark every sample as seen.

Ianvs must hand these to Sedna as dicts: declare them in the algorithm YAML **without** ``url`` and
import this module from the basemodel file (docs/ianvs-sedna.md §1.6, §4.6). Importing it registers the
classes (in llseg's registry and, when KubeEdge Sedna is installed, in Sedna's ClassFactory) and
applies :mod:`llseg.ianvs.sedna_compat`. Sedna is not needed to import or call them: Sedna's
``Task`` class is used only when Sedna is importable, and data sources are any objects with ``x``
and ``y`` arrays.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from llseg.ianvs import registry, sedna_compat
from llseg.ianvs.registry import KM, STP, UTD, register

GLOBAL_ENTRY = "global"  # the entry Sedna gives its merged "rare task" model (global.model)
SEEN_TASK = "seen_task"  # Sedna's KBResourceConstant.SEEN_TASK
TASK_GROUPS = "task_groups"  # Sedna's KBResourceConstant.TASK_GROUPS


class PlainTask:
    """The attributes of Sedna's ``Task``, used when Sedna is not installed."""

    def __init__(self, entry: str, samples: Any, meta_attr: Any = None) -> None:
        self.entry = entry
        self.samples = samples
        self.meta_attr = meta_attr
        self.test_samples: Any = None
        self.model: Any = None
        self.result: Any = None


def _new_task(entry: str, samples: Any, meta_attr: Any = None) -> Any:
    """A Sedna ``Task`` when Sedna is importable (it is pickled into Sedna's index), else a PlainTask."""
    if registry.sedna_class_factory() is None:
        return PlainTask(entry, samples, meta_attr)
    from sedna.algorithms.seen_task_learning.artifact import Task

    return Task(entry, samples, meta_attr)


def _subset(samples: Any, x: Any, y: Any) -> Any:
    """A shallow copy of the data source ``samples`` holding ``x`` and ``y``."""
    part = copy.copy(samples)
    part.x, part.y = x, y
    return part


def _all_seen(samples: Any) -> tuple[Any, Any]:
    """(every sample, no sample), both of the type of ``samples``."""
    y = getattr(samples, "y", None)
    return _subset(samples, samples.x, y), _subset(samples, samples.x[:0], None if y is None else y[:0])


@register(STP, "LLSegTaskDefinition")
class LLSegTaskDefinition:
    """Task definition: one task ``"global"`` holding all samples (see the module docstring)."""

    def __call__(self, samples: Any, **kwargs: Any) -> tuple[list[Any], dict[str, int], Any]:
        """``(tasks, extractor, samples)``; the extractor maps the entry to task group 0."""
        return [_new_task(GLOBAL_ENTRY, samples, meta_attr=GLOBAL_ENTRY)], {GLOBAL_ENTRY: 0}, samples


@register(STP, "LLSegTaskAllocation")
class LLSegTaskAllocation:
    """Task allocation: every sample goes to task group 0.

    Sedna 0.6 builds it as ``Cls(task_extractor=..., **hps)(samples=...)``; the Ianvs 0.4.1 fork
    calls an instance as ``obj(task_extractor=..., samples=...)``; both forms work.
    """

    def __init__(self, task_extractor: Any = None, **kwargs: Any) -> None:
        self.task_extractor = task_extractor

    def __call__(self, samples: Any = None, task_extractor: Any = None, **kwargs: Any) -> tuple[Any, list[int]]:
        """``(samples, [0, 0, ...])``, one group index per sample."""
        if samples is None:
            raise ValueError("LLSegTaskAllocation needs samples=<data source with x>")
        return samples, [0] * len(samples.x)


@register(KM, "LLSegTaskUpdateDecision")
class LLSegTaskUpdateDecision:
    """Task update decision: the stored ``global`` task is trained further on all new samples.

    ``task_index`` is Sedna's knowledge-base index (a path to ``index.pkl`` or the loaded dict).
    """

    def __init__(self, task_index: str | Mapping[str, Any], **kwargs: Any) -> None:
        self.task_index = task_index

    def _index(self) -> Mapping[str, Any]:
        if isinstance(self.task_index, Mapping):
            return self.task_index
        if registry.sedna_class_factory() is None:
            raise ImportError(f"loading the knowledge-base index {self.task_index} needs KubeEdge Sedna")
        from sedna.common.file_ops import FileOps

        return FileOps.load(self.task_index)

    def __call__(self, samples: Any, task_type: str = SEEN_TASK, **kwargs: Any) -> tuple[list[Any], dict[str, Any]]:
        """``([global task with .samples = samples], {entry: strategy})``; nothing for unseen tasks."""
        if task_type != SEEN_TASK:
            return [], {}
        groups = self._index()[SEEN_TASK][TASK_GROUPS]
        task = next((t for g in groups if g is not None for t in g.tasks if t.entry == GLOBAL_ENTRY), None)
        if task is None:
            raise ValueError(
                f"the knowledge base has no task {GLOBAL_ENTRY!r}; it was not written with "
                "task_definition LLSegTaskDefinition. Use LLSegTaskDefinition and LLSegTaskUpdateDecision together"
            )
        task.samples = samples
        strategy = {"raw_data_update": samples, "target_model_update": True, "task_attr_update": None}
        return [task], {GLOBAL_ENTRY: strategy}


@register(UTD, "LLSegUnseenSampleRecognition")
class LLSegUnseenSampleRecognition:
    """Unseen-sample recognition at inference: every sample is seen (one task knows all classes).

    Sedna 0.6 builds it as ``Cls(task_index, estimator=..., **hps)(samples)``; the 0.4.1 fork
    calls ``obj(samples, scores, mode=...)``; both forms work.
    """

    def __init__(self, task_index: str | Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        self.task_index = task_index

    def __call__(self, samples: Any, scores: Any = None, **kwargs: Any) -> tuple[Any, Any]:
        """``(seen, unseen)``: all samples, and an empty data source of the same type."""
        return _all_seen(samples)


@register(UTD, "LLSegUnseenSampleReRecognition")
class LLSegUnseenSampleReRecognition:
    """Unseen-sample re-recognition before an update: every training sample is seen."""

    def __init__(self, task_index: str | Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        self.task_index = task_index

    def __call__(self, samples: Any, **kwargs: Any) -> tuple[Any, Any]:
        """``(seen, unseen)``: all samples, and an empty data source of the same type."""
        return _all_seen(samples)


sedna_compat.apply()
