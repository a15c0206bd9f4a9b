import pytest
import torch

from llseg.methods.config import TrainConfig
from llseg.methods.learner import ContinualLearner

FAST = dict(epochs=2, batch_size=2, seed=3, jitter=0.0)


def _learn(learner, rows):
    return learner.learn(list(rows.x[:, 0]), list(rows.x[:, 1]), list(rows.y))


def test_groups_grow_in_order_of_arrival(make_rows):
    learner = ContinualLearner(TrainConfig.from_hyperparameters(dict(recipe="finetune", **FAST)))
    _learn(learner, make_rows("a", 2, [10, 0], keep={10, 0}))
    _learn(learner, make_rows("b", 2, [2, 5, 0], keep={2, 5}))
    assert learner.groups == [[0, 10], [2, 5]]
    assert learner.classes == [0, 10, 2, 5] and learner.model.num_classes == 4
    summary = _learn(learner, make_rows("c", 2, [2, 0], keep={2}))  # nothing new: no group
    assert summary["new_classes"] == [] and learner.groups == [[0, 10], [2, 5]]


def test_cil_uses_a_teacher_only_when_classes_are_new(make_rows, monkeypatch):
    learner = ContinualLearner(TrainConfig.from_hyperparameters(dict(recipe="klingner", **FAST)))
    teachers = []
    original = learner._fit
    monkeypatch.setattr(
        learner, "_fit", lambda student, teacher, *rest: teachers.append(teacher) or original(student, teacher, *rest)
    )
    _learn(learner, make_rows("a", 2, [0, 1], keep={0, 1}))
    first = learner.model
    _learn(learner, make_rows("a2", 2, [0, 1], keep={0, 1}))  # same classes: retrain, no distillation
    _learn(learner, make_rows("b", 2, [0, 3], keep={3}))
    assert teachers[0] is None and teachers[1] is None and teachers[2] is not None
    assert learner.model is not first and learner.model.num_classes == 3
    assert not any(p.requires_grad for p in teachers[2].parameters())


def test_joint_predicts_pending_classes_and_groups_them_on_arrival(make_rows):
    learner = ContinualLearner(TrainConfig.from_hyperparameters(dict(recipe="joint", **FAST)))
    _learn(learner, make_rows("a", 2, [0, 3], keep={0}))  # full labels also show class 3
    assert learner.groups == [[0]] and learner.pending == [3] and learner.model.num_classes == 2
    _learn(learner, make_rows("b", 2, [3, 0], keep={3}))
    assert learner.groups == [[0], [3]] and learner.pending == []
    assert len(learner.recipe.seen) == 4


def test_checkpoint_round_trip_predicts_identically(make_rows):
    rows = make_rows("a", 2, [0, 1], keep={0, 1})
    learner = ContinualLearner(TrainConfig.from_hyperparameters(dict(recipe="klingner", **FAST)))
    _learn(learner, rows)
    twin = ContinualLearner(TrainConfig.from_hyperparameters(dict(recipe="klingner", **FAST)))
    twin.load_state_dict(learner.state_dict())
    a = next(learner.predict(list(rows.x[:, 0])))
    b = next(twin.predict(list(rows.x[:, 0])))
    assert twin.groups == learner.groups
    assert (a.pred == b.pred).all() and (a.prefix_pred == b.prefix_pred).all()


def test_same_seed_same_weights(make_rows):
    rows = make_rows("a", 3, [0, 1], keep={0, 1})
    weights = []
    for _ in range(2):
        learner = ContinualLearner(TrainConfig.from_hyperparameters(dict(recipe="klingner", **FAST)))
        _learn(learner, rows)
        weights.append(learner.model.state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_dataloader_workers_change_nothing_but_the_process(make_rows):
    stages = [make_rows("a", 3, [0, 1], keep={0, 1}), make_rows("b", 3, [0, 3], keep={3})]  # 2nd: distillation
    weights, losses = [], []
    for workers in (0, 1):
        learner = ContinualLearner(TrainConfig.from_hyperparameters(dict(recipe="klingner", num_workers=workers, **FAST)))
        assert learner.num_workers == workers
        losses.append([_learn(learner, rows)["final_loss"] for rows in stages])
        weights.append(learner.model.state_dict())
    assert losses[0] == losses[1]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_cil_from_teacher_handles_stages_with_and_without_new_classes(make_rows):
    learner = ContinualLearner(TrainConfig.from_hyperparameters(dict(recipe="klingner", init_from_teacher=True, **FAST)))
    _learn(learner, make_rows("a", 1, [0, 1], keep={0, 1}))
    _learn(learner, make_rows("a2", 2, [0, 1], keep={0, 1}))  # nothing new: copy, no growth
    _learn(learner, make_rows("b", 2, [0, 3], keep={3}))
    assert learner.groups == [[0, 1], [3]] and learner.model.num_classes == 3


def _step_grad_norms(monkeypatch):
    """Record the global gradient norm every optimizer step sees."""
    from llseg.methods import engine as learner_module

    norms, original = [], learner_module.make_optimizer

    def make(*args, **kwargs):
        optimizer = original(*args, **kwargs)

        def spy(opt, *_):
            grads = [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]
            norms.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))))

        optimizer.register_step_pre_hook(spy)
        return optimizer

    monkeypatch.setattr(learner_module, "make_optimizer", make)
    return norms


def test_grad_clip_bounds_the_gradient_norm_of_every_step(make_rows, monkeypatch):
    rows = make_rows("a", 2, [0, 1], keep={0, 1})
    norms = _step_grad_norms(monkeypatch)
    _learn(ContinualLearner(TrainConfig.from_hyperparameters(dict(recipe="finetune", **FAST))), rows)
    assert max(norms) > 1e-3  # unclipped: the limit below binds
    norms.clear()
    clips = []
    original = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda *a, **k: clips.append(a[1]) or original(*a, **k))
    _learn(ContinualLearner(TrainConfig.from_hyperparameters(dict(recipe="finetune", grad_clip=1e-3, **FAST))), rows)
    assert norms and len(clips) == len(norms) and set(clips) == {1e-3}
    assert max(norms) <= 1e-3 * (1 + 1e-4)


def test_without_grad_clip_nothing_is_clipped(make_rows, monkeypatch):
    calls = []
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda *a, **k: calls.append(a))
    _learn(
        ContinualLearner(TrainConfig.from_hyperparameters(dict(recipe="finetune", **FAST))),
        make_rows("a", 2, [0, 1], keep={0, 1}),
    )
    assert calls == []


@pytest.mark.parametrize(("step0", "later"), [(None, 0.1), (0.5, 0.1)])
def test_grad_clip_incremental_replaces_grad_clip_from_step_one(make_rows, monkeypatch, step0, later):
    clips: list[tuple[int, float]] = []
    learner = ContinualLearner(TrainConfig.from_hyperparameters(
        dict(recipe="finetune", grad_clip=step0, grad_clip_incremental=later, **FAST)))
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda *a, **k: clips.append((len(learner.groups), a[1])))
    _learn(learner, make_rows("a", 2, [0, 1], keep={0, 1}))
    _learn(learner, make_rows("b", 2, [0, 3], keep={3}))
    first, second = [c for g, c in clips if g == 1], [c for g, c in clips if g == 2]
    assert first == ([] if step0 is None else [step0] * len(first)) and (step0 is None or first)
    assert second and set(second) == {later}


def test_eval_upsample_nearest_predicts_at_input_size_then_repeats(make_rows):
    """eval_upsample: nearest (Klingner's evaluation): scores at input_size (16x32) become 2x2 blocks
    of the 32x64 prediction; the default bilinear prediction is not blocky."""
    rows = make_rows("a", 2, [0, 5, 10], keep={0, 5, 10})
    preds = {}
    for mode in ("nearest", "bilinear"):
        settings = dict(recipe="finetune", input_size="16x32", eval_upsample=mode, **dict(FAST, epochs=1))
        learner = ContinualLearner(TrainConfig.from_hyperparameters(settings))
        _learn(learner, rows)
        preds[mode] = next(learner.predict([rows.x[0, 0]])).pred
    nearest = torch.from_numpy(preds["nearest"].astype("int64"))
    assert nearest.shape == (32, 64)
    assert torch.equal(nearest, nearest[::2, ::2].repeat_interleave(2, 0).repeat_interleave(2, 1))
    bilinear = torch.from_numpy(preds["bilinear"].astype("int64"))
    assert not torch.equal(bilinear, bilinear[::2, ::2].repeat_interleave(2, 0).repeat_interleave(2, 1))


def test_eval_crop_predicts_the_center_square_at_the_crop_size_and_scores_only_it(make_rows):
    """eval_crop: 16 on 32x64 images (MiB/PLOP/SSUL's resize + center crop): the model sees the
    centred 32x32 square resized to 16x16; columns outside it are 255 and evaluate() ignores them,
    so the scores equal those of labels whose outside pixels are 255."""
    import numpy as np

    from llseg.data.imageio import read_label_png
    from llseg.data.transforms import normalize, resize_pair, upsample_scores
    from llseg.metrics.incremental import IncrementalScorer

    rows = make_rows("a", 2, [0, 5, 10], keep={0, 5, 10})
    learner = ContinualLearner(TrainConfig.from_hyperparameters(dict(recipe="finetune", eval_crop=16, **dict(FAST, epochs=1))))
    _learn(learner, rows)
    image, label = rows.x[0, 0], rows.x[0, 1]
    record = next(learner.predict([image]))
    assert record.pred.shape == (32, 64)
    assert (record.pred[:, :16] == 255).all() and (record.pred[:, 48:] == 255).all()
    assert (record.group_pred[..., :16] == 255).all() and (record.prefix_pred[..., 48:] == 255).all()
    assert not (record.pred[:, 16:48] == 255).any()
    rgb = learner.cache.get("rgb", __import__("pathlib").Path(image))
    square = torch.from_numpy(rgb[:, 16:48].copy()).permute(2, 0, 1).float() / 255
    with torch.no_grad():
        small, _ = resize_pair(square, None, (16, 16))
        scores = upsample_scores(learner.class_scores(learner.model(normalize(small)[None])), (32, 32), mode="bilinear")
    expected = np.asarray(learner.classes)[scores.argmax(1)[0].numpy()]
    assert np.array_equal(record.pred[:, 16:48], expected)

    scored = learner.evaluate([image], [label])
    target = read_label_png(__import__("pathlib").Path(label))
    assert (target[:, :16] != 255).any()  # the outside holds labelled pixels that must not count
    reference = IncrementalScorer(learner.info.num_classes)
    inside = np.full_like(target, 255)
    inside[:, 16:48] = target[:, 16:48]
    reference.update(record, inside)
    assert reference.full.sum() == (inside != 255).sum() < (target != 255).sum()
    assert scored == reference.table()


def test_eval_crop_must_be_positive():
    import pytest

    from llseg.errors import ConfigError

    with pytest.raises(ConfigError, match="eval_crop must be a crop side"):
        TrainConfig.from_hyperparameters(dict(recipe="finetune", eval_crop=0))
