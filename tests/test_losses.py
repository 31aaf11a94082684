"""SSD softmax loss with hard negative mining, and the sigmoid focal loss."""
import numpy as np
import pytest
from keras import ops

from ssd_keras.families.ssd.losses import hard_negative_mask, sigmoid_focal, sigmoid_focal_loss, ssd_softmax_loss


def random_batch(rng, b=3, n=50, c=5, positives=(4, 0, 20)):
    labels = np.zeros((b, n), np.int32)
    for i, p in enumerate(positives):
        idx = rng.choice(n, p, replace=False)
        labels[i, idx] = rng.integers(1, c, p)
    y_true = {"labels": labels, "boxes": rng.normal(size=(b, n, 4)).astype(np.float32)}
    y_pred = {"classification": rng.normal(size=(b, n, c)).astype(np.float32),
              "regression": rng.normal(size=(b, n, 4)).astype(np.float32)}
    return y_true, y_pred


def test_hard_negative_count_per_image():
    rng = np.random.default_rng(0)
    y_true, y_pred = random_batch(rng)
    labels = y_true["labels"]
    neg_loss = rng.normal(size=labels.shape).astype(np.float32)
    pos = (labels > 0).sum(1)
    mask = np.asarray(hard_negative_mask(neg_loss, labels == 0, pos, 3.0))
    for i in range(len(labels)):
        n_neg = (labels[i] == 0).sum()
        assert mask[i].sum() == min(3 * pos[i], n_neg)
        assert not mask[i][labels[i] > 0].any()
        # the chosen ones are the hardest negatives
        chosen = neg_loss[i][mask[i]]
        others = neg_loss[i][(labels[i] == 0) & ~mask[i]]
        if len(chosen) and len(others):
            assert chosen.min() >= others.max()


def test_softmax_loss_matches_direct_computation():
    rng = np.random.default_rng(1)
    y_true, y_pred = random_batch(rng)
    out = {k: float(v) for k, v in ssd_softmax_loss(y_true, y_pred, 3.0, 1.0).items()}
    logits, labels = y_pred["classification"].astype(np.float64), y_true["labels"]
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    ce = -np.take_along_axis(logp, labels[..., None], -1)[..., 0]
    cls = loc = 0.0
    for i in range(len(labels)):
        pos = labels[i] > 0
        neg = np.where(labels[i] == 0)[0]
        k = min(3 * pos.sum(), len(neg))
        hardest = neg[np.argsort(-ce[i][neg], kind="stable")[:k]]
        cls += ce[i][pos].sum() + ce[i][hardest].sum()
        d = np.abs(y_pred["regression"][i][pos] - y_true["boxes"][i][pos])
        loc += np.where(d < 1, 0.5 * d * d, d - 0.5).sum()
    npos = (labels > 0).sum()
    assert out["classification"] == pytest.approx(cls / npos, rel=1e-5)
    assert out["localization"] == pytest.approx(loc / npos, rel=1e-5)


def test_finite_loss_without_objects():
    rng = np.random.default_rng(2)
    y_true, y_pred = random_batch(rng, positives=(0, 0, 0))
    for fn in (ssd_softmax_loss, sigmoid_focal_loss):
        parts = fn(y_true, y_pred)
        for v in parts.values():
            assert np.isfinite(float(v))
    assert float(ssd_softmax_loss(y_true, y_pred)["localization"]) == 0.0
    # focal loss: an all-negative image still trains its negatives
    assert float(sigmoid_focal_loss(y_true, y_pred)["classification"]) > 0


def test_focal_loss_against_formula():
    rng = np.random.default_rng(3)
    x = rng.normal(scale=3, size=(4, 7)).astype(np.float32)
    t = (rng.uniform(size=(4, 7)) > 0.7).astype(np.float32)
    alpha, gamma = 0.25, 2.0
    p = 1 / (1 + np.exp(-x.astype(np.float64)))
    direct = np.where(t == 1, -alpha * (1 - p) ** gamma * np.log(p),
                      -(1 - alpha) * p ** gamma * np.log(1 - p))
    np.testing.assert_allclose(np.asarray(sigmoid_focal(ops.convert_to_tensor(x), t, alpha, gamma)),
                               direct, rtol=1e-4, atol=1e-6)
    # extreme logits stay finite
    assert np.isfinite(np.asarray(sigmoid_focal(ops.convert_to_tensor(np.array([[-80.0, 80.0]], np.float32)),
                                                np.array([[1.0, 0.0]], np.float32)))).all()


def test_focal_loss_ignores_label_minus_one():
    rng = np.random.default_rng(4)
    y_true, y_pred = random_batch(rng, c=4)
    base = float(sigmoid_focal_loss(y_true, y_pred)["classification"])
    y2 = {"labels": y_true["labels"].copy(), "boxes": y_true["boxes"]}
    y2["labels"][1, :10] = -1          # image 1 has no positives: ignore 10 negatives
    assert float(sigmoid_focal_loss(y2, y_pred)["classification"]) < base
