"""Config, presets and anchors: checked against an independent transcription of Caffe's PriorBox."""
import json
import math

import numpy as np
import pytest

from ssd_keras import presets
from ssd_keras.config import DetectorConfig
from ssd_keras.families.ssd.anchors import GridAnchors, MultiscaleAnchors


def caffe_prior_box(fmap_h, fmap_w, img_h, img_w, min_size, max_size, ratios, step, offset=0.5):
    """Literal transcription of caffe/src/caffe/layers/prior_box_layer.cpp (flip=true, clip=false)."""
    aspect_ratios = [1.0]
    for ar in ratios:
        aspect_ratios.append(ar)
        aspect_ratios.append(1.0 / ar)
    out = []
    for h in range(fmap_h):
        for w in range(fmap_w):
            center_x = (w + offset) * step
            center_y = (h + offset) * step
            # first prior: aspect_ratio = 1, size = min_size
            box_width = box_height = min_size
            out.append([(center_x - box_width / 2.) / img_w, (center_y - box_height / 2.) / img_h,
                        (center_x + box_width / 2.) / img_w, (center_y + box_height / 2.) / img_h])
            # second prior: aspect_ratio = 1, size = sqrt(min_size * max_size)
            box_width = box_height = math.sqrt(min_size * max_size)
            out.append([(center_x - box_width / 2.) / img_w, (center_y - box_height / 2.) / img_h,
                        (center_x + box_width / 2.) / img_w, (center_y + box_height / 2.) / img_h])
            # rest of priors
            for ar in aspect_ratios:
                if abs(ar - 1.) < 1e-6:
                    continue
                box_width = min_size * math.sqrt(ar)
                box_height = min_size / math.sqrt(ar)
                out.append([(center_x - box_width / 2.) / img_w, (center_y - box_height / 2.) / img_h,
                            (center_x + box_width / 2.) / img_w, (center_y + box_height / 2.) / img_h])
    return np.array(out)


def to_corners(a):
    return np.concatenate([a[:, :2] - a[:, 2:] / 2, a[:, :2] + a[:, 2:] / 2], 1)


# (min_sizes, max_sizes, ratios, steps, fmaps) of the Caffe ssd_pascal.py models
CAFFE_SSD300 = ([30, 60, 111, 162, 213, 264], [60, 111, 162, 213, 264, 315],
                [[2], [2, 3], [2, 3], [2, 3], [2], [2]], [8, 16, 32, 64, 100, 300],
                [38, 19, 10, 5, 3, 1])
CAFFE_SSD512 = ([35.84, 76.8, 153.6, 230.4, 307.2, 384.0, 460.8],
                [76.8, 153.6, 230.4, 307.2, 384.0, 460.8, 537.6],
                [[2], [2, 3], [2, 3], [2, 3], [2, 3], [2], [2]], [8, 16, 32, 64, 128, 256, 512],
                [64, 32, 16, 8, 4, 2, 1])


@pytest.mark.parametrize("name,size,caffe", [("ssd300_voc", 300, CAFFE_SSD300),
                                             ("ssd512_voc", 512, CAFFE_SSD512)])
def test_priorbox_matches_caffe(name, size, caffe):
    mins, maxs, ratios, steps, fmaps = caffe
    expected = np.concatenate([caffe_prior_box(f, f, size, size, mn, mx, r, s)
                               for mn, mx, r, s, f in zip(mins, maxs, ratios, steps, fmaps)])
    anchors = presets.get(name).anchors()
    assert anchors.dtype == np.float32 and anchors.shape == expected.shape
    np.testing.assert_allclose(to_corners(anchors.astype(np.float64)), expected, atol=1e-6)


def test_anchor_counts_and_order():
    c300 = presets.get("ssd300_voc")
    a = c300.anchors()
    assert a.shape == (8732, 4) and c300.num_anchors() == 8732
    assert presets.get("ssd512_voc").anchors().shape == (24564, 4)
    # first cell of conv4_3: min box 30px, sqrt(30*60), then ratio 2, 1/2
    px = a[:4] * 300
    np.testing.assert_allclose(px[:, :2], 4.0, atol=1e-4)
    np.testing.assert_allclose(px[0, 2:], [30, 30], atol=1e-4)
    np.testing.assert_allclose(px[1, 2:], [math.sqrt(1800)] * 2, atol=1e-4)
    np.testing.assert_allclose(px[2, 2:], [30 * math.sqrt(2), 30 / math.sqrt(2)], atol=1e-4)
    np.testing.assert_allclose(px[3, 2:], [30 / math.sqrt(2), 30 * math.sqrt(2)], atol=1e-4)
    # second cell is one step (8 px) to the right: cells are row-major
    np.testing.assert_allclose(a[4, :2] * 300, [12, 4], atol=1e-4)
    # unclipped: the largest boxes extend beyond the image
    assert (to_corners(a) < 0).any() and (to_corners(a) > 1).any()


def test_min_sizes_of_presets():
    for name, mins in [("ssd300_voc", [30, 60, 111, 162, 213, 264]),
                       ("ssd300_coco", [21, 45, 99, 153, 207, 261])]:
        c = presets.get(name)
        sizes = [s * 300 for s in c.anchor_generator.scales[:-1]]
        np.testing.assert_allclose(sizes, mins, atol=1e-6)
    assert presets.get("ssd512_coco").anchors().shape == (24564, 4)


def test_clip_flag():
    c = presets.get("ssd300_voc")
    clipped = c.replace(anchor_generator=c.anchor_generator.__class__(
        **{**c.anchor_generator.__dict__, "clip": True})).anchors()
    corners = to_corners(clipped.astype(np.float64))
    assert corners.min() >= -1e-6 and corners.max() <= 1 + 1e-6


def test_grid_anchors_tf_od_api():
    c = presets.get("ssd_mobilenet_v2_320")
    a = c.anchors()
    # 20x20x3 (reduced lowest layer) + (10x10 + 5x5 + 3x3 + 2x2 + 1) x 6
    assert a.shape == (20 * 20 * 3 + (100 + 25 + 9 + 4 + 1) * 6, 4)
    np.testing.assert_allclose(a[0], [0.025, 0.025, 0.1, 0.1], atol=1e-6)
    s0 = 0.2
    np.testing.assert_allclose(a[1, 2:], [s0 * math.sqrt(2), s0 / math.sqrt(2)], atol=1e-6)
    layers = GridAnchors().layer_boxes()
    assert [len(l) for l in layers] == [3, 6, 6, 6, 6, 6]
    assert layers[-1][0][0] == pytest.approx(0.95)


def test_multiscale_anchors_are_pixel_sized():
    c = presets.get("ssd_mobilenet_v2_fpnlite_320")
    a320 = c.anchors()
    assert a320.shape == (6 * (40 * 40 + 20 * 20 + 10 * 10 + 5 * 5 + 3 * 3), 4)
    # level 3: anchor scale 4 * stride 8 = 32 px, 2 octave scales x 3 ratios
    np.testing.assert_allclose(a320[0] * 320, [4, 4, 32, 32], atol=1e-4)
    np.testing.assert_allclose(a320[3, 2:] * 320, [32 * 2 ** 0.5] * 2, atol=1e-4)
    # the same pixel anchors at another input size (fully convolutional use)
    a640 = c.anchors(image_size=(640, 640))
    np.testing.assert_allclose(a640[0] * 640, [4, 4, 32, 32], atol=1e-4)


def test_config_json_round_trip_and_errors(tmp_path):
    for name in presets.names():
        c = presets.get(name)
        again = DetectorConfig.from_json(c.to_json(tmp_path / f"{name}.json"))
        assert again == c
        if c.head.kind == "ssd":
            np.testing.assert_array_equal(again.anchors(), c.anchors())
    assert isinstance(presets.get("ssd_mobilenet_v2_fpnlite_640").anchor_generator, MultiscaleAnchors)
    with pytest.raises(KeyError, match="known presets"):
        presets.get("ssd301")
    with pytest.raises(ValueError, match="num_classes"):
        presets.get("ssd300_voc", num_classes=0, class_names=None)
    with pytest.raises(ValueError, match="feature_strides"):
        presets.get("ssd300_voc", feature_strides=(8, 16))
    with pytest.raises(ValueError, match="unknown DetectorConfig fields"):
        DetectorConfig.from_dict({"nope": 1})
    assert json.loads(presets.get("ssd300_voc").to_json())["head"]["anchor_generator"]["kind"] == "priorbox"
