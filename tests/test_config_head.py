"""DetectorConfig.head: the family head configs, the pre-seam flat format, field access.

``tests/data/legacy/`` was written by the code *before* the family seam (commit
09e15c8): ``ssd300_voc.config.json`` and ``digits_convnet_64.config.json`` with
the SSD fields flat, a 64x64 ``digits_convnet`` ``.keras`` (an ``SSDModel``), its
inference model (``DecodeDetections`` holding the flat config) and the outputs
and detections that code gave on one fixed image.
"""
import json
import os

import keras
import numpy as np
import pytest

from ssd_keras import presets
from ssd_keras.config import DetectorConfig
from ssd_keras.families.centernet.config import CenterNetHead
from ssd_keras.families.ssd.anchors import MultiscaleAnchors
from ssd_keras.families.ssd.head import LEGACY_FIELDS, SSDHead, split_legacy_fields

LEGACY = os.path.join(os.path.dirname(__file__), "data", "legacy")


def test_pre_seam_config_json_loads_into_an_ssd_head():
    path = os.path.join(LEGACY, "ssd300_voc.config.json")
    flat = json.load(open(path))
    assert "head" not in flat and "anchor_generator" in flat       # really the old format
    config = DetectorConfig.from_json(path)
    assert isinstance(config.head, SSDHead)
    assert config == presets.get("ssd300_voc")
    np.testing.assert_array_equal(config.anchors(), presets.get("ssd300_voc").anchors())
    # written again, it is the new format, and loads to the same config
    again = json.loads(config.to_json())
    assert again["head"]["kind"] == "ssd" and "anchor_generator" not in again
    assert DetectorConfig.from_dict(again) == config


def test_pre_seam_keras_files_load_and_predict_identically():
    import ssd_keras  # noqa: F401  (registers the serialisable classes)

    expected = np.load(os.path.join(LEGACY, "digits_convnet_64_expected.npz"))
    model = keras.saving.load_model(os.path.join(LEGACY, "digits_convnet_64.keras"))
    assert type(model).__name__ == "SSDModel" and model.detector_config.head.kind == "ssd"
    assert model.detector_config == DetectorConfig.from_json(
        os.path.join(LEGACY, "digits_convnet_64.config.json"))
    out = model(expected["images"], training=False)
    np.testing.assert_array_equal(out["classification"].numpy(), expected["classification"])
    np.testing.assert_array_equal(out["regression"].numpy(), expected["regression"])
    det = model.detect(expected["images"], score_threshold=0.0)[0]
    np.testing.assert_array_equal(det["boxes"], expected["boxes"])
    np.testing.assert_array_equal(det["scores"], expected["scores"])
    np.testing.assert_array_equal(det["labels"], expected["labels"])

    inference = keras.saving.load_model(os.path.join(LEGACY, "digits_convnet_64_inference.keras"))
    got = inference(expected["images"])
    n = len(expected["boxes"])
    assert int(got["num_detections"][0]) == n
    np.testing.assert_allclose(got["boxes"].numpy()[0, :n], expected["boxes"] * 64, atol=1e-4)
    np.testing.assert_array_equal(got["classes"].numpy()[0, :n], expected["labels"])


def test_split_legacy_fields_moves_exactly_the_ssd_fields():
    flat = {"name": "x", "num_classes": 3, "max_detections": 7, "variances": [1, 1, 1, 1]}
    split = split_legacy_fields(flat)
    assert split == {"name": "x", "num_classes": 3,
                     "head": {"kind": "ssd", "max_detections": 7, "variances": [1, 1, 1, 1]}}
    assert split_legacy_fields({"head": {"kind": "centernet"}}) == {"head": {"kind": "centernet"}}
    assert "weight_decay" not in LEGACY_FIELDS and "anchor_generator" in LEGACY_FIELDS


def test_ssd_fields_read_through_and_replace_routes_to_the_head():
    config = presets.get("digits_convnet")
    assert config.anchor_generator is config.head.anchor_generator
    assert config.max_detections == config.head.max_detections == 100
    assert config.num_outputs == 10                                   # sigmoid focal: K
    assert presets.get("ssd300_voc").num_outputs == 21               # softmax: K + 1
    changed = config.replace(max_detections=50, num_classes=10, feature_strides=(4, 8))
    assert changed.head.max_detections == 50 and changed.head.feature_strides == (4, 8)
    assert changed.head.anchor_generator == config.head.anchor_generator
    spec = MultiscaleAnchors(min_level=3, max_level=4)
    assert config.replace(anchor_generator=spec, feature_strides=(8, 16)).anchor_generator == spec
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['max_detection'\] for a ssd"):
        config.replace(max_detection=50)
    with pytest.raises(ValueError, match="2 feature_strides for 3"):
        config.replace(feature_strides=(8, 16), anchor_generator=MultiscaleAnchors(
            min_level=2, max_level=4))


def test_centernet_presets_are_detector_configs():
    config = presets.get("centernet_resnet101_fpn_512")
    assert isinstance(config, DetectorConfig) and isinstance(config.head, CenterNetHead)
    assert (config.architecture, config.image_size, config.num_classes) == (
        "resnet101_fpn", (512, 512), 90)
    assert config.family.kind == "centernet"
    assert DetectorConfig.from_json(config.to_json()) == config
    digits = presets.get("centernet_digits", max_detections=20)
    assert digits.head.max_detections == 20 and digits.max_detections == 20
    with pytest.raises(AttributeError, match="anchors\\(\\) is an SSD head's; this is a "
                                             "'centernet' detector"):
        digits.anchors()
    assert not hasattr(digits, "anchor_generator")
    with pytest.raises(ValueError, match="not a multiple of the output stride 4"):
        digits.replace(image_size=(30, 48))
    with pytest.raises(ValueError, match="head config without 'kind'"):
        DetectorConfig.from_dict({**digits.to_dict(), "head": {"output_stride": 4}})
