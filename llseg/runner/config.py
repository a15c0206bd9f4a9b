"""Load and validate the Ianvs YAML files of a benchmark (benchmarkingjob, testenv, algorithms).

Supported is what the lifelong paradigm's ``no-inference`` mode with ``fwt_splitting`` uses
(docs/ianvs-sedna.md §1-§2, §7); everything else raises a ConfigError that names the file, the key
and the fix. Paths are relative to the repository root (the CWD), as ``ianvs -f`` resolves them.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from llseg.ianvs import registry
from llseg.runner.checks import check_keys, fail, read_yaml, repo_path, require, suggest
from llseg.runner.grid import expand_module

PARADIGM = "lifelonglearning"
MODE = "no-inference"
SPLITTING = "fwt_splitting"
SYSTEM_METRICS = ("samples_transfer_ratio", "FWT", "BWT", "task_avg_acc", "MATRIX", "forget_rate")
OPERATORS = (">", "<", ">=", "<=", "=")
SAVE_MODES = ("selected_and_all", "selected_only")
# Sedna class type of each module type passed as a dict (declared without url).
SEDNA_MODULES = {
    "task_definition": registry.STP,
    "task_relationship_discovery": registry.STP,
    "task_allocation": registry.STP,
    "task_remodeling": registry.STP,
    "inference_integrate": registry.STP,
    "task_update_decision": registry.KM,
    "unseen_task_allocation": registry.UTP,
    "unseen_sample_recognition": registry.UTD,
    "unseen_sample_re_recognition": registry.UTD,
}
BASEMODEL = "basemodel"
_OTHER_MODULES = ("edgemodel", "cloudmodel", "dataset_processor", "hard_example_mining", "aggregation")
_FOLDER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


@dataclass(frozen=True)
class MetricSpec:
    """A metric entry: ``name``, optional module ``url``, and where it was declared."""

    name: str
    url: str | None
    file: str
    key: str


@dataclass(frozen=True)
class TestEnv:
    """The testenv YAML (``testenv:``)."""

    file: str
    train_index: str
    test_index: str
    model_metric: MetricSpec
    threshold: float
    operator: str
    metrics: tuple[MetricSpec, ...]
    incremental_rounds: int


@dataclass(frozen=True)
class Module:
    """One ``modules`` entry with its expanded hyperparameter variants."""

    type: str
    name: str
    url: str | None
    variants: tuple[dict[str, Any], ...]
    key: str


@dataclass(frozen=True)
class Algorithm:
    """One algorithm: its name from the job, its YAML file and settings."""

    name: str
    file: str
    train_ratio: float
    modules: tuple[Module, ...]

    @property
    def basemodel(self) -> Module:
        return next(m for m in self.modules if m.type == BASEMODEL)


@dataclass(frozen=True)
class Rank:
    """The ``rank`` section; ``sort_by`` holds (metric, ascending) pairs."""

    sort_by: tuple[tuple[str, bool], ...]
    paradigms: tuple[str, ...]
    modules: tuple[str, ...]
    hyperparameters: tuple[str, ...]
    metrics: tuple[str, ...]
    save_mode: str


@dataclass(frozen=True)
class Job:
    """A validated benchmarkingjob."""

    file: str
    name: str
    workspace: str
    testenv: TestEnv
    algorithms: tuple[Algorithm, ...]
    rank: Rank

    @property
    def output_dir(self) -> str:
        return os.path.join(self.workspace, self.name)


def _folder_name(value: Any, file: str, key: str) -> str:
    if not isinstance(value, str) or not _FOLDER_NAME.match(value) or value == "rank":
        raise fail(
            file, key, f"must be a non-empty folder name of letters, digits, '._+-' (and not 'rank'), got {value!r}"
        )
    return value


def _metric(entry: Any, file: str, key: str, *, url_required: bool) -> MetricSpec:
    if not isinstance(entry, dict):
        raise fail(file, key, f"must be a mapping with 'name' (and 'url'), got {entry!r}")
    check_keys(entry, file, key, ("name", "url"))
    name = require(entry, "name", str, file, key)
    url = entry.get("url")
    if url is None and url_required:
        system = [m for m in SYSTEM_METRICS if m.lower() == name.lower()]
        hint = f" (Ianvs' system metric is spelled '{system[0]}', case-sensitive)" if system else ""
        raise fail(file, f"{key}.url", f"metric '{name}' needs the 'url' of the Python file that registers it{hint}")
    return MetricSpec(name, None if url is None else repo_path(url, file, f"{key}.url"), file, key)


def load_testenv(path: str, job_file: str) -> TestEnv:
    """Validate the testenv YAML at ``path``."""
    env = read_yaml(path, "testenv", job_file, "benchmarkingjob.testenv")
    check_keys(
        env,
        path,
        "testenv",
        ("dataset", "model_eval", "metrics", "incremental_rounds"),
        {k: "it belongs to the federated and single-task paradigms" for k in ("round", "client_number", "use_gpu")},
    )
    dataset = require(env, "dataset", dict, path, "testenv")
    unsupported = {
        k: "current Ianvs main ignores train_url/test_url (process_dataset raises NotImplementedError); "
        "give the index files as 'train_index' and 'test_index'"
        for k in ("train_url", "test_url")
    }
    unsupported.update(
        {k: "only txt index files ('train_index'/'test_index') are supported" for k in
         ("train_data", "test_data", "train_data_info", "test_data_info", "label")}
    )
    check_keys(dataset, path, "testenv.dataset", ("train_index", "test_index"), unsupported)
    indexes = []
    for name in ("train_index", "test_index"):
        key = f"testenv.dataset.{name}"
        if name not in dataset:
            raise fail(path, key, "missing required key (a txt index file, one sample per line)")
        index = repo_path(dataset[name], path, key, hint="; index files are written by `llseg prepare`")
        if not index.endswith(".txt"):
            raise fail(
                path, key, f"'{index}' must be a .txt index (csv indexes do not work in Ianvs; json is not supported here)"
            )
        indexes.append(index)

    model_eval = require(env, "model_eval", dict, path, "testenv")
    check_keys(model_eval, path, "testenv.model_eval", ("model_metric", "threshold", "operator"))
    for name in ("threshold", "operator"):
        if name not in model_eval:
            raise fail(
                path,
                f"testenv.model_eval.{name}",
                "missing: Ianvs replaces the default model_eval wholesale, so give both threshold and operator "
                "(threshold: 0, operator: '<' never drops a task)",
            )
    threshold = require(model_eval, "threshold", (int, float), path, "testenv.model_eval")
    operator = model_eval["operator"]
    if operator not in OPERATORS:
        raise fail(path, "testenv.model_eval.operator", f"must be one of {', '.join(OPERATORS)}, got {operator!r}")
    spec = require(model_eval, "model_metric", dict, path, "testenv.model_eval")
    where = "testenv.model_eval.model_metric"
    check_keys(spec, path, where, ("name", "url", "mode"))
    mode = spec.get("mode")
    if mode != MODE:
        raise fail(
            path,
            f"{where}.mode",
            f"{mode!r} is not supported by the built-in runner: only mode '{MODE}' is (the default mode is broken "
            "upstream and hard-example-mining needs Sedna's inference path); set 'mode: no-inference'",
        )
    model_metric = _metric({k: v for k, v in spec.items() if k != "mode"}, path, where, url_required=True)

    entries = require(env, "metrics", list, path, "testenv")
    if not entries:
        raise fail(path, "testenv.metrics", "must list at least one metric")
    metrics: list[MetricSpec] = []
    for i, entry in enumerate(entries):
        key = f"testenv.metrics[{i}]"
        entry_name = entry.get("name") if isinstance(entry, dict) else None
        metric = _metric(entry, path, key, url_required=entry_name not in SYSTEM_METRICS)
        if metric.name == "forget_rate":
            raise fail(
                path, f"{key}.name", "forget_rate is never produced by the lifelong paradigm (Ianvs raises KeyError); remove it"
            )
        if metric.name in SYSTEM_METRICS and metric.url is not None:
            raise fail(
                path,
                f"{key}.url",
                f"'{metric.name}' is a system metric computed by the runner from the round results; remove its url",
            )
        if metric.name.lower() in (m.name.lower() for m in metrics):
            raise fail(path, f"{key}.name", f"metric '{metric.name}' is listed twice")
        metrics.append(metric)

    rounds = env.get("incremental_rounds", 2)
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 2:
        raise fail(path, "testenv.incremental_rounds", f"must be an int >= 2 (as Ianvs requires), got {rounds!r}")
    return TestEnv(path, indexes[0], indexes[1], model_metric, float(threshold), operator, tuple(metrics), rounds)


def _module(entry: Any, file: str, key: str) -> Module:
    if not isinstance(entry, dict):
        raise fail(file, key, f"must be a mapping with 'type' and 'name', got {entry!r}")
    check_keys(entry, file, key, ("type", "name", "url", "hyperparameters"))
    kind = require(entry, "type", str, file, key)
    name = require(entry, "name", str, file, key)
    valid = (BASEMODEL, *SEDNA_MODULES)
    if kind in _OTHER_MODULES:
        raise fail(
            file,
            f"{key}.type",
            f"module type '{kind}' is not used by the lifelong no-inference flow; not supported by the built-in runner",
        )
    if kind not in valid:
        raise fail(file, f"{key}.type", f"unknown module type '{kind}'{suggest(kind, valid)}; valid: {', '.join(valid)}")
    url = entry.get("url")
    if kind == BASEMODEL:
        if url is None:
            raise fail(file, f"{key}.url", "the basemodel needs the 'url' of the Python file that registers the estimator")
        url = repo_path(url, file, f"{key}.url")
    elif url is not None:
        raise fail(
            file,
            f"{key}.url",
            f"'{kind}' must be declared without url: Sedna 0.6.0.1 only accepts Sedna-side modules as dicts "
            "{method, param} (docs/ianvs-sedna.md §1.6); register the class from the basemodel file instead",
        )
    elif entry.get("hyperparameters") is not None:
        raise fail(
            file,
            f"{key}.hyperparameters",
            f"hyperparameters of the Sedna-side module '{kind}' are not supported by the built-in runner, which "
            "emulates the single-task flow without constructing Sedna modules; remove them",
        )
    return Module(kind, name, url, tuple(expand_module(entry.get("hyperparameters"), file, f"{key}.hyperparameters")), key)


def load_algorithm(name: str, path: str) -> Algorithm:
    """Validate one algorithm YAML."""
    alg = read_yaml(path, "algorithm", path, "algorithm")
    llm = "it belongs to the LLM paradigms"
    check_keys(
        alg,
        path,
        "algorithm",
        ("paradigm_type", "lifelong_learning_data_setting", "initial_model_url", "modules"),
        {
            "incremental_learning_data_setting": "it belongs to the incremental-learning paradigm",
            "fl_data_setting": "it belongs to the federated paradigms",
            "third_party_packages": "install third-party packages into the environment instead",
            "mode": llm,
            "quantization_type": llm,
            "llama_quantize_path": llm,
        },
    )
    paradigm = require(alg, "paradigm_type", str, path, "algorithm")
    if paradigm != PARADIGM:
        raise fail(path, "algorithm.paradigm_type", f"'{paradigm}' is not supported by the built-in runner; only '{PARADIGM}' is")
    setting = require(alg, "lifelong_learning_data_setting", dict, path, "algorithm")
    where = "algorithm.lifelong_learning_data_setting"
    check_keys(setting, path, where, ("train_ratio", "splitting_method"))
    for key in ("train_ratio", "splitting_method"):
        if key not in setting:
            raise fail(
                path,
                f"{where}.{key}",
                "missing: Ianvs replaces this dict wholesale, so give both train_ratio and splitting_method",
            )
    ratio = require(setting, "train_ratio", (int, float), path, where)
    if not 0 < ratio < 1:
        raise fail(path, f"{where}.train_ratio", f"must be between 0 and 1 (exclusive), got {ratio}")
    method = setting["splitting_method"]
    if method != SPLITTING:
        raise fail(
            path, f"{where}.splitting_method",
            f"{method!r} is not supported by the built-in runner; no-inference needs R+1 splits: use '{SPLITTING}'",
        )
    if not isinstance(alg.get("initial_model_url", ""), str):
        raise fail(
            path, "algorithm.initial_model_url", "must be a string (Ianvs checks it; the lifelong paradigm does not use it)"
        )
    entries = require(alg, "modules", list, path, "algorithm")
    modules = [_module(entry, path, f"algorithm.modules[{i}]") for i, entry in enumerate(entries)]
    types = [m.type for m in modules]
    for i, kind in enumerate(types):
        if kind in types[:i]:
            raise fail(path, f"algorithm.modules[{i}].type", f"module type '{kind}' appears twice; Ianvs keeps only the last")
    if BASEMODEL not in types:
        raise fail(path, "algorithm.modules", "needs a module of type 'basemodel' (the estimator) with a url")
    return Algorithm(name, path, float(ratio), tuple(modules))


def _names(
    section: dict[str, Any], key: str, file: str, where: str, valid: list[str], what: str, *, may_be_empty: bool = False
) -> tuple[str, ...]:
    values = require(section, key, list, file, where)
    if not values and not may_be_empty:
        raise fail(file, f"{where}.{key}", f"must list {what} or be [\"all\"]")
    if values == ["all"]:
        return tuple(valid)
    for value in values:
        if value not in valid:
            hint = suggest(str(value), valid)
            if not hint:
                full = [v for v in valid if v.endswith(f"-{value}")]
                hint = f" (write it as '{full[0]}')" if full else ""
            raise fail(file, f"{where}.{key}", f"'{value}' is not a {what[:-1]} of this job{hint}; valid: {', '.join(valid)}")
    return tuple(values)


def _load_rank(section: Any, file: str, env: TestEnv, algorithms: tuple[Algorithm, ...]) -> Rank:
    where = "benchmarkingjob.rank"
    if not isinstance(section, dict):
        raise fail(file, where, "missing or not a mapping: Ianvs needs it to write the leaderboard")
    check_keys(section, file, where, ("sort_by", "visualization", "selected_dataitem", "save_mode"))
    metric_names = [m.name for m in env.metrics]
    sort_by = []
    for i, item in enumerate(section.get("sort_by") or []):
        key = f"{where}.sort_by[{i}]"
        if not isinstance(item, dict) or len(item) != 1:
            raise fail(file, key, f"must be a single-key dict like '{{BWT: descend}}', got {item!r}")
        ((metric, order),) = item.items()
        if metric not in metric_names or metric == "MATRIX":
            valid = [m for m in metric_names if m != "MATRIX"]
            raise fail(
                file,
                key,
                f"'{metric}' is not a sortable metric of {env.file}{suggest(str(metric), valid)}; valid: {', '.join(valid)}",
            )
        if order not in ("ascend", "descend"):
            raise fail(file, key, f"order must be 'ascend' or 'descend', got {order!r}")
        sort_by.append((metric, order == "ascend"))

    visual = section.get("visualization", {"mode": "selected_only", "method": "print_table"})
    if not isinstance(visual, dict):
        raise fail(file, f"{where}.visualization", "must be a mapping {mode, method}")
    check_keys(visual, file, f"{where}.visualization", ("mode", "method"))
    if visual.get("method") != "print_table":
        raise fail(file, f"{where}.visualization.method", f"only 'print_table' exists in Ianvs, got {visual.get('method')!r}")
    if visual.get("mode") != "selected_only":
        raise fail(
            file,
            f"{where}.visualization.mode",
            f"only 'selected_only' (print the selected rank) is supported, got {visual.get('mode')!r}",
        )

    all_types = list(dict.fromkeys(m.type for a in algorithms for m in a.modules))
    all_hps = list(dict.fromkeys(f"{m.type}-{hp}" for a in algorithms for m in a.modules for v in m.variants for hp in v))
    default = {"paradigms": ["all"], "modules": ["all"], "hyperparameters": ["all"], "metrics": ["all"]}
    selected = section.get("selected_dataitem", default)
    sel = f"{where}.selected_dataitem"
    if not isinstance(selected, dict):
        raise fail(file, sel, "must be a mapping {paradigms, modules, hyperparameters, metrics}")
    check_keys(selected, file, sel, tuple(default))
    paradigms = _names(selected, "paradigms", file, sel, [PARADIGM], "paradigms")
    modules = _names(selected, "modules", file, sel, all_types, "module types")
    hps = _names(selected, "hyperparameters", file, sel, all_hps, "hyperparameters", may_be_empty=True)
    metrics = _names(selected, "metrics", file, sel, metric_names, "metrics")
    if "MATRIX" in metrics:
        raise fail(
            file, f"{sel}.metrics",
            "MATRIX is dict-valued and cannot be a leaderboard column (Ianvs crashes with 'unhashable type: dict'); "
            "list the metrics explicitly without MATRIX (it stays in all_rank.csv and results.json)",
        )
    save_mode = section.get("save_mode", "selected_and_all")
    if save_mode not in SAVE_MODES:
        raise fail(file, f"{where}.save_mode", f"{save_mode!r} is not supported; use one of {', '.join(SAVE_MODES)}")
    return Rank(tuple(sort_by), paradigms, modules, hps, metrics, save_mode)


def load_job(path: str) -> Job:
    """Validate a benchmarkingjob YAML and every file it names (no module is imported yet)."""
    job = read_yaml(path, "benchmarkingjob", path, "benchmarkingjob")
    where = "benchmarkingjob"
    check_keys(
        job, path, where, ("name", "workspace", "testenv", "test_object", "rank"),
        {"simulation": "it builds a KubeEdge cluster; run under Ianvs for that"},
    )
    name = _folder_name(job.get("name"), path, f"{where}.name")
    workspace = repo_path(job.get("workspace", "./workspace"), path, f"{where}.workspace", must_exist=False)
    testenv = load_testenv(repo_path(require(job, "testenv", str, path, where), path, f"{where}.testenv"), path)
    obj = require(job, "test_object", dict, path, where)
    check_keys(obj, path, f"{where}.test_object", ("type", "algorithms"))
    if obj.get("type") != "algorithms":
        raise fail(
            path, f"{where}.test_object.type", f"must be 'algorithms' (the only Ianvs test object type), got {obj.get('type')!r}"
        )
    entries = require(obj, "algorithms", list, path, f"{where}.test_object")
    if not entries:
        raise fail(path, f"{where}.test_object.algorithms", "must list at least one algorithm {name, url}")
    algorithms: list[Algorithm] = []
    for i, entry in enumerate(entries):
        key = f"{where}.test_object.algorithms[{i}]"
        if not isinstance(entry, dict):
            raise fail(path, key, f"must be a mapping {{name, url}}, got {entry!r}")
        check_keys(entry, path, key, ("name", "url"))
        alg_name = _folder_name(entry.get("name"), path, f"{key}.name")
        if alg_name in (a.name for a in algorithms):
            raise fail(path, f"{key}.name", f"algorithm name '{alg_name}' is used twice; names label rank rows and folders")
        url = repo_path(require(entry, "url", str, path, key), path, f"{key}.url")
        algorithms.append(load_algorithm(alg_name, url))
    rank = _load_rank(job.get("rank"), path, testenv, tuple(algorithms))
    return Job(path, name, workspace, testenv, tuple(algorithms), rank)
