"""Make the unmodified Ianvs lifelong paradigm run on the KubeEdge Sedna it is installed with.

Applied by :func:`apply` (idempotent), which :mod:`llseg.ianvs.modules` calls at import time; it
does nothing when KubeEdge Sedna is not importable. No Ianvs or Sedna file is edited: methods and
attributes are patched in memory. Reference: ``docs/ianvs-compatibility.md`` (why, and the
upstream tracker items kubeedge/ianvs #284, #461, #470, #451, #457, #481, #454 and the unmerged
PRs #301, #645, #657).

Two Sedna builds are recognised by ``LifelongLearning.__init__``'s first parameter:

* ``"upstream"``: ``seen_estimator`` -- the sedna-0.6.0.1 wheel bundled by current Ianvs main
  (``examples/resources/third_party/``), identical to kubeedge/sedna. Ianvs main calls methods it
  lacks, so this module adds ``my_evaluate``, ``my_inference`` and ``inference_2`` and makes
  ``evaluate`` return the index path; it sets ``BaseConfig.data_path_prefix`` to ``/`` (Sedna
  prefixes ``CLOUD_KB_INDEX`` with ``/home/data``) and answers the knowledge-base and
  local-controller HTTP calls locally (no servers exist under Ianvs; each call otherwise retries for
  ~12 s and ``update_db`` crashes).
* ``"fork"``: ``estimator`` -- Ianvs' own 0.4.1 fork (``examples/resources/third_party-bk/``),
  consistent with Ianvs core ``ea06b50``. It has the Ianvs-only methods; this module disables its
  edge model-polling thread, a non-daemon infinite loop that keeps ``ianvs`` from exiting.

For both builds:

* ``BACKEND_TYPE`` defaults to ``PYTORCH`` (unset means TensorFlow; ``TORCH`` makes training a
  no-op), so Sedna uses the estimator as it is.
* ``train`` treats a missing ``CLOUD_KB_INDEX``, or Ianvs' hard-coded placeholder
  ``/tmp/cloud_task/index.pkl``, as initial training (Ianvs' default mode starts with an update
  on a knowledge base that does not exist), and returns the new index path.
* Files stay inside the job's workspace (Ianvs' ``OUTPUT_URL``): task models are saved straight
  into ``<OUTPUT_URL>/seen_task/`` (instead of ``/tmp`` or a ``mkdtemp()`` folder, and without
  overwriting the previous round's files, so every round's ``index.pkl`` stays valid), the fork's
  backends stop creating an empty ``mkdtemp()`` folder each, the
  working copy of ``index.pkl`` is ``<OUTPUT_URL>/index.pkl`` (instead of ``./index.pkl`` in the
  current directory), Sedna's edge knowledge base goes to ``<case>/output/edge_kb`` (instead
  of ``/var/lib/sedna/kb``, which needs root), and ``FileOps.load`` reads local files in place
  (Sedna copies each one to a ``/tmp`` file it never deletes).

Set ``KB_SERVER`` / ``LC_SERVER`` to talk to real Sedna servers, ``DATA_PATH_PREFIX`` to keep
Sedna's prefix, or ``EDGE_OUTPUT_URL`` to choose the edge folder; these are then left alone.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

from llseg.ianvs import registry

log = logging.getLogger("llseg")

UPSTREAM = "upstream"
FORK = "fork"
# The initial CLOUD_KB_INDEX hard-coded in Ianvs' lifelong_learning.py; never a real index of this job.
IANVS_PLACEHOLDER_INDEX = "/tmp/cloud_task/index.pkl"
SEEN_TASK_DIR = "seen_task"  # Sedna's KBResourceConstant.SEEN_TASK: where update_kb keeps task models
EDGE_KB_DIR = "edge_kb"
_PATCHED = "_llseg_compat"
_SET_BACKEND = "set_backend"  # the sedna.backend function that _save_models_in_workspace wraps


def sedna_flavour() -> str | None:
    """``"upstream"`` (Sedna 0.6.0.1 / kubeedge/sedna), ``"fork"`` (Ianvs' 0.4.1 fork) or ``None`` (no Sedna).

    Raises:
        ImportError: the installed ``sedna`` is the unrelated PyPI package.
    """
    if registry.sedna_class_factory() is None:
        return None
    from sedna.core.lifelong_learning.lifelong_learning import LifelongLearning

    return UPSTREAM if "seen_estimator" in inspect.signature(LifelongLearning.__init__).parameters else FORK


def apply() -> str | None:
    """Patch the installed KubeEdge Sedna once; returns its flavour, or ``None`` without Sedna."""
    flavour = sedna_flavour()
    if flavour is None:
        return None
    from sedna.core.lifelong_learning.lifelong_learning import LifelongLearning

    if getattr(LifelongLearning, _PATCHED, False):
        return flavour
    os.environ.setdefault("BACKEND_TYPE", "PYTORCH")
    _save_models_in_workspace()
    _load_local_files_in_place()
    _answer_servers_locally()
    LifelongLearning.__init__ = _wrap_init(LifelongLearning.__init__)
    LifelongLearning.train = _wrap_train(LifelongLearning.train)
    if not hasattr(LifelongLearning, "my_evaluate"):
        LifelongLearning.my_evaluate = _my_evaluate
        LifelongLearning.evaluate = _evaluate
    if not hasattr(LifelongLearning, "my_inference"):
        LifelongLearning.my_inference = _my_inference
    if not hasattr(LifelongLearning, "inference_2"):
        LifelongLearning.inference_2 = _inference_2
    if hasattr(LifelongLearning, "get_cloud_knowledge_management"):
        LifelongLearning.get_cloud_knowledge_management = _wrap_get_ckm(
            LifelongLearning.get_cloud_knowledge_management
        )
    if flavour == UPSTREAM and "DATA_PATH_PREFIX" not in os.environ:
        from sedna.common.config import BaseConfig

        BaseConfig.data_path_prefix = "/"  # read by update(); train() passes absolute paths
    if flavour == FORK:
        from sedna.algorithms.knowledge_management import edge_knowledge_management

        edge_knowledge_management.ModelLoadingThread.start = _do_not_start
    setattr(LifelongLearning, _PATCHED, True)
    log.debug("patched KubeEdge Sedna (%s) for Ianvs", flavour)
    return flavour


# ------------------------------------------------------------------------------------------ helpers
@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    """Set environment variables for the duration of the block, then restore them."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _output_url() -> str | None:
    return os.environ.get("OUTPUT_URL") or None


def edge_kb_dir(output_url: str) -> str:
    """``<case>/output/edge_kb`` for an Ianvs ``OUTPUT_URL`` below ``<case>/output``, else ``<output_url>/edge_kb``."""
    path = os.path.abspath(output_url)
    probe = path
    while os.path.dirname(probe) != probe:
        if os.path.basename(probe) == "output":
            return os.path.join(probe, EDGE_KB_DIR)
        probe = os.path.dirname(probe)
    return os.path.join(path, EDGE_KB_DIR)


def is_knowledge_base(index: str | None) -> bool:
    """Whether ``CLOUD_KB_INDEX`` names an existing index (not Ianvs' initial placeholder)."""
    if not index or os.path.abspath(index) == IANVS_PLACEHOLDER_INDEX:
        return False
    return os.path.isfile(index)


def _do_not_start(self: Any) -> None:
    """Replaces the fork's edge ModelLoadingThread.start: an infinite non-daemon poll nothing in Ianvs uses."""


# ------------------------------------------------------------------------------- workspace paths
def _save_models_in_workspace() -> None:
    """Backends create no ``mkdtemp()`` folders, and task models land in ``<OUTPUT_URL>/seen_task/``."""
    import sedna.backend
    from sedna.algorithms.seen_task_learning import seen_task_learning

    original = sedna.backend.set_backend

    @functools.wraps(original)
    def set_backend(estimator: Any = None, config: Any = None) -> Any:
        with _env(LOCAL_TEST="FALSE"):  # the fork makes a mkdtemp() save folder per backend otherwise
            return original(estimator=estimator, config=config)

    # Sedna modules import the function by name: replace every reference already imported.
    for name, module in list(sys.modules.items()):
        if name.startswith("sedna.") and getattr(module, _SET_BACKEND, None) is original:
            setattr(module, _SET_BACKEND, set_backend)  # ModuleType declares no attributes to assign

    @functools.wraps(original)
    def set_task_backend(estimator: Any = None, config: Any = None) -> Any:
        backend = set_backend(estimator=estimator, config=config)
        output = _output_url()
        if backend is not None and output:
            folder = os.path.join(output, SEEN_TASK_DIR)
            save = backend.save

            def save_in_workspace(model_url: str = "", model_name: str | None = None) -> Any:
                backend.model_save_path = folder  # load() would point it at the previous round
                return save(model_url=model_url, model_name=model_name)

            backend.save = save_in_workspace
        return backend

    seen_task_learning.set_backend = set_task_backend


def _load_local_files_in_place() -> None:
    """``FileOps.load`` reads local files directly instead of leaving a ``/tmp`` copy per call."""
    from sedna.common.file_ops import FileOps

    original = FileOps.load.__func__

    def load(cls: Any, src: str) -> Any:
        if isinstance(src, str) and os.path.isfile(src):
            import joblib  # a Sedna dependency

            return joblib.load(src)
        return original(cls, src)

    FileOps.load = classmethod(functools.wraps(original)(load))


def _wrap_init(original: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        output = _output_url()
        edge = {}
        if output and not (os.environ.get("EDGE_OUTPUT_URL") or os.environ.get("edge_output_url")):
            edge["EDGE_OUTPUT_URL"] = edge_kb_dir(output)
        with _env(**edge):  # read once here; not left set for later test cases
            original(self, *args, **kwargs)
        ckm = getattr(self, "cloud_knowledge_management", None)
        if ckm is not None:
            ckm.local_task_index_url = ckm.task_index  # not ./index.pkl in the current directory

    return __init__


def _wrap_get_ckm(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
    @functools.wraps(original)
    def get_cloud_knowledge_management(self: Any) -> Any:
        ckm = original(self)
        ckm.local_task_index_url = ckm.task_index
        return ckm

    return get_cloud_knowledge_management


# ------------------------------------------------------------------------------------ training
def _wrap_train(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def train(self: Any, train_data: Any, valid_data: Any = None, post_process: Any = None, **kwargs: Any) -> Any:
        """Sedna's train; initial training unless CLOUD_KB_INDEX is a real index; returns the index path."""
        index = os.environ.get("CLOUD_KB_INDEX")
        wants_update = os.environ.get("HAS_COMPLETED_INITIAL_TRAINING", "false").lower() == "true"
        env = {"HAS_COMPLETED_INITIAL_TRAINING": "False"}
        if wants_update and is_knowledge_base(index):
            env = {"HAS_COMPLETED_INITIAL_TRAINING": "True", "CLOUD_KB_INDEX": os.path.abspath(str(index))}
        elif wants_update:
            log.info("CLOUD_KB_INDEX %s is not a knowledge base of this job: initial training instead of an update", index)
        with _env(**env):
            result = original(self, train_data, valid_data=valid_data, post_process=post_process, **kwargs)
        if isinstance(result, dict):  # upstream initial training returns the per-task feedback
            return self.cloud_knowledge_management.task_index
        return result

    return train


# ----------------------------------------------------------- methods Ianvs main calls (upstream)
def _model_urls(self: Any) -> str:
    return os.environ.get("MODEL_URLS") or self.cloud_knowledge_management.task_index


def _my_evaluate(self: Any, data: Any, post_process: Any = None, **kwargs: Any) -> tuple[str, list[Any], dict[str, Any]]:
    """Evaluate every task of the index ``MODEL_URLS``; ``(this job's index path, tasks_detail, res)``."""
    from sedna.common.file_ops import FileOps

    ckm = self.cloud_knowledge_management
    index = ckm.task_index
    FileOps.download(_model_urls(self), index)  # always refresh: never reuse a stale copy
    res, tasks_detail = ckm.seen_estimator.evaluate(data=data, task_index=index, **kwargs)
    dropped = ckm.evaluate_tasks(tasks_detail, **kwargs)
    if dropped:
        log.warning("model_eval threshold/operator would drop tasks %s; without a KB server Sedna 0.6 keeps them", dropped)
    return index, tasks_detail, res


def _evaluate(self: Any, data: Any, post_process: Any = None, **kwargs: Any) -> str:
    """Like :func:`_my_evaluate`, returning only the index path (Ianvs' default mode uses it as MODEL_URLS)."""
    return _my_evaluate(self, data, **kwargs)[0]


def _my_inference(self: Any, data: Any, post_process: Any = None, **kwargs: Any) -> Any:
    """Predictions of the index ``MODEL_URLS`` for all of ``data``."""
    seen = self.cloud_knowledge_management.seen_estimator
    res, _tasks = seen.predict(data=data, task_index=_model_urls(self), task_type="seen_task", **kwargs)
    return res


def _inference_2(self: Any, data: Any, post_process: Any = None, **kwargs: Any) -> tuple[Any, bool, list[Any]]:
    """Predict with the index ``MODEL_URLS`` and run unseen-sample recognition: ``(res, is_unseen, tasks)``."""
    from sedna.common.class_factory import ClassFactory, ClassType

    index = _model_urls(self)
    seen = self.cloud_knowledge_management.seen_estimator
    res, tasks = seen.predict(data=data, task_index=index, task_type="seen_task", **kwargs)
    recognise = ClassFactory.get_cls(ClassType.UTD, self.unseen_sample_recognition["method"])(
        index, estimator=seen.estimator.base_model, **self.unseen_sample_recognition_param
    )
    _seen, unseen = recognise(data, **kwargs)
    return res, unseen.x is not None and len(unseen.x) > 0, tasks


# ------------------------------------------------------------------------------ offline servers
def _answer_servers_locally() -> None:
    """KB and local-controller calls answer locally unless KB_SERVER / LC_SERVER is set."""
    from sedna.service import client

    def upload_file(self: Any, files: Any, name: str = "") -> Any:
        return files  # the file stays where Sedna wrote it

    def update_db(self: Any, task_info_file: str) -> str:
        return task_info_file  # the local index is the knowledge base

    def update_task_status(self: Any, tasks: str, new_status: int = 1) -> None:
        return None

    def send(cls: Any, lc_server: Any, worker_name: Any, message: dict) -> None:
        return None

    for name, local in (("upload_file", upload_file), ("update_db", update_db), ("update_task_status", update_task_status)):
        setattr(client.KBClient, name, _unless_env("KB_SERVER", getattr(client.KBClient, name), local))
    client.LCClient.send = classmethod(_unless_env("LC_SERVER", client.LCClient.send.__func__, send))


def _unless_env(variable: str, remote: Callable[..., Any], local: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(remote)
    def call(*args: Any, **kwargs: Any) -> Any:
        return (remote if os.environ.get(variable) else local)(*args, **kwargs)

    return call
