import pytest

from llseg.errors import ConfigError
from llseg.methods.config import TrainConfig


def test_parses_yaml_style_values():
    cfg = TrainConfig.from_hyperparameters(
        {"recipe": "finetune", "epochs": "3", "lr": "1e-3", "crop_size": "64x128", "input_size": [96, 192],
         "flip": "false", "scale": [1, 1.25]}
    )
    assert (cfg.recipe, cfg.epochs, cfg.lr) == ("finetune", 3, 1e-3)
    assert cfg.crop_size == (64, 128) and cfg.input_size == (96, 192)
    assert cfg.flip is False and cfg.scale == (1.0, 1.25)


@pytest.mark.parametrize(
    "hps, message",
    [
        ({"epoch": 3}, "did you mean 'epochs'"),
        ({"recipe": "lwf"}, "unknown recipe 'lwf'; registered recipes: finetune, idec, joint, klingner, lag, mib, plop, ssul"),
        ({"epochs": 2.5}, "expected an integer"),
        ({"crop_size": "64by128"}, "expected HxW"),
        ({"flip": "maybe"}, "expected true/false"),
        ({"epochs": 0}, "must be >= 1"),
        ({"scale": [2, 1]}, "0 < low <= high"),
        ({"grad_clip": 0}, "grad_clip .* must be > 0"),
        ({"grad_clip": "-1"}, "grad_clip .* must be > 0"),
        ({"grad_clip_incremental": -0.5}, "grad_clip_incremental .* must be > 0"),
        ({"grad_clip": "big"}, "grad_clip: expected a number"),
        ({"num_workers": -1}, "num_workers must be 'auto' or an integer >= 0"),
        ({"num_workers": "many"}, "num_workers: expected a number"),
        ({"num_workers": 1.5}, "num_workers: expected an integer"),
    ],
)
def test_bad_hyperparameters_name_the_key(hps, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_hyperparameters(hps, source="algo.yaml")


def test_grad_clip_is_optional_and_parsed_as_float():
    assert TrainConfig().grad_clip is None
    assert TrainConfig.from_hyperparameters({"grad_clip": "10"}).grad_clip == 10.0
    assert TrainConfig.from_hyperparameters({"grad_clip": None}).grad_clip is None


def test_num_workers_is_auto_by_default_or_a_count():
    assert TrainConfig().num_workers == "auto"
    assert TrainConfig.from_hyperparameters({"num_workers": "auto"}).num_workers == "auto"
    assert TrainConfig.from_hyperparameters({"num_workers": "2"}).num_workers == 2
    with pytest.raises(ConfigError, match="num_workers must be"):
        TrainConfig(num_workers="4")  # the constructor takes no strings but "auto"


def test_to_dict_is_plain_data():
    d = TrainConfig.from_hyperparameters(dict(crop_size=(8, 16))).to_dict()
    assert d["crop_size"] == [8, 16] and d["recipe"] == "klingner"
