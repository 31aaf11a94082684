"""Tests for ssd_keras.data.pipeline on a small VOC-layout tree of real JPEGs."""
import os

import cv2
import numpy as np
import pytest
import tensorflow as tf

from ssd_keras import presets
from ssd_keras.boxes import decode_boxes
from ssd_keras.data import pipeline
from ssd_keras.data.records import Record, normalized_boxes
from ssd_keras.data.voc import read_voc
from tests.voc_fixtures import make_voc_tree


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    root = tmp_path_factory.mktemp("voc")
    voc = make_voc_tree(root, num_images=5)
    recs = read_voc(voc, "trainval")
    # one image without objects, as a PNG (decode_image path)
    empty = os.path.join(str(root), "empty.png")
    cv2.imwrite(empty, np.full((240, 320, 3), 90, np.uint8))
    recs.append(Record(image_path=empty, image_id="empty", width=320, height=240,
                       boxes=np.zeros((0, 4)), labels=[], difficult=[], convention="coco"))
    return recs


def _first_batches(ds, count):
    return [tf.nest.map_structure(lambda t: t.numpy(), b) for b in ds.take(count)]


@pytest.mark.parametrize("preset", ["ssd300_voc", "ssd512_voc"])
def test_training_batch_shapes_and_dtypes(records, preset):
    config = presets.get(preset)
    height, width = config.image_size
    n = config.num_anchors()
    ds = pipeline.make_dataset(records, config, batch_size=2, training=True, seed=0)
    images, targets = next(iter(ds))
    assert images.shape == (2, height, width, 3) and images.dtype == tf.float32
    assert 0.0 <= float(tf.reduce_min(images)) and float(tf.reduce_max(images)) <= 255.0
    assert targets["labels"].shape == (2, n) and targets["labels"].dtype == tf.int32
    assert targets["boxes"].shape == (2, n, 4) and targets["boxes"].dtype == tf.float32
    assert int(tf.reduce_max(targets["labels"])) <= config.num_classes
    assert ds.element_spec[0].shape == (2, height, width, 3)  # static for Keras


def test_eval_targets_decode_to_ground_truth(records):
    config = presets.get("ssd300_voc")
    anchors = config.anchors()
    ds = pipeline.make_dataset(records, config, batch_size=2, training=False)
    position = 0
    for images, targets in ds:
        for labels, offsets in zip(targets["labels"].numpy(), targets["boxes"].numpy()):
            record = records[position]
            position += 1
            gt = normalized_boxes(record)
            positive = labels > 0
            if record.num_objects == 0:
                assert not positive.any() and not np.any(offsets)
                continue
            decoded = decode_boxes(offsets[positive], anchors[positive], config.variances).numpy()
            # every positive decodes to a ground-truth box of its class ...
            distance = np.abs(decoded[:, None, :] - gt[None, :, :]).max(axis=-1)
            nearest = distance.argmin(axis=1)
            np.testing.assert_array_less(distance.min(axis=1), 1e-4)
            np.testing.assert_array_equal(labels[positive], record.labels[nearest])
            # ... and every ground-truth box has an anchor (bipartite matching)
            assert set(nearest) == set(range(record.num_objects))
    assert position == len(records)


def test_deterministic_with_seed(records):
    config = presets.get("ssd300_voc")

    def batches(seed, parallel):
        ds = pipeline.make_dataset(records, config, batch_size=2, training=True, seed=seed,
                                   num_parallel_calls=parallel)
        return _first_batches(ds, 4)  # 8 elements: crosses into the second epoch

    first = batches(5, 2)
    for a, b in zip(first, batches(5, 1)):
        tf.nest.map_structure(np.testing.assert_array_equal, a, b)
    other = batches(6, 2)
    assert not np.array_equal(first[0][0], other[0][0])


def test_new_iterator_reshuffles_and_reaugments_reproducibly(records):
    config = presets.get("ssd300_voc")

    def epochs():
        ds = pipeline.make_dataset(records, config, batch_size=3, training=True, seed=9,
                                   repeat=False)
        return [_first_batches(ds, 2) for _ in range(2)]

    run1, run2 = epochs(), epochs()
    assert not np.array_equal(run1[0][0][0], run1[1][0][0])  # epoch 2 differs from epoch 1
    for a, b in zip(run1, run2):  # but the same seed repeats the whole sequence
        tf.nest.map_structure(np.testing.assert_array_equal, a, b)


def test_image_without_objects_is_all_background(records):
    config = presets.get("ssd300_voc")
    empty = [r for r in records if r.num_objects == 0]
    for training in (True, False):
        ds = pipeline.make_dataset(empty, config, batch_size=1, training=training, seed=1)
        for images, targets in ds.take(3):
            assert images.shape == (1, 300, 300, 3)
            assert not np.any(targets["labels"].numpy())
            assert not np.any(targets["boxes"].numpy())


def test_eval_dataset_indices_and_sizes(records):
    config = presets.get("ssd300_voc")
    ds = pipeline.make_eval_dataset(records, config, batch_size=4)
    indices, sizes = [], []
    for images, info in ds:
        assert images.shape[1:] == (300, 300, 3) and images.dtype == tf.float32
        indices += info["image_index"].numpy().tolist()
        sizes += info["original_size"].numpy().tolist()
    assert indices == list(range(len(records)))
    assert sizes == [[r.height, r.width] for r in records]


def test_preprocess_images_matches_config():
    images = tf.constant([[[[10.0, 20.0, 30.0]]]])
    vgg = presets.get("ssd300_voc")
    np.testing.assert_allclose(pipeline.preprocess_images(images, vgg)[0, 0, 0],
                               [30.0 - 104.0, 20.0 - 117.0, 10.0 - 123.0])
    mobile = vgg.replace(input_scaling="tf", channel_order="rgb")
    np.testing.assert_allclose(pipeline.preprocess_images(images, mobile)[0, 0, 0],
                               [10 / 127.5 - 1, 20 / 127.5 - 1, 30 / 127.5 - 1], rtol=1e-6)
    ds = pipeline.make_dataset(
        [Record(image_path="unused.jpg", image_id=0, width=1, height=1, boxes=[[0, 0, 1, 1]],
                labels=[1], difficult=[False])], vgg, 1, training=False, preprocess=True)
    assert ds.element_spec[0].dtype == tf.float32


@pytest.mark.parametrize("box,problem", [([50, 10, 40, 30], "degenerate"),
                                         ([np.nan, 10, 40, 30], "non-finite")])
def test_bad_boxes_rejected_naming_the_file(box, problem):
    bad = Record(image_path="JPEGImages/000042.jpg", image_id="000042", width=100, height=100,
                 boxes=[box], labels=[1], difficult=[False])
    with pytest.raises(ValueError, match=f"000042.jpg: box 0 .*{problem}"):
        pipeline.make_dataset([bad], presets.get("ssd300_voc"), 1, training=True)


def test_crowd_only_images_skipped_in_training(records):
    config = presets.get("ssd300_voc")
    crowd = Record(image_path=records[1].image_path, image_id="crowd", width=500, height=375,
                   boxes=np.zeros((0, 4)), labels=[], difficult=[], convention="coco",
                   crowd_boxes=[[0, 0, 100, 100]])
    with pytest.raises(ValueError, match="no records"):
        pipeline.make_dataset([crowd], config, 1, training=True)
    ds = pipeline.make_dataset([crowd], config, 1, training=True, skip_crowd=False, seed=0)
    assert not np.any(next(iter(ds))[1]["labels"].numpy())
