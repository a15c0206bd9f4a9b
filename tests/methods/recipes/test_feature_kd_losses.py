"""IDEC's and LAG's loss components on hand-made tensors (docs/methods.md §3, §4), each against its
formula evaluated independently here (plain Python math)."""
from __future__ import annotations

import copy
import math

import pytest
import torch
from torch.testing import assert_close

from llseg.methods import losses
from llseg.methods.recipes import feature_kd, idec, lag, ssul
from llseg.models import create_model


def t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def softmax(xs):
    m = max(xs)
    e = [math.exp(x - m) for x in xs]
    return [v / sum(e) for v in e]


def close(actual: torch.Tensor, expected: float) -> None:
    assert_close(actual, torch.tensor(expected, dtype=actual.dtype), rtol=1e-5, atol=1e-6)


# two pixels (N=1, C=2, h=1, w=2): a = student, b = teacher
A = [[0.5, -1.0], [2.0, 0.0]]  # A[c][pixel]
B = [[1.0, 0.3], [-0.5, 0.2]]


def nchw(rows) -> torch.Tensor:
    return t(rows)[None, :, None, :]


# ---------------------------------------------------------------- feature distances (IDEC §3.1)

def test_kd_loss_is_mib_cross_entropy_with_sharpened_teacher():
    expected = 0.0
    for i in range(2):
        p = softmax([2.0 * B[c][i] for c in range(2)])
        log_q = [math.log(q) for q in softmax([A[c][i] for c in range(2)])]
        expected += -sum(p[c] * log_q[c] for c in range(2)) / 2  # −(1/C) Σ_c
    close(feature_kd.feature_distance(nchw(A), nchw(B), "KD_loss"), expected / 2)  # mean over pixels
    # a cross-entropy: identical features do not give 0
    same = 0.0
    for i in range(2):
        p, q = softmax([2.0 * A[c][i] for c in range(2)]), softmax([A[c][i] for c in range(2)])
        same += -sum(p[c] * math.log(q[c]) for c in range(2)) / 2
    close(feature_kd.feature_distance(nchw(A), nchw(A), "KD_loss"), same / 2)
    assert same > 0


def test_kldiv_l1_l2_distances_and_zero_on_identical_features():
    kl = 0.0
    for i in range(2):
        p, q = softmax([B[c][i] for c in range(2)]), softmax([A[c][i] for c in range(2)])
        kl += sum(p[c] * math.log(p[c] / q[c]) for c in range(2))
    close(feature_kd.feature_distance(nchw(A), nchw(B), "KLDiv_loss"), kl / 2)
    diffs = [A[c][i] - B[c][i] for c in range(2) for i in range(2)]
    close(feature_kd.feature_distance(nchw(A), nchw(B), "L1_loss"), sum(abs(d) for d in diffs) / 4)
    # a true mean squared error (the released "L2_loss" is BCE, undefined for features > 1)
    close(feature_kd.feature_distance(nchw(A), nchw(B), "L2_loss"), sum(d * d for d in diffs) / 4)
    for kind in ("KLDiv_loss", "L1_loss", "L2_loss"):
        assert feature_kd.feature_distance(nchw(A), nchw(A), kind).item() == pytest.approx(0.0, abs=1e-7)
    # KL over channel softmax: a per-pixel constant shift changes nothing
    assert feature_kd.feature_distance(nchw(A) + 3.0, nchw(A), "KLDiv_loss").item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="KD_loss_type"):
        feature_kd.feature_distance(nchw(A), nchw(B), "L3_loss")


def test_teacher_is_detached_and_fp16_is_computed_in_fp32():
    a = nchw(A).requires_grad_(True)
    b = nchw(B).requires_grad_(True)
    feature_kd.feature_distance(a, b, "L2_loss").backward()
    assert a.grad is not None and b.grad is None
    half = feature_kd.feature_distance(nchw(A).half(), nchw(B).half(), "L1_loss")
    assert half.dtype == torch.float32


# ---------------------------------------------------------------- DADA (IDEC §3.3)

def tap_dicts(offsets: dict[str, float]):
    """Teacher taps of ones, student taps shifted by ``offsets``: L1 distance of tap k = |offset|."""
    teacher = {k: torch.ones(2, 3, 2, 2) for k in feature_kd.DADA_TAPS}
    student = {k: teacher[k] + offsets[k] for k in feature_kd.DADA_TAPS}
    return student, teacher


def test_dada_layer_weights_and_decay():
    student, teacher = tap_dicts({"aspp_layer1": 1.0, "aspp_layer2": 2.0, "aspp_layer3": 3.0, "aspp": 4.0})
    kw = dict(KD_loss_type="L1_loss", use_KD_layer_weight=True, lamb=0.9, epoch=3, epochs=30)
    decay = 0.9 ** (3 / 30)
    close(feature_kd.dada_loss(student, teacher, **kw), decay * (0.5 * 1 + 1.0 * 2 + 2.0 * 3) + 1.0 * 4)
    assert feature_kd.layer_decay(0.9, 30, 30) == pytest.approx(0.9)  # last epoch (1-based): λ
    close(feature_kd.dada_loss(student, teacher, **{**kw, "lamb": 1.0}), 0.5 * 1 + 2 + 2 * 3 + 4)  # IDEC: no decay
    # unweighted: the plain sum of all four (not the released l1 + 2·l3 + out = 11)
    close(feature_kd.dada_loss(student, teacher, **{**kw, "use_KD_layer_weight": False}), 1 + 2 + 3 + 4)
    with pytest.raises(KeyError, match="aspp_taps=True"):
        feature_kd.dada_loss({"aspp": student["aspp"]}, teacher, **kw)
    with pytest.raises(ValueError, match="epochs"):
        feature_kd.layer_decay(0.9, 0, 0)


def test_dada_is_zero_on_identical_features():
    student, teacher = tap_dicts({k: 0.0 for k in feature_kd.DADA_TAPS})
    for kind in ("KLDiv_loss", "L1_loss", "L2_loss"):
        out = feature_kd.dada_loss(student, teacher, KD_loss_type=kind, use_KD_layer_weight=True, lamb=0.9,
                             epoch=1, epochs=2)
        assert out.item() == pytest.approx(0.0, abs=1e-7)


# ---------------------------------------------------------------- ARCL (IDEC §3.3)

# one image, C = 2, h = 1, w = 3; old-model regions [1, 1, 2]
S3 = [[1.0, 2.0, 1.8], [0.0, 1.0, 0.6]]  # S3[c][pixel], student
T3 = [[1.5, 2.5, 1.0], [0.5, 0.0, 2.0]]  # teacher
REGIONS = torch.tensor([[[1, 1, 2]]])


def mean_over(x, pixels):
    return [sum(x[c][i] for i in pixels) / len(pixels) for c in range(2)]


def test_arcl_region_means_triplet():
    expected = []
    for inside, outside in (([0, 1], [2]), ([2], [0, 1])):  # class 1, class 2
        a, p, q = mean_over(T3, inside), mean_over(S3, inside), mean_over(S3, outside)
        expected.append(max(0.0, math.dist(a, p) - math.dist(a, q) + 1.0))
    assert expected[0] > 0 and expected[1] > 0
    close(idec.arcl_loss(nchw(S3), nchw(T3), REGIONS, [1, 2]), sum(expected) / 2)
    close(idec.arcl_loss(nchw(S3), nchw(T3), REGIONS, [1, 2, 5]), sum(expected) / 2)  # class 5 absent: skipped
    close(idec.arcl_loss(nchw(S3), nchw(T3), REGIONS, [1], margin=0.0), max(0.0, expected[0] - 1.0))


def test_arcl_masked_flattened_triplet():
    # a = T·M, p = S·M, q = S·(1 − M) flattened over C·w
    inside = [0, 1]
    d_pos = math.sqrt(sum((T3[c][i] - S3[c][i]) ** 2 for c in range(2) for i in inside))
    d_neg = math.sqrt(sum(T3[c][i] ** 2 for c in range(2) for i in inside) + sum(S3[c][2] ** 2 for c in range(2)))
    close(idec.arcl_loss(nchw(S3), nchw(T3), REGIONS, [1], embedding="masked"), max(0.0, d_pos - d_neg + 1.0))
    # a region covering the whole image still has a (zero) negative in the masked form
    whole = torch.ones(1, 1, 3, dtype=torch.long)
    d_pos = math.sqrt(sum((T3[c][i] - S3[c][i]) ** 2 for c in range(2) for i in range(3)))
    d_neg = math.sqrt(sum(T3[c][i] ** 2 for c in range(2) for i in range(3)))
    close(idec.arcl_loss(nchw(S3), nchw(T3), whole, [1], embedding="masked"), max(0.0, d_pos - d_neg + 1.0))
    with pytest.raises(ValueError, match="embedding"):
        idec.arcl_loss(nchw(S3), nchw(T3), REGIONS, [1], embedding="max")


def test_arcl_edge_cases():
    s = nchw(S3).requires_grad_(True)
    # no anchors: absent classes, no classes, or (mean form) a region with no outside pixels
    for regions, classes in ((REGIONS, [7]), (REGIONS, []), (torch.ones(1, 1, 3, dtype=torch.long), [1])):
        out = idec.arcl_loss(s, nchw(T3), regions, classes)
        assert out.item() == 0.0 and out.requires_grad  # a graph-connected zero
    # identical features: d_pos = 0, so the loss is the hinge max(0, 1 − d_neg) (finite gradient)
    same = idec.arcl_loss(s, nchw(S3), REGIONS, [1])
    a, q = mean_over(S3, [0, 1]), mean_over(S3, [2])
    close(same, max(0.0, 1.0 - math.dist(a, q)))
    same.backward()
    assert torch.isfinite(s.grad).all()


def test_idec_loss_assembles_dada_and_arcl():
    torch.manual_seed(0)
    teacher = {k: torch.rand(2, 4, 3, 3) for k in feature_kd.DADA_TAPS}
    student = {k: v + 0.1 * torch.randn_like(v) for k, v in teacher.items()}
    teacher["logits_lowres"] = torch.randn(2, 4, 3, 3)  # unknown, bg, 2 old foreground channels
    kw = dict(KD_loss_type="KD_loss", use_KD_layer_weight=True, lamb=0.9, epoch=2, epochs=4)
    out = idec.idec_loss(student, teacher, **kw)
    assert set(out) == {"dada", "total"}
    assert_close(out["total"], feature_kd.dada_loss(student, teacher, **kw))
    out = idec.idec_loss(student, teacher, contrastive_learning=True, lambda_arcl=0.5, **kw)
    arcl = idec.arcl_loss(student["aspp"], teacher["aspp"], teacher["logits_lowres"].argmax(1), [2, 3])
    assert_close(out["arcl"], arcl)
    assert_close(out["total"], out["dada"] + 0.5 * arcl)
    assert idec.old_foreground(4, unknown=True) == [2, 3] and idec.old_foreground(4, unknown=False) == [1, 2, 3]


# ---------------------------------------------------------------- LAG §4.2

def test_uncertainty_pseudo_labels_need_a_top2_margin():
    # softmax over [unknown, bg, old 2, old 3]; all pixels are background (1)
    target = torch.tensor([[[1, 1, 1]]])
    logits = torch.full((1, 4, 1, 3), -9.0)
    logits[0, 2, 0, 0] = 5.0  # p(2) ≈ 1: margin ≈ 1 -> taken
    logits[0, 2, 0, 1], logits[0, 3, 0, 1] = 5.0, 3.6  # p = .80/.20: margin .60
    logits[0, 2, 0, 2], logits[0, 3, 0, 2] = 2.0, 1.2  # p = .69/.31 (above τ = 0.6): margin .38
    probs = torch.softmax(logits, 1)[0, :, 0]
    top = probs.topk(2, dim=0).values
    margins = (top[0] - top[1]).tolist()
    assert margins[1] == pytest.approx(0.6, abs=0.01) and margins[2] == pytest.approx(0.38, abs=0.01)
    kw = dict(loss_type="ce", threshold=0.6, unknown=True)
    assert lag.uncertainty_pseudo_label(target, logits, margin=0.2, **kw).tolist() == [[[2, 2, 2]]]
    assert lag.uncertainty_pseudo_label(target, logits, margin=0.5, **kw).tolist() == [[[2, 2, 1]]]
    assert lag.uncertainty_pseudo_label(target, logits, margin=0.7, **kw).tolist() == [[[2, 1, 1]]]
    # margin 0 is SSUL's rule; the class index plays no part (the released (1 − m)·ĉ rule would)
    assert torch.equal(lag.uncertainty_pseudo_label(target, logits, margin=0.0, **kw),
                       ssul.pseudo_label(target, logits, **kw))
    swapped = logits[:, [0, 1, 3, 2]]
    assert lag.uncertainty_pseudo_label(target, swapped, margin=0.5, **kw).tolist() == [[[3, 3, 1]]]


def test_downsample_labels_is_nearest():
    target = torch.tensor([[[1, 1, 2, 2], [1, 1, 2, 2], [255, 255, 3, 3], [255, 255, 3, 3]]])
    assert lag.downsample_labels(target, (2, 2)).tolist() == [[[1, 2], [255, 3]]]
    assert lag.downsample_labels(target, (4, 4)) is target


def test_channel_stability_is_a_spatial_kl_per_channel():
    s = t([[[[0.0, 1.0]], [[2.0, 2.0]], [[0.0, 3.0]]]])  # N=1, C=3, h=1, w=2
    te = t([[[[0.0, 0.5]], [[2.0, 2.0]], [[0.0, 0.0]]]])
    expected = []
    for c in range(3):
        p, q = softmax(te[0, c, 0].tolist()), softmax(s[0, c, 0].tolist())
        expected.append(sum(p[i] * math.log(p[i] / q[i]) for i in range(2)))
    assert_close(lag.channel_stability(s, te), t(expected))
    assert expected[1] == pytest.approx(0.0)  # channel 1 did not move
    assert_close(lag.channel_stability(te, te), torch.zeros(3))
    two = torch.cat([s, te])  # batch of 2: mean over images
    assert_close(lag.channel_stability(two, torch.cat([te, te])), t(expected) / 2)


def test_split_channels_rho():
    drift = t([0.3, 0.0, 0.2, 0.0])
    si, ss = lag.split_channels(drift, 0.5)
    assert si.tolist() == [1, 3] and ss.tolist() == [0, 2]  # the two stable channels (ties: lower index)
    si, ss = lag.split_channels(drift, 0.25)
    assert si.tolist() == [1] and ss.tolist() == [0, 2, 3]
    si, ss = lag.split_channels(drift, 1.0)
    assert si.tolist() == [0, 1, 2, 3] and ss.numel() == 0
    si, ss = lag.split_channels(drift, 0.0)
    assert si.numel() == 0 and ss.tolist() == [0, 1, 2, 3]
    assert lag.split_channels(torch.zeros(100), 0.29)[0].numel() == 29  # ⌊ρC⌋ without float trouble
    with pytest.raises(ValueError, match="rho"):
        lag.split_channels(drift, 1.5)


def test_class_prototypes():
    feats = t([[[[1.0, 3.0, 5.0]], [[2.0, 4.0, 6.0]]]])  # N=1, C=2, h=1, w=3
    labels = torch.tensor([[[0, 0, 255]]])
    protos, present = lag.class_prototypes(feats, labels, 3)
    assert_close(protos, t([[2.0, 3.0], [0.0, 0.0], [0.0, 0.0]]))
    assert present.tolist() == [True, False, False]
    sums, counts = lag.prototype_sums(feats, torch.tensor([[[0, 2, 1]]]), 2)  # id 2 >= K: ignored
    assert_close(sums, t([[1.0, 2.0], [5.0, 6.0]])) and assert_close(counts, t([1.0, 1.0]))


def test_spm_is_a_pixel_to_prototype_contrastive_loss():
    f = [[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]]  # f[c][pixel]; pixels labelled 0, 2, 255
    labels = torch.tensor([[[0, 2, 255]]])
    anchors = t([[2.0, 0.5], [9.0, 9.0], [1.0, 1.0]])
    valid = torch.tensor([True, False, True])  # class 1 has no anchor: not in the denominator
    tau = 0.1

    def cos(u, v):
        return sum(x * y for x, y in zip(u, v)) / (math.hypot(*u) * math.hypot(*v))

    expected = 0.0
    for i, y in ((0, 0), (1, 2)):
        fi = [f[0][i], f[1][i]]
        logits = {k: cos(fi, anchors[k].tolist()) / tau for k in (0, 2)}
        expected += -(logits[y] - math.log(sum(math.exp(v) for v in logits.values())))
    close(lag.spm_loss(nchw(f), labels, anchors, valid, temperature=tau), expected / 2)
    # a pixel whose class has no anchor is left out; no pixel or no SI channel -> 0
    close(lag.spm_loss(nchw(f), torch.tensor([[[0, 1, 255]]]), anchors, valid, temperature=tau),
          -(cos([1, 0], [2, 0.5]) / tau - math.log(math.exp(cos([1, 0], [2, 0.5]) / tau)
                                                   + math.exp(cos([1, 0], [1, 1]) / tau))))
    assert lag.spm_loss(nchw(f), torch.full((1, 1, 3), 255), anchors, valid).item() == 0.0
    assert lag.spm_loss(torch.zeros(1, 0, 1, 3), labels, anchors[:, :0], valid).item() == 0.0
    # a pixel with a zero feature (all SI channels ReLU'd away) has no direction: left out, finite gradient
    dead = nchw([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]]).requires_grad_()  # pixel 1 (class 2) is zero
    loss = lag.spm_loss(dead, labels, anchors, valid, temperature=tau)
    close(loss, -(cos([1, 0], [2, 0.5]) / tau - math.log(math.exp(cos([1, 0], [2, 0.5]) / tau)
                                                          + math.exp(cos([1, 0], [1, 1]) / tau))))
    loss.backward()
    assert torch.isfinite(dead.grad).all() and dead.grad[..., 1].abs().max() == 0
    assert lag.spm_loss(torch.zeros(1, 2, 1, 3), labels, anchors, valid).item() == 0.0


def test_sfp_preserves_global_and_class_pooled_ss_features():
    labels = torch.tensor([[[1, 1, 4]]])
    g = [sum(S3[c]) / 3 - sum(T3[c]) / 3 for c in range(2)]
    expected = sum(v * v for v in g) / 2
    cls = 0.0
    for pixels in ([0, 1], [2]):
        d = [a - b for a, b in zip(mean_over(S3, pixels), mean_over(T3, pixels))]
        cls += sum(v * v for v in d) / 2
    close(lag.sfp_loss(nchw(S3), nchw(T3), labels), expected + cls / 2)
    close(lag.sfp_loss(nchw(S3), nchw(T3), torch.full((1, 1, 3), 255)), expected)  # no class region: global only
    assert lag.sfp_loss(nchw(S3), nchw(S3), labels).item() == 0.0
    assert lag.sfp_loss(torch.zeros(1, 0, 1, 3), torch.zeros(1, 0, 1, 3), labels).item() == 0.0  # ρ = 1


def normalise(v):
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


def test_dcl_positive_out_of_the_denominator():
    torch.manual_seed(1)
    new, old = torch.randn(3, 2, 2, 2), torch.randn(3, 2, 2, 2)
    z = [normalise(new[n].flatten().tolist()) for n in range(3)]
    zo = [normalise(old[n].flatten().tolist()) for n in range(3)]

    def s(u, v):
        return sum(x * y for x, y in zip(u, v)) / 0.5

    expected = 0.0
    for n in range(3):
        negatives = [math.exp(s(z[n], z[m])) + math.exp(s(z[n], zo[m])) for m in range(3) if m != n]
        expected += -s(z[n], zo[n]) + math.log(sum(negatives))
    close(lag.dcl_loss(new, old), expected / 3)
    # batch of 1: no negatives, only the alignment term −cos/τ; batch 0: 0
    close(lag.dcl_loss(new[:1], old[:1]), -s(z[0], zo[0]))
    close(lag.dcl_loss(new[:1], new[:1]), -1.0 / 0.5)
    assert lag.dcl_loss(new[:0], old[:0]).item() == 0.0


def test_nsc_relevance_consistency():
    directions = t([[3.0, 4.0]])  # unit direction (0.6, 0.8)
    rel = lag.class_relevance(nchw(S3), directions)
    assert_close(rel, t([[[[0.6 * S3[0][i] + 0.8 * S3[1][i] for i in range(3)]]]]))
    diffs = [0.6 * (S3[0][i] - T3[0][i]) + 0.8 * (S3[1][i] - T3[1][i]) for i in range(3)]
    close(lag.nsc_loss(nchw(S3), nchw(T3), directions), sum(d * d for d in diffs) / 3)
    assert lag.nsc_loss(nchw(S3), nchw(S3), directions).item() == 0.0
    assert lag.nsc_loss(nchw(S3), nchw(T3), torch.zeros(0, 2)).item() == 0.0


def lag_inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    teacher = {k: torch.rand(2, 6, 4, 4, generator=g) for k in feature_kd.DADA_TAPS}
    student = {k: (v + 0.2 * torch.randn(v.shape, generator=g)).relu() for k, v in teacher.items()}
    teacher["logits_lowres"] = torch.randn(2, 3, 4, 4, generator=g)  # C_old = 3: unknown, bg, class 2
    target = torch.randint(0, 5, (2, 8, 8), generator=g)  # ids 3, 4 are new classes
    target[:, :2] = 255
    return student, teacher, target


def test_lag_loss_assembles_the_components():
    student, teacher, target = lag_inputs()
    kw = dict(epoch=1, epochs=3, KD_loss_type="L2_loss", use_KD_layer_weight=True, lamb=0.9, rho=0.5,
              lambda_kd=0.7, lambda_dcl=0.3, lambda_spm=0.2, lambda_sfp=0.4, lambda_nsc=0.6)
    out = lag.lag_loss(student, teacher, target, **kw)
    s, te = student["aspp"], teacher["aspp"]
    labels = lag.downsample_labels(target, (4, 4))
    si, ss = lag.split_channels(lag.channel_stability(s, te), 0.5)
    assert si.numel() == ss.numel() == 3
    old, old_valid = lag.class_prototypes(te, labels, 3)
    anchors, valid = lag.class_prototypes(s, labels, 5)
    anchors[:3][old_valid] = old[old_valid]  # old classes: the teacher's prototypes
    valid[:3] |= old_valid
    expected = {
        "kd": feature_kd.dada_loss(student, teacher, KD_loss_type="L2_loss", use_KD_layer_weight=True, lamb=0.9,
                             epoch=1, epochs=3),
        "dcl": lag.dcl_loss(s, te),
        "spm": lag.spm_loss(s[:, si], labels, anchors[:, si], valid),
        "sfp": lag.sfp_loss(s[:, ss], te[:, ss], labels),
        "nsc": lag.nsc_loss(s, te, old[old_valid]),
    }
    for k, v in expected.items():
        assert_close(out[k], v)
        assert v.item() > 0
    assert_close(out["total"], 0.7 * expected["kd"] + 0.3 * expected["dcl"] + 0.2 * expected["spm"]
                 + 0.4 * expected["sfp"] + 0.6 * expected["nsc"])
    # AMP features (fp16) are computed in fp32
    half = lag.lag_loss({k: v.half() for k, v in student.items()}, {k: v.half() for k, v in teacher.items()},
                        target, **kw)
    assert half["total"].dtype == torch.float32
    assert_close(half["total"], out["total"], rtol=1e-2, atol=1e-3)
    # determinism: same inputs, bit-identical terms
    again = lag.lag_loss(student, teacher, target, **kw)
    assert all(torch.equal(out[k], again[k]) for k in out)
    # switched-off terms are 0; ρ = 1 leaves no sample-specific channel
    off = lag.lag_loss(student, teacher, target, **{**kw, "lambda_spm": 0.0, "lambda_nsc": 0.0, "rho": 1.0})
    assert off["spm"].item() == off["nsc"].item() == off["sfp"].item() == 0.0
    no_dcl = lag.lag_loss(student, teacher, target, **kw, feature_decoupling=False)
    assert no_dcl["dcl"].item() == 0.0
    assert_close(no_dcl["total"], out["total"] - 0.3 * expected["dcl"])


def test_lag_loss_uses_given_old_prototypes_and_checks_their_shape():
    student, teacher, target = lag_inputs(1)
    bank = torch.rand(3, 6)
    valid = torch.tensor([True, True, False])
    kw = dict(epoch=1, epochs=1, rho=1.0, lambda_spm=1.0, lambda_nsc=1.0)
    out = lag.lag_loss(student, teacher, target, old_prototypes=(bank, valid), **kw)
    assert_close(out["nsc"], lag.nsc_loss(student["aspp"], teacher["aspp"], bank[:2]))
    labels = lag.downsample_labels(target, (4, 4))
    anchors, present = lag.class_prototypes(student["aspp"], labels, 5)
    anchors[:2], present[:2] = bank[:2], True
    assert_close(out["spm"], lag.spm_loss(student["aspp"], labels, anchors, present))
    with pytest.raises(ValueError, match="old_prototypes"):
        lag.lag_loss(student, teacher, target, old_prototypes=(bank[:2], valid[:2]), **kw)


def test_lag_loss_on_identical_features():
    student, teacher, target = lag_inputs(2)
    out = lag.lag_loss(teacher, teacher, target, epoch=1, epochs=1, KD_loss_type="L1_loss", rho=0.5)
    for k in ("kd", "sfp", "nsc"):
        assert out[k].item() == pytest.approx(0.0, abs=1e-7)
    # the contrastive terms are not distances: DCL keeps its negatives, −1/τ + log(2·exp(cos(z_1, z_2)/τ))
    z = [normalise(teacher["aspp"][i].flatten().tolist()) for i in range(2)]
    cos = sum(a * b for a, b in zip(*z))
    close(out["dcl"], -2.0 + math.log(2.0) + 2.0 * cos)
    assert out["spm"].item() > 0


# ---------------------------------------------------------------- the kd_on_frozen contract

@pytest.fixture(scope="module")
def tapped_models():
    torch.manual_seed(0)
    teacher = create_model("deeplabv3_mobilenet_v3_large", num_classes=3, head="per_step", unknown=True,
                           aspp_taps=True)
    student = copy.deepcopy(teacher)
    student.add_classes(2)
    with torch.no_grad():  # let the student's body drift from the teacher's
        for p in student.aspp.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return student.eval(), teacher.eval()


def _aux_losses(student, teacher, image, target):
    feats = student.forward_features(image)
    with torch.no_grad():
        old = teacher.forward_features(image)
    aux = (idec.idec_loss(feats, old, epoch=1, epochs=2, contrastive_learning=True)["total"]
           + lag.lag_loss(feats, old, target, epoch=1, epochs=2, rho=0.5)["total"])
    return feats, aux


@pytest.mark.parametrize("frozen", [True, False])
def test_losses_train_the_body_only_when_it_is_trainable(tapped_models, frozen):
    student, teacher = tapped_models
    g = torch.Generator().manual_seed(0)
    image = torch.randn(2, 3, 64, 64, generator=g)
    target = torch.randint(0, 6, (2, 64, 64), generator=g)
    body = [p for m in (student.backbone, student.aspp, student.aspp_taps) for p in m.parameters()]
    heads = list(student.classifier.parameters())
    for p in body:
        p.requires_grad_(not frozen)
    try:
        feats, aux = _aux_losses(student, teacher, image, target)
        bce = losses.bce_with_ignore(feats["logits"], target)
        head_grads = torch.autograd.grad(bce, heads, retain_graph=True)
        assert aux.item() > 0
        if frozen:  # the released setting: no graph, nothing added to the heads' gradient
            assert not aux.requires_grad
            with_aux = torch.autograd.grad(bce + aux, heads)
            assert all(torch.equal(a, b) for a, b in zip(head_grads, with_aux))
        else:
            assert aux.requires_grad
            grads = torch.autograd.grad(aux, body + heads, allow_unused=True)
            body_grads, aux_head_grads = grads[: len(body)], grads[len(body):]
            assert all(gr is None for gr in aux_head_grads)  # heads never see these terms
            assert sum(gr.abs().sum().item() for gr in body_grads if gr is not None) > 0
            for name in ("aspp", "aspp_taps"):  # main ASPP and every tap receive gradient
                params = list(getattr(student, name).parameters())
                got = [gr for p, gr in zip(body, body_grads) if any(p is q for q in params)]
                assert any(gr is not None and gr.abs().sum() > 0 for gr in got)
    finally:
        for p in body:
            p.requires_grad_(True)
