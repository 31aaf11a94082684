"""CenterNet losses against direct numpy formulas."""
import types

import numpy as np
import pytest
import tensorflow as tf

from ssd_keras.families import get_family
from ssd_keras.families.centernet import CenterNetHead

HEAD = CenterNetHead(max_objects=4)
CONFIG = types.SimpleNamespace(image_size=(32, 32), num_classes=2, head=HEAD)


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _batch():
    encode = get_family("centernet").target_encoder(CONFIG)
    a = encode(tf.constant([[0.1, 0.1, 0.5, 0.4], [0.5, 0.5, 0.9, 0.8]]), tf.constant([1, 2]))
    b = encode(tf.constant([[0.2, 0.3, 0.7, 0.9], [0.0, 0.0, 0.3, 0.3]]), tf.constant([2, -1]))
    return {k: tf.stack([a[k], b[k]]).numpy() for k in a}


def test_losses_match_numpy():
    y = _batch()
    rng = np.random.default_rng(1)
    pred = {"object_center": rng.normal(-1.0, 1.5, (2, 8, 8, 2)).astype(np.float32),
            "box_scale": rng.normal(2.0, 1.0, (2, 8, 8, 2)).astype(np.float32),
            "box_offset": rng.uniform(0, 1, (2, 8, 8, 2)).astype(np.float32)}
    got = get_family("centernet").loss({k: tf.constant(v) for k, v in y.items()},
                                       {k: tf.constant(v) for k, v in pred.items()}, CONFIG)
    n = y["mask"].sum()
    assert n == 3
    p = _sigmoid(pred["object_center"].astype(np.float64))
    t = y["heatmap"]
    pos = (t == 1) * (1 - p) ** 2 * np.log(p)
    neg = (t != 1) * (1 - t) ** 4 * p ** 2 * np.log(1 - p)
    focal = -np.sum((pos + neg) * y["heatmap_weight"]) / n
    assert float(got["object_center"]) == pytest.approx(focal, rel=1e-5)

    def l1(key):
        total = 0.0
        for i in range(2):
            flat = pred[key][i].reshape(-1, 2)
            for j in range(4):
                total += y["mask"][i, j] * np.abs(flat[y["indices"][i, j]] - y[key][i, j]).sum()
        return total / n

    assert float(got["box_scale"]) == pytest.approx(0.1 * l1("box_scale"), rel=1e-5)
    assert float(got["box_offset"]) == pytest.approx(1.0 * l1("box_offset"), rel=1e-5)
    # an explicit (e.g. all-reduced) normaliser replaces the local count
    halved = get_family("centernet").loss({k: tf.constant(v) for k, v in y.items()},
                                          {k: tf.constant(v) for k, v in pred.items()}, CONFIG,
                                          normalizer=2 * n)
    assert float(halved["box_offset"]) == pytest.approx(float(got["box_offset"]) / 2, rel=1e-6)
    assert float(get_family("centernet").loss_normalizer(y)) == 3.0


def test_perfect_prediction_has_small_loss_and_no_objects_divides_by_one():
    y = _batch()
    logits = np.where(y["heatmap"] == 1, 9.0, -9.0).astype(np.float32)
    pred = {"object_center": logits, "box_scale": np.zeros((2, 8, 8, 2), np.float32),
            "box_offset": np.zeros((2, 8, 8, 2), np.float32)}
    for i in range(2):
        for j in range(4):
            if y["mask"][i, j]:
                yy, xx = divmod(int(y["indices"][i, j]), 8)
                pred["box_scale"][i, yy, xx] = y["box_scale"][i, j]
                pred["box_offset"][i, yy, xx] = y["box_offset"][i, j]
    got = get_family("centernet").loss(y, pred, CONFIG)
    assert float(got["box_scale"]) == pytest.approx(0.0, abs=1e-6)
    assert float(got["box_offset"]) == pytest.approx(0.0, abs=1e-6)
    assert float(got["object_center"]) < 1e-2
    empty = {k: v * 0 for k, v in y.items()}
    zero = get_family("centernet").loss(empty, pred, CONFIG)
    assert np.isfinite(float(zero["object_center"])) and float(zero["box_scale"]) == 0.0
