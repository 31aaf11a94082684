"""CenterNet models: the ResNet101-FPN 512 graph, the small model's .keras round trip and loss trackers."""
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from ssd_keras import presets
from ssd_keras.families import FAMILIES, get_family
from ssd_keras.families.centernet import CenterNetFamily, CenterNetModel
from ssd_keras.models.base import build_inference_model


def _tiny_config(**changes):
    fields = dict(name="centernet_tiny", image_size=(32, 48), num_classes=3, class_names=None,
                  backbone=dict(widths=(8, 8, 16), blocks=(1, 1, 1), fpn_channels=(8, 16)),
                  head_channels=8, max_objects=4, weight_decay=1e-4)
    return presets.get("centernet_digits").replace(**{**fields, **changes})


def _targets(config, batch):
    encode = get_family("centernet").target_encoder(config)
    one = encode(tf.constant([[0.1, 0.2, 0.4, 0.7], [0.5, 0.1, 0.9, 0.6]]), tf.constant([1, 3]))
    return {k: tf.stack([v] * batch) for k, v in one.items()}


def test_family_is_registered():
    assert isinstance(FAMILIES["centernet"], CenterNetFamily)
    assert get_family("centernet").loss_names == ("object_center", "box_scale", "box_offset")
    head = get_family("centernet").head_from_dict({"kind": "centernet", "output_stride": 4})
    assert head.heatmap_prior_bias == -2.19 and head.size_loss_weight == 0.1
    with pytest.raises(ValueError, match="unknown CenterNetHead fields"):
        get_family("centernet").head_from_dict({"kind": "centernet", "stride": 4})


def test_resnet101_fpn_512_builds_with_stride_4_outputs():
    config = presets.get("centernet_resnet101_fpn_512")
    model = CenterNetModel(config)
    shapes = {k: tuple(v.shape) for k, v in zip(("object_center", "box_scale", "box_offset"),
                                                (model.output["object_center"],
                                                 model.output["box_scale"],
                                                 model.output["box_offset"]))}
    assert shapes == {"object_center": (None, 128, 128, 90), "box_scale": (None, 128, 128, 2),
                      "box_offset": (None, 128, 128, 2)}
    # ResNet101 without top 42,658,176; FPN 1,275,840 (1x1 2048->256, then 1x1 1024->256 +
    # 3x3 256->128 + BN, 1x1 512->128 + 3x3 128->64 + BN, 1x1 256->64 + 3x3 64->64 + BN, all
    # with biases); heads 467,294 (3 x [3x3 64->256] + 1x1 256->90, 256->2, 256->2)
    assert model.get_layer("resnet101").count_params() == 42_658_176
    assert model.count_params() == 42_658_176 + 1_275_840 + 467_294 == 44_401_310
    bias = model.get_layer("object_center_predictor").get_weights()[1]
    np.testing.assert_allclose(bias, -2.19)


def test_small_model_keras_round_trip_is_bit_identical(tmp_path):
    model = CenterNetModel(_tiny_config())
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 48, 3)).astype(np.float32)
    path = os.path.join(tmp_path, "centernet.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, CenterNetModel)
    assert loaded.detector_config == model.detector_config
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    out_a, out_b = model(images), loaded(images)
    for key in out_a:
        np.testing.assert_array_equal(np.asarray(out_a[key]), np.asarray(out_b[key]))


def test_fit_tracks_each_loss_component_and_inference_model_decodes():
    config = _tiny_config()
    model = CenterNetModel(config)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    images = np.random.default_rng(1).uniform(0, 255, (4, 32, 48, 3)).astype(np.float32)
    ds = tf.data.Dataset.from_tensors((images, _targets(config, 4))).repeat(2)
    history = model.fit(ds, epochs=1, verbose=0)
    logs = {k: v[-1] for k, v in history.history.items()}
    for name in ("object_center_loss", "box_scale_loss", "box_offset_loss", "regularization_loss"):
        assert name in logs and np.isfinite(logs[name])
    assert logs["regularization_loss"] > 0
    total = sum(logs[f"{n}_loss"] for n in ("object_center", "box_scale", "box_offset",
                                             "regularization"))
    assert logs["loss"] == pytest.approx(total, rel=1e-4)
    inference = build_inference_model(model, max_detections=7)
    det = inference(images[:1])
    assert tuple(det["boxes"].shape) == (1, 7, 4)
    assert float(np.max(det["boxes"])) <= 48.0
    per_image = model.detect(images[:2], score_threshold=0.0)
    assert len(per_image) == 2 and per_image[0]["boxes"].shape[1] == 4


def test_config_errors_name_the_value():
    with pytest.raises(ValueError, match="unknown backbone option"):
        CenterNetModel(_tiny_config(backbone=dict(widths=(8, 8, 16), blocks=(1, 1, 1),
                                                  fpn_channels=(8, 16), depth=3)))
    with pytest.raises(ValueError, match="multiple of the output stride"):
        _tiny_config(image_size=(30, 48))
    with pytest.raises(ValueError, match="unknown architecture 'vgg'"):
        CenterNetModel(_tiny_config(architecture="vgg"))


def test_saved_centernet_reloads_after_plain_import_ssd_keras(tmp_path):
    """A fresh process that only does ``import ssd_keras`` reloads a CenterNet .keras (safe mode)."""
    import subprocess
    import sys

    path = os.path.join(tmp_path, "centernet.keras")
    CenterNetModel(_tiny_config()).save(path)
    code = ("import keras, ssd_keras; m = keras.saving.load_model(%r); "
            "print(type(m).__name__, m.detector_config.head.kind)" % path)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-2:] == ["CenterNetModel", "centernet"]
