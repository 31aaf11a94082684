"""CenterNet decoding: encode -> decode round trip, pixels in the layer, serialisation."""
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from ssd_keras.families import get_family
from ssd_keras.families.centernet import CenterNetDecoder, CenterNetHead, decode_centernet

CONFIG = types.SimpleNamespace(image_size=(128, 160), num_classes=4,
                               head=CenterNetHead(max_objects=16, max_detections=10))


def _perfect_outputs(boxes, labels):
    """Raw outputs a perfect model would give for these boxes (logits +-12)."""
    t = {k: v.numpy() for k, v in get_family("centernet").target_encoder(CONFIG)(
        tf.constant(boxes, tf.float32), tf.constant(labels, tf.int32)).items()}
    h, w, _ = t["heatmap"].shape
    scale = np.zeros((h * w, 2), np.float32)
    offset = np.zeros((h * w, 2), np.float32)
    m = int(t["mask"].sum())
    scale[t["indices"][:m]] = t["box_scale"][:m]
    offset[t["indices"][:m]] = t["box_offset"][:m]
    # a heatmap that peaks exactly where the targets do (a model trained to the targets)
    logits = np.log(np.clip(t["heatmap"], 1e-6, 1 - 1e-6) / (1 - np.clip(t["heatmap"], 1e-6, 1 - 1e-6)))
    return {"object_center": logits[None].astype(np.float32),
            "box_scale": scale.reshape(1, h, w, 2), "box_offset": offset.reshape(1, h, w, 2)}


BOXES = np.array([[0.10, 0.10, 0.25, 0.30], [0.50, 0.40, 0.62, 0.52], [0.70, 0.05, 0.95, 0.45]],
                 np.float32)
LABELS = np.array([2, 4, 1])


def test_encode_decode_round_trip_returns_the_ground_truth():
    det = get_family("centernet").decode(_perfect_outputs(BOXES, LABELS), CONFIG,
                                         score_threshold=0.5)
    n = int(det["num_detections"][0])
    assert n == 3
    boxes = np.asarray(det["boxes"][0, :n])
    classes = np.asarray(det["classes"][0, :n])
    order = np.argsort(boxes[:, 0])
    np.testing.assert_allclose(boxes[order], BOXES[np.argsort(BOXES[:, 0])], atol=1e-5)
    np.testing.assert_array_equal(classes[order], LABELS[np.argsort(BOXES[:, 0])])
    np.testing.assert_allclose(np.asarray(det["scores"][0, :n]), 1 - 1e-6, rtol=1e-5)
    assert np.all(np.asarray(det["classes"][0, n:]) == 0)


def test_peaks_only_and_top_k_over_all_classes():
    out = _perfect_outputs(BOXES, LABELS)
    det = decode_centernet(out, max_detections=5, peak_pool=3, score_threshold=0.0)
    # 3 Gaussian peaks; the cells next to them are no peaks (suppressed), only the flat
    # 1e-6 background far away passes the 3x3 test
    assert np.asarray(det["scores"])[0, 3:].max() < 1e-5
    det = decode_centernet(out, max_detections=5, peak_pool=1, score_threshold=0.0)
    assert np.asarray(det["scores"])[0, 3:].min() > 0.1      # neighbours of the peaks


def test_decoder_layer_gives_pixels_and_round_trips_its_config():
    layer = get_family("centernet").decoder_layer(CONFIG, score_threshold=0.5)
    det = layer(_perfect_outputs(BOXES, LABELS))
    n = int(det["num_detections"][0])
    got = np.sort(np.asarray(det["boxes"][0, :n]), axis=0)
    np.testing.assert_allclose(got, np.sort(BOXES * [160, 128, 160, 128], axis=0), atol=1e-3)
    clone = CenterNetDecoder.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    assert keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer)) \
        .get_config() == layer.get_config()
    with pytest.raises(ValueError, match="unknown override"):
        get_family("centernet").decode(_perfect_outputs(BOXES, LABELS), CONFIG, iou_threshold=0.5)


def test_fewer_cells_than_detections_pads():
    out = {"object_center": np.full((1, 2, 2, 1), 3.0, np.float32),
           "box_scale": np.ones((1, 2, 2, 2), np.float32),
           "box_offset": np.full((1, 2, 2, 2), 0.5, np.float32)}
    det = decode_centernet(out, max_detections=10, peak_pool=1, score_threshold=0.0)
    assert tuple(det["boxes"].shape) == (1, 10, 4)
    assert int(det["num_detections"][0]) == 4
    assert np.all(np.asarray(det["classes"])[0, 4:] == 0)
    np.testing.assert_allclose(np.asarray(det["boxes"])[0, :4].min(), 0.0)
