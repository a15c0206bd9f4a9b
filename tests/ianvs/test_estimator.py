import inspect
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from llseg.data.predictions import load_prediction
from llseg.errors import ConfigError, DataError
from llseg.ianvs.estimator import ERFNetEstimator
from llseg.ianvs.registry import GENERAL, lookup

FAST = dict(epochs=2, batch_size=2, seed=5, jitter=0.0)


def test_registered_under_a_stable_alias():
    assert lookup(GENERAL, "llseg_erfnet") is ERFNetEstimator


def test_method_signatures_match_what_sedna_calls():
    sig = inspect.signature
    assert list(sig(ERFNetEstimator.train).parameters)[1:3] == ["train_data", "valid_data"]
    assert "model_url" in sig(ERFNetEstimator.load).parameters
    for name in ("train", "predict", "evaluate"):
        assert any(p.kind is p.VAR_KEYWORD for p in sig(getattr(ERFNetEstimator, name)).parameters.values())


def test_rounds_are_stages_and_outputs_stay_in_the_given_folder(make_rows, tmp_path, monkeypatch):
    out = tmp_path / "case" / "output"
    monkeypatch.setenv("OUTPUT_URL", str(out / "eval"))
    monkeypatch.delenv("INFERENCE_RESULT_DIR", raising=False)
    est = ERFNetEstimator(recipe="klingner", **FAST)
    est.train(train_data=make_rows("a", 2, [0, 1], keep={0, 1}))
    model_path = out / "train" / "0" / "seen_task" / "global.model"
    est.save(str(model_path))
    assert model_path.is_file()

    # Sedna's update path: the same instance loads the last model, then trains the next stage.
    est.load(model_url=str(model_path))
    est.train(train_data=make_rows("b", 2, [0, 4], keep={4}))
    test = make_rows("t", 3, [0, 1, 4], keep={0, 1, 4})
    before = {p for p in tmp_path.rglob("*") if p.is_file()}
    paths = est.predict(test.x, task_index="index.pkl")
    after = {p for p in tmp_path.rglob("*") if p.is_file()}
    assert len(paths) == 3 and all(isinstance(p, str) for p in paths)
    assert after - before == {Path(p) for p in paths}
    assert all(Path(p).parent == out / "eval" / "predictions" for p in paths)
    record = load_prediction(paths[0])
    assert record.groups == [[0, 1], [4]] and record.pred.shape == (32, 64)


def test_repeated_rows_are_predicted_once_and_share_their_record(make_rows, tmp_path, monkeypatch):
    monkeypatch.setenv("OUTPUT_URL", str(tmp_path / "eval"))
    est = ERFNetEstimator(recipe="finetune", **FAST)
    est.train(train_data=make_rows("a", 2, [0, 1], keep={0, 1}))
    test = make_rows("t", 2, [0, 1], keep={0, 1})
    padded = np.concatenate([test.x, test.x[::-1], test.x[:1]])  # as a padded index chunk repeats lines
    seen: list[list[str]] = []
    predict = est.learner.predict
    monkeypatch.setattr(est.learner, "predict", lambda images: (seen.append(list(images)), predict(images))[1])
    paths = est.predict(padded)
    images = [str(v) for v in np.asarray(test.x).reshape(len(test.x), -1)[:, 0]]
    assert seen == [images]
    assert paths[:2] == paths[3:1:-1] and paths[4] == paths[0] and paths[0] != paths[1]


def test_evaluate_writes_nothing_and_reports_the_klingner_table(make_rows, tmp_path):
    est = ERFNetEstimator(recipe="finetune", **FAST)
    est.train(train_data=make_rows("a", 2, [0, 1], keep={0, 1}))
    est.train(train_data=make_rows("b", 2, [2, 3], keep={2, 3}))
    test = make_rows("t", 2, [0, 1, 2, 3], keep={0, 1, 2, 3})
    before = {p for p in tmp_path.rglob("*") if p.is_file()}
    table = est.evaluate(test)
    assert {p for p in tmp_path.rglob("*") if p.is_file()} == before
    assert set(table) >= {"accuracy", "mIoU_task1", "mIoU_task2", "mIoU_task1+2", "mIoU_old", "mIoU_new", "hIoU"}
    assert all(0.0 <= v <= 1.0 for v in table.values() if v is not None)


def test_weights_round_trip(make_rows):
    est = ERFNetEstimator(recipe="finetune", **FAST)
    est.train(train_data=make_rows("a", 2, [0, 1], keep={0, 1}))
    weights = est.get_weights()
    twin = ERFNetEstimator(recipe="finetune", **FAST)
    twin.train(train_data=make_rows("b", 2, [0, 1], keep={0, 1}))
    twin.set_weights(weights)
    assert all(np.array_equal(v, twin.get_weights()[k]) for k, v in weights.items())


def test_predict_without_an_output_folder_says_how_to_fix(make_rows, monkeypatch):
    monkeypatch.delenv("OUTPUT_URL", raising=False)
    monkeypatch.delenv("INFERENCE_RESULT_DIR", raising=False)
    est = ERFNetEstimator(recipe="finetune", **FAST)
    est.train(train_data=make_rows("a", 2, [0, 1], keep={0, 1}))
    with pytest.raises(RuntimeError, match="output_dir"):
        est.predict(make_rows("t", 1, [0, 1], keep={0, 1}).x)


def test_missing_image_is_named(make_rows):
    rows = make_rows("a", 2, [0, 1], keep={0, 1})
    Path(rows.x[1, 0]).unlink()
    with pytest.raises((DataError, FileNotFoundError), match=Path(rows.x[1, 0]).name):
        ERFNetEstimator(**FAST).train(train_data=rows)


def test_label_with_unknown_ids_is_named(make_rows):
    rows = make_rows("a", 2, [0, 1], keep={0, 1})
    Image.fromarray(np.full((32, 64), 40, np.uint8)).save(rows.y[0])
    with pytest.raises(DataError, match=r"a0_train\.png.*\[40\]"):
        ERFNetEstimator(**FAST).train(train_data=rows)


def test_checkpoint_from_another_architecture_is_refused(make_rows, tmp_path):
    est = ERFNetEstimator(**FAST)
    est.train(train_data=make_rows("a", 2, [0, 1], keep={0, 1}))
    path = tmp_path / "other.model"
    ckpt = est.learner.state_dict()
    ckpt["architecture"] = "deeplabv3_resnet101"
    torch.save(ckpt, path)
    with pytest.raises(ValueError, match=r"other\.model.*deeplabv3_resnet101.*erfnet"):
        ERFNetEstimator(**FAST).load(model_url=str(path))
    (tmp_path / "junk.model").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"junk\.model"):
        ERFNetEstimator(**FAST).load(model_url=str(tmp_path / "junk.model"))


def test_unknown_hyperparameter_is_named():
    with pytest.raises(ConfigError, match="ERFNetEstimator hyperparameters.*'learning_rate'"):
        ERFNetEstimator(learning_rate=0.1)


def test_deeplabv3_estimator_takes_ssuls_published_defaults_and_shares_the_contract(make_rows, tmp_path, monkeypatch):
    from llseg.ianvs.estimator import DeepLabV3Estimator
    from tests.methods.recipes.published import SSUL_VOC_FLAGS

    assert lookup(GENERAL, "llseg_deeplabv3") is DeepLabV3Estimator
    est = DeepLabV3Estimator(recipe="ssul", model="deeplabv3_mobilenet_v3_large", split="voc-15-5", **FAST)
    assert est.config.recipe == "ssul" and est.config.dataset == "voc" and est.config.optimizer == "sgd"
    assert all(est.config.to_dict()[k] == v for k, v in SSUL_VOC_FLAGS.items())
    assert "unknown" not in DeepLabV3Estimator(recipe="finetune", **FAST).config.to_dict()  # flags are SSUL's only
    with pytest.raises(ValueError, match="DeepLabV3Estimator builds deeplabv3_resnet101, .*not model: erfnet"):
        DeepLabV3Estimator(model="erfnet")

    rows = make_rows("a", 2, [0, 1], keep={0, 1})  # background 0 and aeroplane 1
    est.train(train_data=rows)
    monkeypatch.setenv("OUTPUT_URL", str(tmp_path / "out"))
    record = load_prediction(est.predict(rows.x)[0])
    assert record.classes.tolist() == list(range(16)) and set(np.unique(record.pred)) <= set(range(16))
    est.save(str(tmp_path / "m.model"))
    twin = DeepLabV3Estimator(recipe="ssul", model="deeplabv3_mobilenet_v3_large", split="voc-15-5", **FAST)
    twin.load(str(tmp_path / "m.model"))
    assert np.array_equal(load_prediction(twin.predict(rows.x)[0]).pred, record.pred)
