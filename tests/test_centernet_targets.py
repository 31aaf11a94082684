"""CenterNet target encoder: heatmap peaks, the TF OD API Gaussian radius, slots, ignored objects."""
import math
import types

import numpy as np
import pytest
import tensorflow as tf

from ssd_keras.families import get_family
from ssd_keras.families.centernet import CenterNetHead
from ssd_keras.families.centernet.targets import (encode_centernet_targets, gaussian_radius,
                                                  gaussian_sigma)

HEAD = CenterNetHead(max_objects=8)


def _config(image_size=(64, 96), num_classes=3, head=HEAD):
    # stand-in until DetectorConfig has ``head``: the encoder reads only these three
    return types.SimpleNamespace(image_size=image_size, num_classes=num_classes, head=head)


def _numpy_radius(h, w, o):
    """Direct transcription of CenterNet's ``gaussian_radius`` (root ``(-b + sqrt(d)) / 2``)."""
    def root(a, b, c):
        return (-b + math.sqrt(b * b - 4 * a * c)) / 2
    return min(root(1, -(h + w), w * h * (1 - o) / (1 + o)),
               root(4, -2 * (h + w), (1 - o) * w * h),
               root(4 * o, 2 * o * (w + h), (o - 1) * w * h))


def _encode(boxes, labels, config=None):
    config = config or _config()
    encode = get_family("centernet").target_encoder(config)
    return {k: v.numpy() for k, v in encode(tf.constant(boxes, tf.float32),
                                            tf.constant(labels, tf.int32)).items()}


def test_radius_matches_formula_and_tf_models_value():
    h = np.array([10.0, 3.0, 7.5, 40.0, 1.0], np.float32)
    w = np.array([5.0, 3.0, 2.0, 12.0, 9.0], np.float32)
    got = gaussian_radius(h, w, 0.7).numpy()
    want = [_numpy_radius(float(a), float(b), 0.7) for a, b in zip(h, w)]
    np.testing.assert_allclose(got, want, rtol=1e-5)
    # tensorflow/models' own check of this function (CenterNet version): (10, 5) at IoU 0.5
    assert gaussian_radius([10.0], [5.0], 0.5).numpy()[0] == pytest.approx(2.807764064, rel=1e-6)
    sigma = gaussian_sigma(h, w, 0.7).numpy()
    np.testing.assert_allclose(sigma, (2 * np.maximum(np.floor(want), 0) + 1) / 6, rtol=1e-6)


def test_centre_cell_is_exactly_one_and_gaussian_around_it():
    # input 64x96, stride 4 -> 16x24 grid; box 20x12 px at (40..60, 10..22)
    box = [40 / 96, 10 / 64, 60 / 96, 22 / 64]
    t = _encode([box], [2])
    hm = t["heatmap"]
    assert hm.shape == (16, 24, 3)
    cx, cy = (40 + 60) / 2 / 4, (10 + 22) / 2 / 4          # 12.5, 4.0 output px
    fy, fx = int(np.floor(cy)), int(np.floor(cx))
    assert hm[fy, fx, 1] == 1.0
    assert hm[..., 0].max() == 0.0 and hm[..., 2].max() == 0.0
    assert np.sum(hm == 1.0) == 1
    sigma = gaussian_sigma([3.0], [5.0], 0.7).numpy()[0]    # h, w in output px
    yy, xx = np.mgrid[0:16, 0:24]
    want = np.exp(-((yy - fy) ** 2 + (xx - fx) ** 2) / (2 * sigma ** 2))
    np.testing.assert_allclose(hm[..., 1], want, rtol=1e-5, atol=1e-7)
    # size (w, h) and offset (dx, dy) in output-stride pixels at the centre slot
    assert t["indices"][0] == fy * 24 + fx
    np.testing.assert_allclose(t["box_scale"][0], [5.0, 3.0], rtol=1e-6)
    np.testing.assert_allclose(t["box_offset"][0], [cx - fx, cy - fy], atol=1e-6)
    np.testing.assert_array_equal(t["mask"], [1] + [0] * 7)
    assert t["heatmap_weight"].min() == 1.0


def test_same_class_overlap_takes_the_max_and_classes_stay_apart():
    boxes = [[0.10, 0.10, 0.40, 0.50], [0.20, 0.15, 0.50, 0.55], [0.6, 0.6, 0.9, 0.9]]
    t = _encode(boxes, [1, 1, 3])
    single = [_encode([b], [lab])["heatmap"] for b, lab in zip(boxes, [1, 1, 3])]
    np.testing.assert_allclose(t["heatmap"], np.maximum.reduce(single), rtol=1e-6)
    assert np.sum(t["heatmap"][..., 0] == 1.0) == 2 and np.sum(t["heatmap"][..., 2] == 1.0) == 1


def test_ignored_objects_are_no_positive_and_black_out_their_cells():
    boxes = [[0.1, 0.1, 0.3, 0.3], [0.5, 0.5, 0.8, 0.9]]
    t = _encode(boxes, [1, -1])
    assert t["mask"].sum() == 1
    assert np.sum(t["heatmap"] == 1.0) == 1
    w = t["heatmap_weight"][..., 0]                       # 16 x 24 grid
    ys, xs = np.nonzero(w == 0)
    assert ys.min() >= 0.5 * 16 and ys.max() <= 0.9 * 16
    assert xs.min() >= 0.5 * 24 and xs.max() <= 0.8 * 24
    assert w[2, 4] == 1.0


def test_more_objects_than_slots_and_empty_images():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0.0, 0.8, (11, 2))
    boxes = np.concatenate([xy, xy + 0.15], 1)
    t = _encode(boxes, rng.integers(1, 4, 11))
    assert t["mask"].sum() == 8                            # max_objects slots
    assert np.sum(t["heatmap"] == 1.0) >= 9                # all peaks (two may share a cell)
    empty = _encode(np.zeros((0, 4)), np.zeros((0,)))
    assert empty["heatmap"].max() == 0 and empty["mask"].sum() == 0


def test_encoder_runs_in_tf_data_with_fixed_shapes():
    encode = get_family("centernet").target_encoder(_config(), image_size=(32, 48))
    ds = tf.data.Dataset.from_tensor_slices(tf.zeros((2,))).map(
        lambda _: encode(tf.constant([[0.1, 0.1, 0.5, 0.6]]), tf.constant([3]))).batch(2)
    batch = next(iter(ds))
    assert batch["heatmap"].shape == (2, 8, 12, 3)
    assert batch["box_scale"].shape == (2, 8, 2)
    with pytest.raises(ValueError, match="multiple of the output stride"):
        get_family("centernet").target_encoder(_config(), image_size=(30, 48))
