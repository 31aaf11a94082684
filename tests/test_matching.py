"""Target assignment and the box coder."""
import numpy as np
import pytest
import tensorflow as tf

from ssd_keras import presets
from ssd_keras.boxes import decode_boxes, encode_boxes, pairwise_iou, validate_boxes
from ssd_keras.families.ssd.matching import encode_targets, encode_targets_for_config


def corners(a):
    return np.concatenate([a[:, :2] - a[:, 2:] / 2, a[:, :2] + a[:, 2:] / 2], 1)


def np_iou(a, b):
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), -1)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], -1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None] - inter)


@pytest.fixture(scope="module")
def config():
    return presets.get("ssd300_voc")


def test_encode_decode_round_trip(config):
    rng = np.random.default_rng(0)
    anchors = config.anchors()
    xy = rng.uniform(0, 0.7, (len(anchors), 2))
    gt = np.concatenate([xy, xy + rng.uniform(0.01, 0.3, (len(anchors), 2))], 1).astype(np.float32)
    back = decode_boxes(encode_boxes(gt, anchors, config.variances), anchors, config.variances)
    np.testing.assert_allclose(back.numpy(), gt, atol=1e-5)


def test_matching_rules(config):
    anchors = config.anchors()
    gt = np.array([[0.1, 0.1, 0.45, 0.5], [0.5, 0.52, 0.9, 0.95], [0.47, 0.47, 0.49, 0.50]], np.float32)
    labels = np.array([3, 7, 12], np.int32)
    t = encode_targets(gt, labels, anchors)
    lab = t["labels"].numpy()
    iou = np_iou(gt.astype(np.float64), corners(anchors.astype(np.float64)))
    best = iou.max(0)
    # every anchor with IoU >= 0.5 is positive with the label of its best box
    strong = best >= 0.5
    assert np.all(lab[strong] == labels[iou.argmax(0)[strong]])
    # every box has at least one anchor, even the tiny one far below 0.5 IoU
    for k, l in enumerate(labels):
        assert (lab == l).sum() >= 1
    assert iou[2].max() < 0.5 and (lab == 12).sum() == 1
    assert iou[2][lab == 12][0] == pytest.approx(iou[2].max())
    # everything else is background; no ignored anchors without a negative threshold
    assert set(np.unique(lab)) == {0, 3, 7, 12}
    # positives decode back to their box
    dec = decode_boxes(t["boxes"], anchors).numpy()
    for k, l in enumerate(labels):
        np.testing.assert_allclose(dec[lab == l], np.repeat(gt[k:k + 1], (lab == l).sum(), 0), atol=1e-5)
    assert np.all(t["boxes"].numpy()[lab == 0] == 0)


def test_bipartite_is_one_to_one():
    # two identical boxes compete for the same best anchor: each must get its own
    config = presets.get("ssd300_voc")
    anchors = config.anchors()
    box = np.array([[0.40, 0.40, 0.402, 0.403]], np.float32)   # tiny: no anchor reaches 0.5
    gt = np.concatenate([box, box + 0.0005]).astype(np.float32)
    lab = encode_targets(gt, [1, 2], anchors)["labels"].numpy()
    assert (lab == 1).sum() == 1 and (lab == 2).sum() == 1


def test_ignore_zone_and_no_objects(config):
    anchors = config.anchors()
    gt = np.array([[0.2, 0.2, 0.6, 0.6]], np.float32)
    t = encode_targets(gt, [5], anchors, iou_threshold=0.5, negative_threshold=0.4)
    lab = t["labels"].numpy()
    best = np_iou(gt.astype(np.float64), corners(anchors.astype(np.float64)))[0]
    assert np.all(lab[(best >= 0.4) & (best < 0.5) & (lab != 5)] == -1)
    assert (lab == -1).sum() > 0
    empty = encode_targets(np.zeros((0, 4), np.float32), np.zeros((0,), np.int32), anchors)
    assert empty["labels"].shape == (8732,) and not empty["labels"].numpy().any()
    assert not empty["boxes"].numpy().any()


def test_usable_inside_tf_data(config):
    boxes = tf.ragged.constant([[[0.1, 0.1, 0.5, 0.5]], []], ragged_rank=1, dtype=tf.float32)
    labels = tf.ragged.constant([[1], []], dtype=tf.int32)
    ds = tf.data.Dataset.from_tensor_slices((boxes, labels)).map(
        lambda b, l: encode_targets_for_config(b, l, config), num_parallel_calls=2).batch(2)
    out = next(iter(ds))
    assert out["labels"].shape == (2, 8732) and out["boxes"].shape == (2, 8732, 4)
    assert out["labels"][0].numpy().max() == 1 and out["labels"][1].numpy().max() == 0


def test_static_box_shapes_inside_tf_data(config):
    # boxes with a fully static shape (a constant inside the map) must work too
    ds = tf.data.Dataset.range(2).map(
        lambda i: encode_targets_for_config(tf.constant([[0.1, 0.1, 0.5, 0.5], [0.6, 0.6, 0.9, 0.8]]),
                                            tf.constant([1, 2]), config))
    out = next(iter(ds))
    assert set(np.unique(out["labels"].numpy())) == {0, 1, 2}


def test_pairwise_iou_and_validation():
    a = np.array([[0, 0, 2, 2], [1, 1, 3, 3]], np.float32)
    np.testing.assert_allclose(pairwise_iou(a, a).numpy(), [[1, 1 / 7], [1 / 7, 1]], atol=1e-6)
    assert pairwise_iou(np.zeros((0, 4)), a).shape == (0, 2)
    with pytest.raises(ValueError, match="degenerate"):
        validate_boxes([[0.5, 0.1, 0.4, 0.3]], where="img.jpg")
    with pytest.raises(ValueError, match="non-finite"):
        validate_boxes([[np.nan, 0.1, 0.4, 0.3]], where="img.jpg")
    with pytest.raises(ValueError, match="outside"):
        validate_boxes([[0.5, 0.1, 1.4, 0.3]], where="img.jpg", allow_outside=False)
    assert validate_boxes(np.zeros((0, 4))).shape == (0, 4)
    with pytest.raises(tf.errors.InvalidArgumentError, match="NaN"):
        encode_targets(np.array([[np.nan, 0, 1, 1]], np.float32), [1], presets.get("ssd300_voc").anchors())
