"""Tests for ssd_keras.data.augment.

Most checks use a black 375x500 image with solid coloured rectangles exactly at
the ground-truth boxes: after any geometric op, the pixels of each kept box's
colour must fill exactly that box (within 2 output pixels).
"""
import numpy as np
import pytest
import tensorflow as tf

from ssd_keras.data import augment

HEIGHT, WIDTH = 375, 500
# label -> colour; far from black and from the mean fill so a threshold separates them.
COLOURS = {1: (255, 0, 0), 2: (0, 255, 0), 3: (0, 0, 255)}
PIXEL_BOXES = np.array([[100, 50, 300, 150], [300, 200, 450, 350], [20, 180, 140, 300]],
                       np.float32)  # xmin, ymin, xmax, ymax (0-based, end-exclusive)
LABELS = np.array([1, 2, 3], np.int32)
MEAN = augment.DEFAULT_MEAN
SIZE = (300, 300)


def _scene():
    image = np.zeros((HEIGHT, WIDTH, 3), np.float32)
    for (x0, y0, x1, y1), label in zip(PIXEL_BOXES.astype(int), LABELS):
        image[y0:y1, x0:x1] = COLOURS[label]
    boxes = PIXEL_BOXES / np.array([WIDTH, HEIGHT, WIDTH, HEIGHT], np.float32)
    return tf.constant(image), tf.constant(boxes), tf.constant(LABELS)


def _coordinate_image(height=HEIGHT, width=WIDTH):
    """Channel 0 = x, channel 1 = y of each source pixel: a crop reveals its window."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    return tf.constant(np.stack([xs, ys, np.zeros_like(xs)], axis=-1))


def _seed(i, j=0):
    return tf.constant([i, j], tf.int64)


def assert_boxes_match_colours(image, boxes, labels, tolerance=2.0, min_side=6.0):
    """Each box's colour region has the box's edges (within ``tolerance`` px) and fills it."""
    image = np.asarray(image)
    height, width = image.shape[:2]
    assert np.all(np.isfinite(image))
    for box, label in zip(np.asarray(boxes), np.asarray(labels)):
        x0, y0, x1, y1 = box * [width, height, width, height]
        assert 0 <= x0 <= x1 <= width + 1e-3 and 0 <= y0 <= y1 <= height + 1e-3, box
        if x1 - x0 < min_side or y1 - y0 < min_side:
            continue  # a sliver after clipping: resampling blurs it away
        mask = np.all(np.abs(image - COLOURS[int(label)]) < 60, axis=-1)
        ys, xs = np.nonzero(mask)
        assert len(xs), f"colour of label {label} missing"
        # the colour region's extent (pixel edges) matches the box
        np.testing.assert_allclose([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1],
                                   [x0, y0, x1, y1], atol=tolerance)
        # and the box interior is that colour
        inner = mask[int(np.ceil(y0 + tolerance)):int(y1 - tolerance),
                     int(np.ceil(x0 + tolerance)):int(x1 - tolerance)]
        assert inner.all(), f"label {label}: box interior not uniformly coloured"


# ----------------------------------------------------------------------------- photometric


def test_photometric_in_range_changes_pixels_deterministic():
    image, _, _ = _scene()
    image = image * 0.6 + 60.0  # mid-range values so every step can act
    outs = [augment.photometric_distort(image, _seed(i)) for i in range(8)]
    for out in outs:
        assert out.shape == image.shape and out.dtype == tf.float32
        assert float(tf.reduce_min(out)) >= 0.0 and float(tf.reduce_max(out)) <= 255.0
    assert any(float(tf.reduce_max(tf.abs(o - image))) > 1.0 for o in outs)
    np.testing.assert_array_equal(outs[3], augment.photometric_distort(image, _seed(3)))
    off = augment.photometric_distort(image, _seed(3), probability=0.0)
    np.testing.assert_allclose(off, image, atol=1e-3)


def test_photometric_changes_pixels_not_boxes():
    image, boxes, labels = _scene()
    for i in range(5):
        plain = augment.ssd_augment(image, boxes, labels, _seed(i), SIZE, MEAN, photometric=False)
        coloured = augment.ssd_augment(image, boxes, labels, _seed(i), SIZE, MEAN)
        np.testing.assert_array_equal(plain[1], coloured[1])
        np.testing.assert_array_equal(plain[2], coloured[2])
        assert float(tf.reduce_min(coloured[0])) >= 0 and float(tf.reduce_max(coloured[0])) <= 255


def test_channel_swap_permutes_channels():
    image = tf.ones([4, 4, 3]) * tf.constant([10.0, 20.0, 30.0])
    outs = [augment.photometric_distort(image, _seed(i), probability=0.0,
                                        channel_swap_probability=1.0) for i in range(12)]
    for out in outs:
        assert sorted(np.asarray(out)[0, 0].tolist()) == [10.0, 20.0, 30.0]
    assert len({tuple(np.asarray(o)[0, 0]) for o in outs}) > 1


# ----------------------------------------------------------------------------- expand


def test_expand_places_image_on_mean_canvas():
    image, boxes, labels = _scene()
    for i in range(6):
        out, out_boxes, out_labels = augment.expand(image, boxes, labels, _seed(i), MEAN,
                                                    probability=1.0)
        h, w = out.shape[:2]
        assert HEIGHT <= h <= 4 * HEIGHT and WIDTH <= w <= 4 * WIDTH
        assert h / HEIGHT == pytest.approx(w / WIDTH, abs=0.01)
        np.testing.assert_array_equal(out_labels, labels)
        assert_boxes_match_colours(out, out_boxes, out_labels, tolerance=0.01)
        # the canvas outside the image is the mean colour; the image is black there
        is_mean = np.all(np.asarray(out) == MEAN, axis=-1)
        assert is_mean.sum() == h * w - HEIGHT * WIDTH
    same = augment.expand(image, boxes, labels, _seed(0), MEAN, probability=0.0)
    np.testing.assert_array_equal(same[0], image)
    np.testing.assert_allclose(same[1], boxes)


# ----------------------------------------------------------------------------- crop


def _window_of(cropped):
    """(x0, y0, x1, y1) of a crop of the coordinate image."""
    c = np.asarray(cropped)
    return np.array([c[0, 0, 0], c[0, 0, 1], c[-1, -1, 0] + 1, c[-1, -1, 1] + 1])


def _iou(window, boxes_px):
    x0 = np.maximum(window[0], boxes_px[:, 0])
    y0 = np.maximum(window[1], boxes_px[:, 1])
    x1 = np.minimum(window[2], boxes_px[:, 2])
    y1 = np.minimum(window[3], boxes_px[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    return inter / (area(window) + area(boxes_px) - inter)


@pytest.mark.parametrize("min_iou", [0.1, 0.3, 0.5, 0.7, 0.9, "any"])
def test_crop_constraint_centre_rule_and_clipping(min_iou):
    coords = _coordinate_image()
    boxes_px, labels = PIXEL_BOXES, LABELS
    if min_iou == 0.9:  # IoU 0.9 needs a box nearly as large as the smallest patch
        boxes_px = np.concatenate([boxes_px, [[10, 10, 490, 365]]]).astype(np.float32)
        labels = np.append(labels, 4).astype(np.int32)
    boxes = boxes_px / np.array([WIDTH, HEIGHT, WIDTH, HEIGHT], np.float32)
    crops = 0
    for i in range(20):
        out, out_boxes, out_labels = augment.min_iou_random_crop(
            coords, boxes, labels, _seed(i), min_ious=(min_iou,))
        window = _window_of(out)
        assert out.shape[0] == window[3] - window[1] and out.shape[1] == window[2] - window[0]
        if out.shape[:2] == (HEIGHT, WIDTH):
            continue  # no valid trial: whole image
        crops += 1
        if crops > 3:
            break
        w, h = window[2] - window[0], window[3] - window[1]
        assert 0.3 * WIDTH - 1 <= w <= WIDTH and 0.3 * HEIGHT - 1 <= h <= HEIGHT
        assert 0.5 <= w / h <= 2.0
        if min_iou != "any":
            assert _iou(window, boxes_px).max() >= min_iou
        centres = (boxes_px[:, :2] + boxes_px[:, 2:]) / 2
        inside = np.all((centres > window[:2]) & (centres < window[2:]), axis=1)
        assert inside.any()
        np.testing.assert_array_equal(out_labels, labels[inside])
        expected = np.clip(boxes_px[inside], np.tile(window[:2], 2), np.tile(window[2:], 2))
        expected = (expected - np.tile(window[:2], 2)) / np.array([w, h, w, h])
        np.testing.assert_allclose(out_boxes, expected, atol=1e-5)
    assert crops


def test_crop_colours_all_modes():
    image, boxes, labels = _scene()
    for i in range(14):
        out, out_boxes, out_labels = augment.min_iou_random_crop(image, boxes, labels, _seed(i))
        assert len(out_labels) >= 1
        assert_boxes_match_colours(out, out_boxes, out_labels, tolerance=0.01, min_side=1)


def test_crop_whole_image_mode_and_no_boxes():
    image, boxes, labels = _scene()
    out, out_boxes, out_labels = augment.min_iou_random_crop(image, boxes, labels, _seed(1),
                                                             min_ious=(None,))
    np.testing.assert_array_equal(out, image)
    np.testing.assert_array_equal(out_boxes, boxes)
    no_boxes, no_labels = tf.zeros([0, 4]), tf.zeros([0], tf.int32)
    for i in range(4):  # constrained modes cannot be met without boxes
        out, out_boxes, _ = augment.min_iou_random_crop(image, no_boxes, no_labels, _seed(i),
                                                        min_ious=(0.1, 0.5, 0.9))
        assert out.shape == image.shape and out_boxes.shape == (0, 4)
    out, out_boxes, out_labels = augment.min_iou_random_crop(image, no_boxes, no_labels,
                                                             _seed(0), min_ious=("any",))
    assert out.shape[0] < HEIGHT or out.shape[1] < WIDTH
    assert out_boxes.shape == (0, 4) and out_labels.shape == (0,)


def test_crop_falls_back_to_whole_image_when_impossible():
    # one tiny box: no patch of at least 0.3 x 0.3 of the image reaches IoU 0.9
    image = _coordinate_image()
    boxes = tf.constant([[0.5, 0.5, 0.52, 0.52]])
    out, out_boxes, _ = augment.min_iou_random_crop(image, boxes, tf.constant([1]), _seed(3),
                                                    min_ious=(0.9,))
    assert out.shape == image.shape
    np.testing.assert_allclose(out_boxes, boxes)


def test_sampler_picks_first_valid_trial():
    boxes_px = tf.constant(PIXEL_BOXES)
    window, keep = augment._sample_crop_window(_seed(5), boxes_px, HEIGHT, WIDTH, (0.3,), 50,
                                               0.3, 1.0, 0.5, 2.0)
    assert window.shape == (4,) and keep.shape == (3,) and bool(tf.reduce_any(keep))


# ----------------------------------------------------------------------------- flip / resize


def test_flip():
    image, boxes, labels = _scene()
    flipped, flipped_boxes = augment.random_flip(image, boxes, _seed(0), probability=1.0)
    np.testing.assert_array_equal(flipped, image[:, ::-1])
    np.testing.assert_allclose(flipped_boxes[:, 0], 1.0 - boxes[:, 2])
    assert_boxes_match_colours(flipped, flipped_boxes, labels, tolerance=0.01)
    same, same_boxes = augment.random_flip(image, boxes, _seed(0), probability=0.0)
    np.testing.assert_array_equal(same, image)
    np.testing.assert_array_equal(same_boxes, boxes)


def test_resize_and_random_resize():
    image, boxes, labels = _scene()
    out = augment.resize(image, SIZE)
    assert out.shape == (300, 300, 3) and out.dtype == tf.float32
    assert_boxes_match_colours(out, boxes, labels)
    for i in range(8):  # every interpolation keeps the boxes on their rectangles
        out = augment.random_resize(image, (512, 512), _seed(i),
                                    methods=augment.DEFAULT_RESIZE_METHODS + ("lanczos3",))
        assert out.shape == (512, 512, 3)
        assert 0.0 <= float(tf.reduce_min(out)) and float(tf.reduce_max(out)) <= 255.0
        assert_boxes_match_colours(out, boxes, labels)


# ----------------------------------------------------------------------------- the chain


@pytest.mark.parametrize("fused", [True, False])
def test_chain_boxes_follow_pixels(fused):
    image, boxes, labels = _scene()
    fn = tf.function(lambda s: augment.ssd_augment(image, boxes, labels, s, SIZE, MEAN,
                                                   photometric=False, fused=fused))
    counts = set()
    for i in range(40):
        out, out_boxes, out_labels = fn(_seed(i, 11))
        assert out.shape == (300, 300, 3) and out.dtype == tf.float32
        assert out_boxes.shape[0] == out_labels.shape[0] >= 1
        assert 0.0 <= float(tf.reduce_min(out)) and float(tf.reduce_max(out)) <= 255.0
        assert_boxes_match_colours(out, out_boxes, out_labels)
        counts.add(len(out_labels))
    assert len(counts) > 1  # some crops dropped boxes


def test_fused_matches_unfused():
    image, boxes, labels = _scene()
    for i in range(12):
        fused = augment.ssd_augment(image, boxes, labels, _seed(i, 3), SIZE, MEAN,
                                    photometric=False)
        plain = augment.ssd_augment(image, boxes, labels, _seed(i, 3), SIZE, MEAN,
                                    photometric=False, fused=False)
        np.testing.assert_array_equal(fused[2], plain[2])
        np.testing.assert_allclose(fused[1], plain[1], atol=1.5 / 300)
        assert float(tf.reduce_mean(tf.abs(fused[0] - plain[0]))) < 8.0


def test_chain_without_objects():
    image, _, _ = _scene()
    for fused in (True, False):
        for i in range(10):
            out, out_boxes, out_labels = augment.ssd_augment(
                image, tf.zeros([0, 4]), tf.zeros([0], tf.int32), _seed(i), SIZE, MEAN,
                fused=fused)
            assert out.shape == (300, 300, 3)
            assert out_boxes.shape == (0, 4) and out_labels.shape == (0,)


def test_chain_deterministic_and_seed_dependent():
    image, boxes, labels = _scene()
    a = augment.ssd_augment(image, boxes, labels, _seed(7, 1), SIZE, MEAN)
    b = augment.ssd_augment(image, boxes, labels, _seed(7, 1), SIZE, MEAN)
    c = augment.ssd_augment(image, boxes, labels, _seed(8, 1), SIZE, MEAN)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])


def test_chain_in_parallel_dataset_map_is_reproducible():
    image, boxes, labels = _scene()
    ragged = tf.RaggedTensor.from_row_lengths(tf.concat([boxes, boxes[:1]], 0), [3, 0, 1])
    ragged_labels = tf.RaggedTensor.from_row_lengths(tf.constant([1, 2, 3, 1]), [3, 0, 1])

    def augment_one(index, element_boxes, element_labels):
        seed = tf.stack([tf.constant(42, tf.int64), index])
        return augment.ssd_augment(image, element_boxes, element_labels, seed, SIZE, MEAN)

    def run():
        ds = tf.data.Dataset.from_tensor_slices((ragged, ragged_labels)).repeat(3).enumerate()
        ds = ds.map(lambda i, x: augment_one(i, x[0], x[1]), num_parallel_calls=2,
                    deterministic=True)
        return list(ds.as_numpy_iterator())

    first, second = run(), run()
    assert len(first) == 9
    for x, y in zip(first, second):
        for a, b in zip(x, y):
            np.testing.assert_array_equal(a, b)
    assert first[1][1].shape == (0, 4)
