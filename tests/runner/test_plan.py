"""``llseg bench --plan``: per test case and round, images × epochs, FLOPs and an estimate; nothing trains."""
from __future__ import annotations

from pathlib import Path

import pytest

from llseg.cli import main
from llseg.runner.plan import plan_job
from tests.helpers import JOB, tiny_city_repo


def test_plan_counts_every_round_and_trains_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str], one_thread: None) -> None:
    monkeypatch.chdir(tmp_path)
    tiny_city_repo(tmp_path)  # 1 epoch, batch 4, 32x64 inputs; train_index: 3 chunks of 4 lines, train ratio 0.8 -> 3 train lines
    lines = Path("data/synthetic-city-cil3/train_index.txt").read_text().splitlines()
    chunk = len(lines) // 3
    train = int(chunk * 0.8)
    tests = len(Path("data/synthetic-city-cil3/test_index.txt").read_text().splitlines())
    plans = plan_job(JOB)
    assert [(p.case, p.round) for p in plans] == [(c, r) for c in ("erfnet_klingner", "erfnet_finetune", "erfnet_joint")
                                                  for r in range(4)]
    joint = [p.images for p in plans if p.case == "erfnet_joint"]
    assert joint == [2, train, 2 * train, 3 * train]  # round 0's single line is trained as two views; joint keeps all
    assert [p.images for p in plans if p.case == "erfnet_finetune"] == [2, train, train, train]
    evals = 3 * (chunk - train)
    assert [p.eval_images for p in plans[:4]] == [evals, evals + 3, evals + 3, evals + 3 + 2 * tests]
    klingner, finetune = plans[1], plans[5]
    assert finetune.train_flops > 0 and klingner.train_flops == pytest.approx(finetune.train_flops * 4 / 3)  # + teacher
    assert all(p.seconds > 0 for p in plans)

    assert main(["bench", "-f", JOB, "--plan"]) == 0
    out = capsys.readouterr().out
    assert f"| erfnet_joint | 3 | {3 * train} × 1 = {3 * train} |" in out
    assert "job total:" in out and "estimated" in out
    assert not Path("workspace").exists()  # nothing trained or written


class _Samples:
    """A dataset of ``n`` integers with the ``epoch`` attribute the engine's ``cycle`` advances."""

    def __init__(self, n: int) -> None:
        self.n, self.epoch = n, 0

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> int:
        return index


@pytest.mark.parametrize(("images", "batch_size", "memory", "epochs"),
                         [(7, 6, 5, 2), (10, 8, 9, 3), (5, 4, 1, 2), (3, 8, 100, 1), (9, 6, 0, 2)])
def test_replayed_samples_are_those_the_learner_draws(images: int, batch_size: int, memory: int, epochs: int) -> None:
    """As ContinualLearner._fit builds them: main batches of B − B//2, each with the next replay batch
    of B//2 from the memory's cycled loader (1-sample last batches dropped)."""
    from llseg.methods.config import resolve_config
    from llseg.methods.engine import Engine, cycle
    from llseg.runner.plan import batches, replayed_samples

    engine = Engine(resolve_config({"device": "cpu", "num_workers": 0}))
    main_batch = batch_size - batch_size // 2 if memory else batch_size
    loader = engine.loader(_Samples(images), main_batch, 0)  # type: ignore[arg-type]
    assert [len(b) for b in loader] == batches(images, main_batch)
    drawn = 0
    if memory:
        replay = cycle(engine.loader(_Samples(memory), batch_size // 2, 1))  # type: ignore[arg-type]
        drawn = sum(len(next(replay)) for _ in range(epochs) for _ in loader)
    assert replayed_samples(images, batch_size, memory, epochs) == drawn


def test_recipes_declare_replay_and_teacher_pass() -> None:
    from llseg.methods.config import resolve_config
    from llseg.methods.registry import make_recipe

    def recipe(**hps: object) -> object:
        return make_recipe(resolve_config({"model": "deeplabv3_resnet50", **hps}))

    assert recipe(recipe="ssul", mem_size=100).replay_capacity == 100  # type: ignore[attr-defined]
    assert recipe(recipe="ssul").replay_capacity == 0  # type: ignore[attr-defined]
    assert recipe(recipe="plop").teacher_pass and recipe(recipe="lag").teacher_pass  # type: ignore[attr-defined]
    assert not recipe(recipe="lag", lambda_spm=0.0, lambda_nsc=0.0).teacher_pass  # type: ignore[attr-defined]
    assert not recipe(recipe="mib").teacher_pass and not recipe(recipe="finetune").teacher_pass  # type: ignore[attr-defined]


def test_plan_table_shows_replayed_samples_and_teacher_pass() -> None:
    from llseg.runner.plan import RoundPlan, format_plan

    plans = [RoundPlan("ssul_m", 1, 10, 2, 5, replayed=12, teacher_pass=0, train_flops=1e12, eval_flops=0.0, seconds=3.0),
             RoundPlan("plop", 1, 10, 2, 5, replayed=0, teacher_pass=10, train_flops=1e12, eval_flops=0.0, seconds=3.0)]
    table = format_plan(plans)
    assert "| ssul_m | 1 | 10 × 2 = 20 + 12 replayed | 5 |" in table
    assert "| ssul_m | all | 32 |" in table  # replayed samples are trained samples
    assert "| plop | 1 | 10 × 2 = 20 + 10 teacher pass | 5 |" in table


def test_plan_counts_evaluation_at_the_eval_crop(make_rows, one_thread: None) -> None:
    """eval_crop 16 on a 32x64 image: the model predicts the 16x16 square, so the counted evaluation FLOPs are
    those of a 16x16 forward (1/8 of the full image's for ERFNet, whose FLOPs grow with the pixels)."""
    from llseg.methods.config import TrainConfig
    from llseg.runner.plan import calibrate, eval_input_size

    rows = make_rows("a", 1, [0, 10], keep={0, 10})
    row = (str(rows.x[0, 0]), str(rows.x[0, 1]), str(rows.y[0]))
    plain = TrainConfig.from_hyperparameters(dict(recipe="finetune", batch_size=2, device="cpu"))
    cropped = TrainConfig.from_hyperparameters(dict(recipe="finetune", batch_size=2, device="cpu", eval_crop=16))
    assert eval_input_size(plain, Path(row[0])) == (32, 64) and eval_input_size(cropped, Path(row[0])) == (16, 16)
    full, crop = calibrate(plain, row, 19), calibrate(cropped, row, 19)
    assert crop.eval_flops == pytest.approx(full.eval_flops / 8, rel=1e-3) and crop.train_flops == full.train_flops


@pytest.mark.parametrize("recipe", [{"recipe": "finetune"}, {"recipe": "ssul", "unknown": True, "loss_type": "bce"}])
def test_plan_calibrates_deeplabv3(recipe: dict[str, object], make_rows, one_thread: None) -> None:
    """DeepLabV3's ASPP pools to 1x1 before a BatchNorm: the one-image FLOP count runs in eval mode; the
    model has the recipe's channels (SSUL's unknown channel, merged away at prediction)."""
    from llseg.methods.config import TrainConfig
    from llseg.runner.plan import calibrate

    rows = make_rows("a", 1, [0, 10], keep={0, 10})
    row = (str(rows.x[0, 0]), str(rows.x[0, 1]), str(rows.y[0]))
    config = TrainConfig.from_hyperparameters(dict(recipe, model="deeplabv3_mobilenet_v3_large", batch_size=2,
                                                   device="cpu", input_size="32x32", dataset="voc"))
    cal = calibrate(config, row, 19)
    assert cal.train_flops > 0 and cal.train_seconds > 0 and cal.eval_flops == cal.train_flops  # both at input_size
