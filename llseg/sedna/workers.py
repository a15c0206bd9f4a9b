"""``llseg sedna train | eval | infer``: the three workers of a KubeEdge Sedna ``LifelongLearningJob``.

* **train** (cloud): one continual stage on ``TRAIN_DATASET_URL`` through Sedna's
  ``LifelongLearning.train`` with an llseg estimator and the task-definition modules of the Ianvs
  plugin (:mod:`llseg.ianvs.modules`: one task ``global``). The first round
  (``HAS_COMPLETED_INITIAL_TRAINING`` false) trains from scratch; later rounds update the model of
  the knowledge base ``CLOUD_KB_INDEX`` with the new samples (e.g. the labelled unseen samples of
  the edge). Writes ``OUTPUT_URL/index.pkl`` and ``OUTPUT_URL/seen_task/global.model``.
* **eval** (cloud): ``LifelongLearning.evaluate`` of the knowledge base ``MODEL_URLS`` on
  ``TEST_DATASET_URL``; scores (accuracy = mIoU over the classes in the labels, old/new/all mIoU, hIoU) go to Sedna and
  to ``OUTPUT_URL/eval_result.json``.
* **infer** (edge): the deployed model (``MODEL_URLS``'s checkpoint, or an exported ONNX /
  TorchScript file ``EDGE_MODEL_URL``) predicts every image of the folder ``INFER_DATASET_URL``
  (once, or watching it for new files with ``INFER_WATCH=true``); per image a train-id mask
  ``<stem>_mask.png`` and a record ``<stem>.json`` in ``INFERENCE_RESULT_DIR``; images whose
  unseen score (:mod:`llseg.sedna.unseen`) exceeds ``UNSEEN_THRESHOLD`` are copied to
  ``UNSEEN_SAVE_URL``, the folder Sedna's edge uploads for labelling.

Every setting is checked before work starts (:mod:`llseg.sedna.settings`); a bad one exits with
code 2 and a message naming the variable, and nothing is written. Variables: docs/sedna.md.
"""
from __future__ import annotations

import logging
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from llseg.data.imageio import write_label_png
from llseg.errors import ConfigError, DataError
from llseg.export import EdgeModel, load_edge_model, predict_image
from llseg.methods.checkpoint import read_checkpoint
from llseg.methods.predict import IMAGE_SUFFIXES
from llseg.sedna import settings
from llseg.sedna.settings import IndexRows, check_kb_server, existing_path, json_dump, param, required
from llseg.sedna.unseen import score_image

log = logging.getLogger("llseg.sedna")

# The Ianvs plugin's Sedna-side modules (llseg.ianvs.modules), handed to Sedna as {"method": alias}.
MODULES = {
    "task_definition": {"method": "LLSegTaskDefinition"},
    "task_allocation": {"method": "LLSegTaskAllocation"},
    "task_update_decision": {"method": "LLSegTaskUpdateDecision"},
    "unseen_sample_recognition": {"method": "LLSegUnseenSampleRecognition"},
    "unseen_sample_re_recognition": {"method": "LLSegUnseenSampleReRecognition"},
}
EVAL_METRICS = ("accuracy", "mIoU_old", "mIoU_new", "mIoU_all", "hIoU")


def _sedna() -> None:
    """Fail with the install hint unless KubeEdge Sedna is importable; register llseg's modules in it."""
    if settings.registry.sedna_class_factory() is None:
        raise ConfigError(settings.SEDNA_HINT)
    import llseg.ianvs.estimator  # noqa: F401  (registers the estimators)
    import llseg.ianvs.metrics  # noqa: F401  (registers the metric functions)
    import llseg.ianvs.modules  # noqa: F401  (registers the modules, patches Sedna: llseg.ianvs.sedna_compat)


def _job(estimator: Any) -> Any:
    from sedna.core.lifelong_learning import LifelongLearning

    return LifelongLearning(estimator, **MODULES)


def _estimator(name: str, hps: dict[str, Any]) -> Any:
    return settings.registry.lookup(settings.registry.GENERAL, name)(**hps)


def _data_source(rows: IndexRows, data_type: str) -> Any:
    from sedna.datasources import BaseDataSource

    data = BaseDataSource(data_type=data_type)
    data.x, data.y = np.array(rows.x, dtype=object), np.array(rows.y, dtype=object)
    return data


def _checkpoint_estimator(model: Path) -> tuple[str, dict[str, Any]]:
    """The estimator alias and hyperparameters that rebuild the checkpoint ``model``."""
    checkpoint = read_checkpoint(model)
    architecture = str(checkpoint["architecture"])
    for name in settings.ESTIMATORS:
        if architecture in settings.registry.lookup(settings.registry.GENERAL, name).architectures:
            hps = dict(checkpoint["hyperparameters"])
            hps.pop("output_dir", None)
            return name, hps
    raise ConfigError(f"{model} holds a {architecture!r} model, which no llseg estimator builds")


# ------------------------------------------------------------------------------------------ train
def train() -> dict[str, Any]:
    """One training round; returns the summary also written to ``OUTPUT_URL/train_result.json``."""
    role = "train"
    rows = settings.read_dataset_index("TRAIN_DATASET_URL", role)
    output = Path(required("OUTPUT_URL", role, "the round's output folder: knowledge-base index and task models"))
    name, hps = settings.estimator_spec(role)
    update = settings.flag("HAS_COMPLETED_INITIAL_TRAINING", role)
    previous = None
    if update:
        previous = existing_path("CLOUD_KB_INDEX", role, "the previous round's knowledge-base index (index.pkl)")
        settings.kb_model(previous, role)
    check_kb_server(role)
    _sedna()
    estimator = _estimator(name, hps)
    started = time.perf_counter()
    index = _job(estimator).train(_data_source(rows, "train"))
    summary = {
        "role": role, "estimator": name, "update": update, "samples": len(rows.y),
        "previous_index": str(previous) if previous else None,
        "index": str(index), "model": str(settings.kb_model(Path(str(index)), role)),
        "seconds": round(time.perf_counter() - started, 1),
    }
    json_dump(output / "train_result.json", summary)
    return summary


# ------------------------------------------------------------------------------------------- eval
def evaluate() -> dict[str, Any]:
    """Evaluate the knowledge base ``MODEL_URLS``; returns what ``OUTPUT_URL/eval_result.json`` holds."""
    role = "eval"
    rows = settings.read_dataset_index("TEST_DATASET_URL", role)
    models = existing_path("MODEL_URLS", role, "the knowledge-base index (index.pkl) the train worker wrote")
    output = Path(required("OUTPUT_URL", role, "the evaluation's output folder"))
    check_kb_server(role)
    _sedna()
    model = settings.kb_model(models, role)
    name, hps = _checkpoint_estimator(model)
    metrics = {m: settings.registry.lookup(settings.registry.GENERAL, m) for m in EVAL_METRICS}
    job = _job(_estimator(name, hps))
    # my_evaluate (llseg.ianvs.sedna_compat) returns the scores; Sedna's evaluate returns only the index
    index, _tasks, result = job.my_evaluate(_data_source(rows, "eval"), metrics=metrics)
    from sedna.common.constant import K8sResourceKindStatus

    info = job.estimator.model_info(index, result=result, relpath=job.config.data_path_prefix)
    job.report_task_info(None, K8sResourceKindStatus.COMPLETED.value, info, kind="eval")  # to the local controller
    summary = {"role": role, "model_urls": str(models), "model": str(model), "index": str(index),
               "samples": len(rows.y), "scores": result}
    json_dump(output / "eval_result.json", summary)
    return summary


# ------------------------------------------------------------------------------------------ infer
class Inference:
    """The edge worker's state: the deployed model (reloaded when ``MODEL_URLS`` changes) and output folders."""

    def __init__(self) -> None:
        role = self.role = "infer"
        self.folder = existing_path("INFER_DATASET_URL", role, "the folder of images to predict", folder=True)
        self.edge_model = param("EDGE_MODEL_URL")
        self.models = None if self.edge_model else existing_path(
            "MODEL_URLS", role, "the deployed knowledge-base index; or set EDGE_MODEL_URL to an exported model")
        output = param("OUTPUT_URL")
        results = param("INFERENCE_RESULT_DIR") or (str(Path(output) / "inference") if output else None)
        if results is None:
            required("INFERENCE_RESULT_DIR", role, "where masks and records are written")
        self.results = Path(str(results))
        unseen = param("UNSEEN_SAVE_URL") or str(self.results.parent / "unseen_samples")
        self.unseen = Path(unseen)
        self.confidence = settings.number("CONFIDENCE_THRESHOLD", role, 0.5, 0.0, 1.0)
        self.threshold = settings.number("UNSEEN_THRESHOLD", role, 0.2, 0.0, 1.0)
        self.watch = settings.flag("INFER_WATCH", role)
        self.poll = settings.number("INFER_POLL_SECONDS", role, 2.0, 0.05, 3600.0)
        self.model_path, self.model, self.stamp = self._load()
        self.failed: dict[Path, float] = {}  # image -> mtime when it failed: not retried until it changes

    def _load(self) -> tuple[Path, EdgeModel, float]:
        if self.edge_model:
            path = Path(self.edge_model)
            if not path.is_file():
                raise ConfigError(f"infer worker: EDGE_MODEL_URL={path} is not an existing file "
                                  "(an .onnx or .ts written by 'llseg export', or a checkpoint)")
            return path, load_edge_model(path), path.stat().st_mtime
        assert self.models is not None
        if settings.registry.sedna_class_factory() is None:
            raise ConfigError(settings.SEDNA_HINT + "; or set EDGE_MODEL_URL to run without Sedna")
        path = settings.kb_model(self.models, self.role)
        return path, load_edge_model(path), self.models.stat().st_mtime

    def _refresh(self) -> None:
        """Reload the model when the deployed index (or edge model file) changed."""
        source = Path(self.edge_model) if self.edge_model else self.models
        if source is not None and source.is_file() and source.stat().st_mtime != self.stamp:
            log.info("model changed: reloading %s", source)
            self.model_path, self.model, self.stamp = self._load()

    def pending(self) -> tuple[list[Path], list[Path]]:
        """``(images without a record yet, files that are not images by their suffix)``, sorted."""
        files = sorted(p for p in self.folder.iterdir() if p.is_file() and not p.name.startswith("."))
        images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES and not (self.results / f"{p.stem}.json").exists()
                  and self.failed.get(p) != p.stat().st_mtime]
        return images, [p for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]

    def predict(self, image: Path) -> dict[str, Any]:
        """Mask, record and (if unseen) the copy of one image; returns the record."""
        started = time.perf_counter()
        mask, scores = predict_image(self.model, image)
        seconds = time.perf_counter() - started
        score = score_image(scores, confidence=self.confidence, threshold=self.threshold)
        self.results.mkdir(parents=True, exist_ok=True)
        mask_path = self.results / f"{image.stem}_mask.png"
        write_label_png(mask_path, mask)
        copy = None
        if score.unseen:
            copy = self.unseen / image.name
            self.unseen.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(image, copy)
        record = {
            "image": str(image), "mask": str(mask_path), "model": str(self.model_path),
            "classes": self.model.info.classes, "uncertain_fraction": round(score.uncertain_fraction, 6),
            "mean_confidence": round(score.mean_confidence, 6), "confidence_threshold": self.confidence,
            "unseen_threshold": self.threshold, "unseen": score.unseen, "unseen_copy": str(copy) if copy else None,
            "latency_ms": round(seconds * 1000, 2), "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        json_dump(self.results / f"{image.stem}.json", record)
        return record

    def run_once(self, *, first: bool) -> tuple[int, list[str]]:
        """Predict the pending images; ``(how many, errors)``. An empty folder on the first pass is an error unless watching."""
        images, others = self.pending()
        if first and others:
            log.warning("ignoring %d file(s) that are not images (%s): %s", len(others), ", ".join(IMAGE_SUFFIXES),
                        ", ".join(p.name for p in others[:5]))
        if first and not images and not self.watch and not any(self.results.glob("*.json")):
            raise ConfigError(f"infer worker: INFER_DATASET_URL={self.folder} holds no image "
                              f"({', '.join(IMAGE_SUFFIXES)}); put images there or set INFER_WATCH=true to wait for them")
        errors = []
        for image in images:
            try:
                record = self.predict(image)
            except DataError as exc:
                self.failed[image] = image.stat().st_mtime
                errors.append(str(exc))
                log.error("%s", exc)
                continue
            log.info("%s: uncertain %.3f%s", image.name, record["uncertain_fraction"], " -> unseen" if record["unseen"] else "")
        return len(images) - len(errors), errors


def infer(max_polls: int | None = None) -> dict[str, Any]:
    """Predict the folder once (default) or keep watching it (``INFER_WATCH``); raises DataError if an image failed."""
    worker = Inference()
    done, errors = worker.run_once(first=True)
    polls = 0
    while worker.watch and (max_polls is None or polls < max_polls):
        time.sleep(worker.poll)
        worker._refresh()
        more, more_errors = worker.run_once(first=False)
        done, errors, polls = done + more, errors + more_errors, polls + 1
    if errors:
        raise DataError(f"infer worker: {len(errors)} file(s) could not be predicted: " + "; ".join(errors))
    return {"role": "infer", "predicted": done, "results": str(worker.results), "unseen": str(worker.unseen)}


WORKERS = {"train": train, "eval": evaluate, "infer": infer}


def run_worker(role: str) -> int:
    """Run one worker; 0 on success. Bad settings raise ConfigError/DataError (the CLI exits 2)."""
    summary = WORKERS[role]()
    log.info("llseg sedna %s finished: %s", role, summary)
    print(summary)
    return 0
