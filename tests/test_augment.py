"""Tests for ssd_keras.data.augment.

Most checks use a black 375x500 image with solid coloured rectangles exactly at
the ground-truth boxes: after any geometric op, the pixels of each kept box's
colour must fill exactly that box (within 2 output pixels).
"""
import numpy as np
import pytest
import tensorflow as tf

from ssd_keras.data import augment

from tests import caffe_sampler_reference as caffe_reference

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


def _only_hue(image, seed, **kwargs):
    return augment.photometric_distort(image, seed, brightness_delta=0.0, contrast_range=(1, 1),
                                       saturation_range=(1, 1), probability=1.0, **kwargs)


def test_hue_shift_spans_caffes_36_degrees():
    # Caffe: U(-18, 18) on OpenCV's 0-180 hue channel = +-36 degrees (not +-18).
    import colorsys
    green = tf.constant([[[0.0, 255.0, 0.0]]])  # hue 120 degrees
    hues = []
    for i in range(300):
        r, g, b = np.asarray(_only_hue(green, _seed(i)))[0, 0] / 255.0
        hues.append(colorsys.rgb_to_hsv(r, g, b)[0] * 360.0)
    shift = np.array(hues) - 120.0
    assert shift.min() >= -36.0 - 1e-3 and shift.max() <= 36.0 + 1e-3
    assert shift.min() < -33.0 and shift.max() > 33.0  # the whole range is used


def test_hue_matches_opencv_8bit_hue_arithmetic():
    """Caffe's AdjustHue: a hue pushed below 0 stops at 0 (saturating uint8), past 180 wraps."""
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (64, 64, 3)).astype(np.uint8)
    for delta in (-18, -5, 7, 18):  # Caffe units (OpenCV hue, 2 degrees each)
        hsv = cv2.cvtColor(pixels, cv2.COLOR_RGB2HSV)
        hsv[..., 0] = np.clip(hsv[..., 0].astype(np.float32) + delta, 0, 255).astype(np.uint8)
        expected = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB).astype(np.float32)
        ours = augment._adjust_saturation_hue_caffe(tf.constant(pixels, tf.float32), 1.0,
                                                     2.0 * delta)
        diff = np.abs(np.asarray(ours) - expected)
        # what remains is OpenCV's 8-bit rounding of hue (2-degree steps) and saturation
        assert diff.max() <= 6.0 and diff.mean() < 1.0, (delta, diff.max(), diff.mean())


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
def test_crop_constraint_emit_rule_and_clipping(min_iou):
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
            continue  # no trial met the constraint: whole image
        crops += 1
        if crops > 3:
            break
        # Caffe's patch: scale s in [0.3, 1], aspect in [0.5, 2] relative to the image's
        # sides, truncated to whole pixels (hence the one-pixel slack).
        fw, fh = (window[2] - window[0]) / WIDTH, (window[3] - window[1]) / HEIGHT
        assert 0.3 - 0.01 <= np.sqrt(fw * fh) <= 1.0
        assert 0.5 * 0.98 <= fw / fh <= 2.0 * 1.02
        if min_iou != "any":
            assert _iou(window, boxes_px).max() >= min_iou - 0.01
        # emit rule: centre inside the patch, edges included; no box need survive
        centres = (boxes_px[:, :2] + boxes_px[:, 2:]) / 2
        inside = np.all((centres >= window[:2]) & (centres <= window[2:]), axis=1)
        np.testing.assert_array_equal(out_labels, labels[inside])
        w, h = window[2] - window[0], window[3] - window[1]
        expected = np.clip(boxes_px[inside], np.tile(window[:2], 2), np.tile(window[2:], 2))
        expected = (expected - np.tile(window[:2], 2)) / np.array([w, h, w, h])
        np.testing.assert_allclose(np.reshape(out_boxes, (-1, 4)), expected, atol=1e-5)
    assert crops


def test_crop_colours_all_modes():
    image, boxes, labels = _scene()
    for i in range(14):
        out, out_boxes, out_labels = augment.min_iou_random_crop(image, boxes, labels, _seed(i))
        assert_boxes_match_colours(out, out_boxes, out_labels, tolerance=0.01, min_side=1)


def test_crop_whole_image_mode_and_no_boxes():
    image, boxes, labels = _scene()
    out, out_boxes, out_labels = augment.min_iou_random_crop(image, boxes, labels, _seed(1),
                                                             min_ious=(None,))
    np.testing.assert_array_equal(out, image)
    np.testing.assert_array_equal(out_boxes, boxes)
    # SatisfySampleConstraint loops over the object boxes: without any, no
    # constrained sampler (not even max IoU 1.0, "any") succeeds.
    no_boxes, no_labels = tf.zeros([0, 4]), tf.zeros([0], tf.int32)
    for i in range(4):
        out, out_boxes, out_labels = augment.min_iou_random_crop(image, no_boxes, no_labels,
                                                                 _seed(i))
        assert out.shape == image.shape
        assert out_boxes.shape == (0, 4) and out_labels.shape == (0,)


def test_crop_falls_back_to_whole_image_when_no_sampler_succeeds():
    # one tiny box: no patch of at least 0.3 x 0.3 of the image reaches IoU 0.9
    image = _coordinate_image()
    boxes = tf.constant([[0.5, 0.5, 0.52, 0.52]])
    out, out_boxes, _ = augment.min_iou_random_crop(image, boxes, tf.constant([1]), _seed(3),
                                                    min_ious=(0.9,))
    assert out.shape == image.shape
    np.testing.assert_allclose(out_boxes, boxes)
    patch, chosen, found = augment._sample_patch(_seed(3), boxes, (0.9,), 50, 0.3, 1.0, 0.5, 2.0)
    np.testing.assert_array_equal(patch, [0, 0, 1, 1])
    assert int(chosen) == -1 and not bool(found[0])


def test_min_ious_rejects_unknown_modes():
    for bad in ((), (1.5,), ("all",), (True,)):
        with pytest.raises(ValueError, match="min_ious"):
            augment._parse_min_ious(bad)


# --------------------------------------------------- the sampler's distribution vs Caffe's


def _tf_sampler_draws(boxes, count, expand_probability, seed):
    """``count`` draws of ssd_augment's expand + sampler (its composition, on one graph).

    Returns numpy ``patch (count, 4)`` normalised to the (expanded) canvas,
    ``chosen (count,)`` and ``found (count, 7)``.
    """
    boxes = tf.constant(np.reshape(boxes, (-1, 4)), tf.float32)
    scale = tf.constant([WIDTH, HEIGHT, WIDTH, HEIGHT], tf.float32)

    def one(element_seed):
        expand_seed, crop_seed = augment._split(element_seed, 2)
        canvas_h, canvas_w, top, left = augment._sample_expand(
            expand_seed, HEIGHT, WIDTH, 4.0, expand_probability)
        offset = tf.cast(tf.stack([left, top, left, top]), tf.float32)
        canvas = tf.cast(tf.stack([canvas_w, canvas_h, canvas_w, canvas_h]), tf.float32)
        return augment._sample_patch(crop_seed, (boxes * scale + offset) / canvas,
                                     augment.DEFAULT_MIN_IOUS, 50, 0.3, 1.0, 0.5, 2.0)

    seeds = tf.stack([tf.fill([count], tf.constant(seed, tf.int64)),
                      tf.range(count, dtype=tf.int64)], axis=1)
    draw = tf.function(lambda s: tf.map_fn(
        one, s, fn_output_signature=(tf.float32, tf.int32, tf.bool)))
    return tuple(np.asarray(x) for x in draw(seeds))


def _reference_draws(boxes, count, expand_probability, seed):
    rng = np.random.default_rng(seed)
    boxes = np.broadcast_to(np.reshape(boxes, (1, -1, 4)), (count, len(np.reshape(boxes, (-1, 4))), 4))
    canvas_boxes, _, _ = caffe_reference.expand_boxes(rng, boxes.astype(np.float32), HEIGHT, WIDTH,
                                                      prob=expand_probability)
    return caffe_reference.generate_batch_samples(rng, canvas_boxes,
                                                  np.ones(canvas_boxes.shape[:2], bool))


def _one_object(fraction):
    """A centred object covering ``fraction`` of the 500x375 image, square in pixels."""
    side = np.sqrt(fraction * WIDTH * HEIGHT)
    w, h = side / WIDTH, side / HEIGHT
    return np.array([[0.5 - w / 2, 0.5 - h / 2, 0.5 + w / 2, 0.5 + h / 2]], np.float32)


SAMPLER_CASES = {  # name: (boxes normalised to the 500x375 image, expand probability)
    "object 60%": (_one_object(0.60), 0.5),
    "object 25%": (_one_object(0.25), 0.5),
    "object 8%": (_one_object(0.08), 0.5),
    "object 2%": (_one_object(0.02), 0.5),
    "three boxes": (PIXEL_BOXES / np.array([WIDTH, HEIGHT, WIDTH, HEIGHT], np.float32), 0.5),
    "three boxes, no expand": (
        PIXEL_BOXES / np.array([WIDTH, HEIGHT, WIDTH, HEIGHT], np.float32), 0.0),
    "no boxes": (np.zeros((0, 4), np.float32), 0.5),
}
TF_DRAWS, REFERENCE_DRAWS = 400, 20000


def _close_rate(ours, theirs, label, sigmas=4.0):
    """Two binomial rates agree within ``sigmas`` standard errors of their difference."""
    p = max(theirs * (1 - theirs), 1.0 / TF_DRAWS)  # a floor for rates of 0 or 1
    se = np.sqrt(p * (1.0 / TF_DRAWS + 1.0 / REFERENCE_DRAWS))
    assert abs(ours - theirs) <= sigmas * se, f"{label}: ours {ours:.3f}, Caffe's {theirs:.3f}"


@pytest.mark.parametrize("case", list(SAMPLER_CASES))
def test_sampler_distribution_matches_caffe_transcription(case):
    """Expand (p as given, ratio U(1, 4)) then the seven samplers, against the numpy
    transcription of the C++ (tests/caffe_sampler_reference.py).

    Tolerance: 4 standard errors.  A rate p from n draws has SE sqrt(p (1 - p) / n);
    a quantile is checked through the CDF: the share of our crops below Caffe's
    q-quantile is binomial with SE sqrt(q (1 - q) / n_cropped).  The seeds are
    fixed, so the test is deterministic; 4 SE keeps a correct implementation
    passing for any seed with probability > 0.999 per comparison.
    """
    boxes, expand_probability = SAMPLER_CASES[case]
    patch, chosen, found = _tf_sampler_draws(boxes, TF_DRAWS, expand_probability, seed=9)
    ref_patch, ref_chosen, ref_found = _reference_draws(boxes, REFERENCE_DRAWS,
                                                        expand_probability, seed=9)
    assert np.all(found[np.arange(TF_DRAWS), chosen])  # only a success is ever picked
    _close_rate((chosen == 0).mean(), (ref_chosen == 0).mean(), f"{case}: uncropped rate")
    for k, mode in enumerate(augment.DEFAULT_MIN_IOUS):
        _close_rate(found[:, k].mean(), ref_found[:, k].mean(), f"{case}: sampler {mode} success")
    if len(boxes) == 0:
        assert np.all(chosen == 0) and np.all(ref_chosen == 0)
        return
    cropped, ref_cropped = patch[chosen != 0], ref_patch[ref_chosen != 0]
    for name, stat in (("area", lambda b: (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])),
                       ("aspect", lambda b: (b[:, 2] - b[:, 0]) / (b[:, 3] - b[:, 1]))):
        ours, theirs = stat(cropped), stat(ref_cropped)
        for q in (0.1, 0.25, 0.5, 0.75, 0.9):
            share = (ours <= np.quantile(theirs, q)).mean()
            se = np.sqrt(q * (1 - q) * (1.0 / len(ours) + 1.0 / len(theirs)))
            assert abs(share - q) <= 4 * se, f"{case}: crop {name} quantile {q}: {share:.3f}"


def test_caffe_transcription_reproduces_the_issue_figures():
    """Issue 9 measured Caffe's algorithm at 0.21 / 0.25 / 0.34 / 0.44 uncropped for one
    object of 60 / 25 / 8 / 2 % (600 draws each: SE about 0.02)."""
    for fraction, figure in ((0.60, 0.21), (0.25, 0.25), (0.08, 0.34), (0.02, 0.44)):
        _, chosen, _ = _reference_draws(_one_object(fraction), REFERENCE_DRAWS, 0.5, seed=1)
        assert abs((chosen == 0).mean() - figure) <= 0.04, (fraction, (chosen == 0).mean())


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


def test_resize_interpolations_against_opencv():
    """random_resize's docstring: linear and nearest are OpenCV's; cubic is close."""
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    field = cv2.resize(rng.uniform(0, 255, (6, 8, 3)).astype(np.float32), (270, 200))
    image = np.clip(field + rng.normal(0, 12, field.shape), 0, 255).astype(np.uint8)
    for method, flag, mean_diff in (("bilinear", cv2.INTER_LINEAR, 0.5),
                                    ("nearest", cv2.INTER_NEAREST, 0.0),
                                    ("bicubic", cv2.INTER_CUBIC, 1.0)):
        expected = cv2.resize(image, (300, 300), interpolation=flag).astype(np.float32)
        ours = augment.random_resize(tf.constant(image, tf.float32), SIZE, _seed(0),
                                     methods=(method,))
        assert np.abs(np.asarray(ours) - expected).mean() <= mean_diff, method


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
        assert out_boxes.shape[0] == out_labels.shape[0]  # may be 0, as in Caffe
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
