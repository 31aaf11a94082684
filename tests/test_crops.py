"""Crop training pipeline: shapes, targets that decode to the ground truth, cut objects ignored, seeds."""
import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from ssd_keras.boxes import center_to_corners, decode_boxes, pairwise_iou
from ssd_keras.families.ssd.anchors import MultiscaleAnchors
from ssd_keras.families.ssd.matching import encode_targets_for_config
from ssd_keras.experiments.digits import crops
from ssd_keras.experiments.digits.crops import CropSpec, ImageBank
from ssd_keras.data.records import Record

S = 64
SPEC = CropSpec(crop_size=S, object_probability=0.7, min_visible=0.9)


def _config():
    from ssd_keras import presets
    return presets.get("digits_convnet").replace(
        image_size=(S, S),
        anchor_generator=MultiscaleAnchors(min_level=2, max_level=3, anchor_scale=2.0,
                                           scales_per_octave=2, aspect_ratios=(0.3, 0.55, 0.8)))


def _coordinate_bank():
    """Two images whose pixels encode where they are (R = x, G = y, B = 100 * image index)."""
    h, w = 200, 240
    ys, xs = np.mgrid[0:h, 0:w]
    images = np.stack([np.stack([xs, ys, np.full_like(xs, 100 * k)], -1) for k in range(2)])
    boxes = np.zeros((2, 4, 4), np.float32)
    boxes[0, :3] = [[20, 30, 30, 48], [100, 100, 108, 114], [180, 20, 193, 44]]
    boxes[1, :4] = [[5, 5, 14, 22], [60, 150, 66, 170], [150, 80, 162, 100], [200, 160, 211, 181]]
    labels = np.array([[1, 2, 3, 0], [4, 5, 6, 7]], np.int32)
    counts = np.array([3, 4], np.int32)
    return ImageBank(images.astype(np.uint8), np.array([[h, w], [h, w]], np.int32), boxes,
                     labels, counts)


def _take(bank, config, n, seed=0, spec=SPEC, augment=False):
    sampler = crops.make_crop_sampler(bank, config, spec, seed=seed, augment=augment)
    return [sampler(tf.constant(i, tf.int64)) for i in range(n)]


def test_batches_have_the_promised_shapes_and_types():
    config = _config()
    ds = crops.crop_dataset(_coordinate_bank(), config, batch_size=3, spec=SPEC, seed=1)
    images, targets = next(iter(ds))
    n = config.num_anchors((S, S))
    assert images.shape == (3, S, S, 3) and images.dtype == tf.float32
    assert targets["labels"].shape == (3, n) and targets["labels"].dtype == tf.int32
    assert targets["boxes"].shape == (3, n, 4) and targets["boxes"].dtype == tf.float32
    assert 0.0 <= float(tf.reduce_min(images)) and float(tf.reduce_max(images)) <= 255.0


def test_positive_anchors_decode_to_fully_visible_ground_truth():
    config = _config()
    bank = _coordinate_bank()
    anchors = config.anchors((S, S))
    seen_positive = seen_cut = 0
    for crop, targets in _take(bank, config, 40):
        crop = crop.numpy()
        x0, y0, i = crop[0, 0, 0], crop[0, 0, 1], int(crop[0, 0, 2]) // 100  # from the pixels
        np.testing.assert_array_equal(crop, bank.images[i, int(y0):int(y0) + S, int(x0):int(x0) + S])
        gt = bank.boxes[i, :bank.counts[i]]
        local = (gt - [x0, y0, x0, y0]) / S
        inside = np.all((local[:, :2] >= 0) & (local[:, 2:] <= 1), axis=1)
        cut = ~inside & (local[:, 2] > 0) & (local[:, 3] > 0) & (local[:, 0] < 1) & (local[:, 1] < 1)
        labels = targets["labels"].numpy()
        positive = labels > 0
        decoded = decode_boxes(targets["boxes"].numpy()[positive], anchors[positive],
                               config.variances).numpy()
        for box, label in zip(decoded, labels[positive]):
            iou = pairwise_iou(box[None], local.astype(np.float32)).numpy()[0]
            k = int(np.argmax(iou))
            assert iou[k] > 0.999 and inside[k], "a positive must be a fully visible object"
            assert label == bank.labels[i, k]
        # every fully visible object has at least one positive anchor
        if inside.any():
            iou = pairwise_iou(local[inside].astype(np.float32), decoded.reshape(-1, 4)).numpy()
            assert np.all(iou.max(axis=1) > 0.999)
            seen_positive += 1
        # anchors over a cut object are ignored, never positive
        if cut.any():
            corners = center_to_corners(anchors).numpy()
            iou = pairwise_iou(local[cut].astype(np.float32), corners).numpy().max(axis=0)
            assert not np.any(positive & (iou >= 0.5))
            near = labels[iou >= config.head.ignore_iou_threshold]
            assert np.all(near != 0) and np.any(near == -1)   # ignored (or another object's)
            seen_cut += 1
    assert seen_positive > 10 and seen_cut > 0


def test_crop_targets_splits_visible_and_cut_boxes():
    boxes = tf.constant([[10, 10, 20, 30], [58, 10, 70, 30], [100, 100, 110, 120], [0, 0, 0, 0]],
                        tf.float32)
    labels = tf.constant([1, 2, 3, 0], tf.int32)
    valid = tf.constant([True, True, True, False])
    pos, pos_labels, cut, cut_visible = crops.crop_targets(
        boxes, labels, valid, tf.constant([0.0, 0.0]), tf.constant(64.0), 0.9)
    np.testing.assert_allclose(pos.numpy(), [[10 / 64, 10 / 64, 20 / 64, 30 / 64]], rtol=1e-6)
    assert pos_labels.numpy().tolist() == [1]
    np.testing.assert_allclose(cut.numpy(), [[58 / 64, 10 / 64, 70 / 64, 30 / 64]], rtol=1e-6)
    np.testing.assert_allclose(cut_visible.numpy(), [[58 / 64, 10 / 64, 1.0, 30 / 64]], rtol=1e-6)


def test_same_seed_same_stream_other_seed_other_stream():
    config = _config()
    bank = _coordinate_bank()

    def first(seed, parallel):
        ds = crops.crop_dataset(bank, config, batch_size=4, spec=SPEC, seed=seed,
                                num_parallel_calls=parallel)
        images, targets = next(iter(ds))
        return images.numpy(), targets["labels"].numpy()

    a_img, a_lab = first(3, tf.data.AUTOTUNE)
    b_img, b_lab = first(3, 1)
    c_img, _ = first(4, tf.data.AUTOTUNE)
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_lab, b_lab)
    assert not np.array_equal(a_img, c_img)


def test_object_windows_contain_an_object():
    config = _config()
    bank = _coordinate_bank()
    spec = dataclasses.replace(SPEC, object_probability=1.0)
    for _, targets in _take(bank, config, 20, spec=spec):
        assert int(np.sum(targets["labels"].numpy() > 0)) > 0


def test_zoomed_crops_keep_the_size_and_scale_boxes():
    config = _config()
    spec = dataclasses.replace(SPEC, scale_range=(0.7, 1.4), object_probability=1.0)
    for crop, targets in _take(_coordinate_bank(), config, 10, spec=spec, augment=True):
        assert crop.shape == (S, S, 3)
        assert int(np.sum(targets["labels"].numpy() > 0)) > 0


def test_load_image_bank_reads_records(tmp_path):
    from ssd_keras.data.digits import DigitsSpec, generate_digits_dataset, read_digits

    spec = DigitsSpec(image_size=96, max_digits=3)
    generate_digits_dataset(str(tmp_path), {"train": 3}, spec=spec, progress=False)
    records = read_digits(str(tmp_path), "train")
    bank = crops.load_image_bank(records)
    assert bank.images.shape == (3, 96, 96, 3) and bank.images.dtype == np.uint8
    for i, record in enumerate(records):
        m = record.num_objects
        assert bank.counts[i] == m
        np.testing.assert_allclose(bank.boxes[i, :m], record.boxes)
        assert bank.labels[i, :m].tolist() == record.labels.tolist()
    # crops larger than the images are zero padded
    big = dataclasses.replace(SPEC, crop_size=128)
    config = _config().replace(image_size=(128, 128))
    crop, targets = crops.make_crop_sampler(bank, config, big, augment=False)(tf.constant(0, tf.int64))
    assert crop.shape == (128, 128, 3)


def test_records_with_voc_convention_are_converted(tmp_path):
    import cv2

    path = str(tmp_path / "a.png")
    cv2.imwrite(path, np.zeros((80, 90, 3), np.uint8))
    record = Record(path, "a", 90, 80, [[11, 21, 30, 40]], [2], [False], convention="voc")
    bank = crops.load_image_bank([record])
    np.testing.assert_allclose(bank.boxes[0, 0], [10, 20, 30, 40])
    with pytest.raises(ValueError):
        crops.load_image_bank([])


def _pre_seam_crop_targets(pos_boxes, pos_labels, cut_boxes, cut_visible, anchors, ignore_iou):
    """The crop targets as the digits job computed them before the family seam (for identity)."""
    targets = encode_targets_for_config(pos_boxes, pos_labels, _config(), anchors=anchors)
    corners = center_to_corners(anchors)
    iou = pairwise_iou(tf.concat([cut_boxes, cut_visible], 0), corners)
    near = tf.reduce_any(iou >= ignore_iou, axis=0)
    labels = targets["labels"]
    return {"labels": tf.where(near & tf.equal(labels, 0), -1, labels), "boxes": targets["boxes"]}


def test_ssd_encoder_ignore_labels_reproduce_the_pre_seam_crop_targets():
    """Boxes labelled -1 do inside the SSD encoder exactly what the crop module did by hand."""
    config = _config()
    encode = config.family.target_encoder(config, (S, S))
    anchors = tf.constant(config.anchors((S, S)))
    rng = np.random.default_rng(0)
    for trial in range(12):
        p, q = rng.integers(0, 4), rng.integers(0, 3)
        xy = rng.uniform(-0.2, 0.8, (p + q, 2))
        wh = rng.uniform(0.1, 0.4, (p + q, 2))
        boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
        pos = np.clip(boxes[:p], 0, 1)
        cut, visible = boxes[p:], np.clip(boxes[p:], 0, 1)
        labels = rng.integers(1, 11, p).astype(np.int32)
        got = encode(np.concatenate([pos, cut, visible]),
                     np.concatenate([labels, -np.ones(2 * q, np.int32)]))
        want = _pre_seam_crop_targets(pos, labels, cut, visible, anchors,
                                      config.head.ignore_iou_threshold)
        np.testing.assert_array_equal(got["labels"].numpy(), want["labels"].numpy())
        np.testing.assert_array_equal(got["boxes"].numpy(), want["boxes"].numpy())


def test_crops_feed_any_family():
    """The same crop sampler gives CenterNet targets for a CenterNet config (its own encoder)."""
    from ssd_keras import presets
    config = presets.get("centernet_digits").replace(image_size=(S, S))
    ds = crops.crop_dataset(_coordinate_bank(), config, batch_size=2, spec=SPEC, seed=1)
    images, targets = next(iter(ds))
    assert images.shape == (2, S, S, 3)
    assert targets["heatmap"].shape == (2, S // 4, S // 4, 10)
    assert float(tf.reduce_max(targets["heatmap"])) == 1.0   # some object centre in the crops
