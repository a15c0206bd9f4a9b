"""YAML validation: every error names the file, the key and the fix."""
from __future__ import annotations

import pytest

from llseg.errors import ConfigError
from llseg.runner.config import load_job
from llseg.runner.job import resolve_job
from tests.runner.conftest import Repo, algorithm_yaml, env_yaml, job_yaml


def _error(path: str) -> str:
    with pytest.raises(ConfigError) as info:
        resolve_job(load_job(path))
    return str(info.value)


def _one_algorithm(repo: Repo, alg: dict, **job_overrides) -> str:
    repo.write("testalgorithms/alg.yaml", alg)
    return repo.write("benchmarkingjob.yaml", job_yaml([("alg", "testalgorithms/alg.yaml")], **job_overrides))


def test_valid_job_loads(repo: Repo) -> None:
    loaded = load_job(repo.standard())
    assert [a.name for a in loaded.algorithms] == ["keep", "forget"]
    assert loaded.output_dir == "./workspace/bench"
    assert loaded.testenv.incremental_rounds == 3
    assert loaded.rank.sort_by == (("runner_hits", False), ("BWT", False))
    assert loaded.rank.modules == ("basemodel", "task_definition")
    assert loaded.rank.hyperparameters == ("basemodel-forget",)
    resolved = resolve_job(loaded)
    assert resolved.model_metric.__name__ == "accuracy"
    assert list(resolved.metrics) == ["runner_hits"]


def test_misspelled_job_key_suggests_closest(repo: Repo) -> None:
    path = repo.standard()
    data = job_yaml([("keep", "testalgorithms/keep.yaml")])
    data["benchmarkingjob"]["worksapce"] = data["benchmarkingjob"].pop("workspace")
    repo.write(path, data)
    message = _error(path)
    assert "benchmarkingjob.yaml" in message and "benchmarkingjob.worksapce" in message
    assert "did you mean 'workspace'" in message and "silently ignores" in message


def test_misspelled_testenv_key(repo: Repo) -> None:
    path = repo.standard()
    env = env_yaml()
    env["testenv"]["incremental_round"] = env["testenv"].pop("incremental_rounds")
    repo.write("testenv/testenv.yaml", env)
    message = _error(path)
    assert message.startswith("testenv/testenv.yaml: key 'testenv.incremental_round'")
    assert "did you mean 'incremental_rounds'" in message


def test_misspelled_module_key(repo: Repo) -> None:
    alg = algorithm_yaml()
    alg["algorithm"]["modules"][0]["hyperparameter"] = [{"forget": {"values": [True]}}]
    message = _error(_one_algorithm(repo, alg))
    assert "testalgorithms/alg.yaml: key 'algorithm.modules[0].hyperparameter'" in message
    assert "did you mean 'hyperparameters'" in message


def test_missing_index_file(repo: Repo) -> None:
    path = repo.standard()
    env = env_yaml(dataset={"train_index": "data/train_indx.txt", "test_index": "data/test_index.txt"})
    repo.write("testenv/testenv.yaml", env)
    message = _error(path)
    assert "testenv/testenv.yaml: key 'testenv.dataset.train_index'" in message
    assert "'data/train_indx.txt' does not exist" in message and "did you mean 'data/train_index.txt'" in message


def test_absolute_path_is_rejected(repo: Repo) -> None:
    path = repo.standard()
    repo.write(
        "testenv/testenv.yaml", env_yaml(dataset={"train_index": "/home/someone/x.txt", "test_index": "data/test_index.txt"})
    )
    message = _error(path)
    assert "testenv.dataset.train_index" in message and "'/home/someone/x.txt' is absolute" in message
    assert "relative to the repository root" in message


def test_absolute_path_inside_repo_suggests_relative(repo: Repo) -> None:
    path = repo.write("benchmarkingjob.yaml", job_yaml([("keep", str(repo.root / "testalgorithms/keep.yaml"))]))
    message = _error(path)
    assert "here that is 'testalgorithms/keep.yaml'" in message


def test_algorithm_url_that_does_not_exist(repo: Repo) -> None:
    repo.standard()
    path = repo.write("benchmarkingjob.yaml", job_yaml([("keep", "testalgorithms/kep.yaml")]))
    message = _error(path)
    assert "benchmarkingjob.yaml: key 'benchmarkingjob.test_object.algorithms[0].url'" in message
    assert "did you mean 'testalgorithms/keep.yaml'" in message


@pytest.mark.parametrize("mode", [None, "hard-example-mining", "multi-inference"])
def test_unsupported_mode(repo: Repo, mode: str | None) -> None:
    path = repo.standard()
    env = env_yaml()
    env["testenv"]["model_eval"]["model_metric"]["mode"] = mode
    repo.write("testenv/testenv.yaml", env)
    message = _error(path)
    assert "testenv.model_eval.model_metric.mode" in message and "not supported by the built-in runner" in message
    assert "mode: no-inference" in message


def test_unsupported_paradigm(repo: Repo) -> None:
    message = _error(_one_algorithm(repo, algorithm_yaml(paradigm_type="incrementallearning")))
    assert "algorithm.paradigm_type" in message and "'incrementallearning' is not supported" in message


def test_train_url_points_to_train_index(repo: Repo) -> None:
    path = repo.standard()
    repo.write(
        "testenv/testenv.yaml", env_yaml(dataset={"train_url": "data/train_index.txt", "test_index": "data/test_index.txt"})
    )
    message = _error(path)
    assert "testenv.dataset.train_url" in message and "train_index" in message and "NotImplementedError" in message


def test_simulation_is_not_supported(repo: Repo) -> None:
    repo.standard()
    path = repo.write("benchmarkingjob.yaml", job_yaml([("keep", "testalgorithms/keep.yaml")], simulation={"cloud_number": 1}))
    assert "benchmarkingjob.simulation': not supported by the built-in runner" in _error(path)


def test_sedna_module_with_url_is_rejected(repo: Repo) -> None:
    alg = algorithm_yaml()
    alg["algorithm"]["modules"][1]["url"] = "testalgorithms/runner_dummy_basemodel.py"
    message = _error(_one_algorithm(repo, alg))
    assert "algorithm.modules[1].url" in message and "without url" in message and "Sedna 0.6.0.1" in message


def test_unregistered_sedna_module(repo: Repo) -> None:
    alg = algorithm_yaml()
    alg["algorithm"]["modules"][1]["name"] = "RunnerTaskDefinitio"
    message = _error(_one_algorithm(repo, alg))
    assert "algorithm.modules[1].name" in message and "no seen_task_processing entry named 'RunnerTaskDefinitio'" in message
    assert "did you mean 'RunnerTaskDefinition'" in message


def test_sedna_module_registered_under_other_type(repo: Repo) -> None:
    alg = algorithm_yaml()
    alg["algorithm"]["modules"][1] = {"type": "task_update_decision", "name": "RunnerTaskDefinition"}
    assert "no knowledge_management entry named 'RunnerTaskDefinition'" in _error(_one_algorithm(repo, alg))


def test_data_setting_must_be_complete(repo: Repo) -> None:
    message = _error(_one_algorithm(repo, algorithm_yaml(lifelong_learning_data_setting={"train_ratio": 0.8})))
    assert "lifelong_learning_data_setting.splitting_method" in message and "wholesale" in message


def test_other_splitting_method(repo: Repo) -> None:
    setting = {"train_ratio": 0.8, "splitting_method": "default"}
    message = _error(_one_algorithm(repo, algorithm_yaml(lifelong_learning_data_setting=setting)))
    assert "'default' is not supported" in message and "fwt_splitting" in message


def test_empty_hyperparameter_values(repo: Repo) -> None:
    message = _error(_one_algorithm(repo, algorithm_yaml([{"forget": {"values": []}}])))
    assert "algorithm.modules[0].hyperparameters[0].forget.values" in message and "zero test cases" in message


def test_incremental_rounds_at_least_two(repo: Repo) -> None:
    path = repo.standard()
    repo.write("testenv/testenv.yaml", env_yaml(incremental_rounds=1))
    assert "testenv.incremental_rounds': must be an int >= 2" in _error(path)


def test_matrix_cannot_be_selected(repo: Repo) -> None:
    data = job_yaml([("alg", "testalgorithms/alg.yaml")])
    data["benchmarkingjob"]["rank"]["selected_dataitem"]["metrics"] = ["all"]
    repo.write("testalgorithms/alg.yaml", algorithm_yaml())
    message = _error(repo.write("benchmarkingjob.yaml", data))
    assert "rank.selected_dataitem.metrics" in message and "MATRIX" in message and "unhashable" in message


def test_sort_by_unknown_metric(repo: Repo) -> None:
    data = job_yaml([("alg", "testalgorithms/alg.yaml")])
    data["benchmarkingjob"]["rank"]["sort_by"] = [{"BTW": "descend"}]
    repo.write("testalgorithms/alg.yaml", algorithm_yaml())
    message = _error(repo.write("benchmarkingjob.yaml", data))
    assert "rank.sort_by[0]" in message and "did you mean 'BWT'" in message


def test_selected_hyperparameter_needs_module_prefix(repo: Repo) -> None:
    data = job_yaml([("alg", "testalgorithms/alg.yaml")])
    data["benchmarkingjob"]["rank"]["selected_dataitem"]["hyperparameters"] = ["forget"]
    repo.write("testalgorithms/alg.yaml", algorithm_yaml([{"forget": {"values": [True]}}]))
    message = _error(repo.write("benchmarkingjob.yaml", data))
    assert "write it as 'basemodel-forget'" in message


def test_unregistered_basemodel_suggests_alias(repo: Repo) -> None:
    alg = algorithm_yaml()
    alg["algorithm"]["modules"][0]["name"] = "runner_dumy"
    message = _error(_one_algorithm(repo, alg))
    assert "algorithm.modules[0].name" in message and "did you mean 'runner_dummy'" in message


def test_model_metric_must_be_named_accuracy(repo: Repo) -> None:
    path = repo.standard()
    env = env_yaml()
    env["testenv"]["model_eval"]["model_metric"]["name"] = "runner_badname"
    repo.write("testenv/testenv.yaml", env)
    message = _error(path)
    assert "'not_accuracy'" in message and "must be named 'accuracy'" in message


def test_two_module_files_with_one_bare_name(repo: Repo) -> None:
    from tests.runner.conftest import PLUGIN

    repo.write("a/runner_plugin.py", PLUGIN)
    repo.write("b/runner_plugin.py", PLUGIN)
    for name in ("a", "b"):
        alg = algorithm_yaml()
        alg["algorithm"]["modules"][0]["url"] = f"{name}/runner_plugin.py"
        repo.write(f"testalgorithms/{name}.yaml", alg)
    path = repo.write("benchmarkingjob.yaml", job_yaml([("a", "testalgorithms/a.yaml"), ("b", "testalgorithms/b.yaml")]))
    message = _error(path)
    assert "'b/runner_plugin.py' and 'a/runner_plugin.py'" in message and "bare module name 'runner_plugin'" in message


def test_bare_name_of_an_imported_module(repo: Repo) -> None:
    from tests.runner.conftest import PLUGIN

    repo.write("testalgorithms/json.py", PLUGIN)
    alg = algorithm_yaml()
    alg["algorithm"]["modules"][0]["url"] = "testalgorithms/json.py"
    message = _error(_one_algorithm(repo, alg))
    assert "already imported" in message and "Rename the file" in message


def test_module_import_error_names_file(repo: Repo) -> None:
    repo.write("testalgorithms/runner_broken.py", "import does_not_exist_anywhere\n")
    alg = algorithm_yaml()
    alg["algorithm"]["modules"][0]["url"] = "testalgorithms/runner_broken.py"
    message = _error(_one_algorithm(repo, alg))
    assert "importing 'testalgorithms/runner_broken.py' failed: ModuleNotFoundError" in message


def test_not_a_yaml_file(repo: Repo) -> None:
    repo.write("job.json", "{}")
    with pytest.raises(ConfigError, match="must be a .yaml or .yml file"):
        load_job("job.json")


def test_system_metric_names_are_case_sensitive(repo: Repo) -> None:
    path = repo.standard()
    repo.write("testenv/testenv.yaml", env_yaml(metrics=[{"name": "bwt"}]))
    message = _error(path)
    assert "testenv.metrics[0].url" in message and "spelled 'BWT'" in message
