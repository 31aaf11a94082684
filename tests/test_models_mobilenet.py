"""SSD MobileNet v2 and FPNLite builders (ssd_keras.models.mobilenet), all at weights=None.

Small variants (alpha 0.35, 128x128 inputs) stand in wherever the test is not
about a preset's exact size.
"""
import numpy as np
import pytest

keras = pytest.importorskip("keras")

import ssd_keras  # noqa: E402
from ssd_keras import presets  # noqa: E402
from ssd_keras.config import MultiscaleAnchors  # noqa: E402
from ssd_keras.models import mobilenet  # noqa: E402

# count_params() of the presets (80 classes); the module docstring quotes them.
PRESET_PARAMS = {
    "ssd_mobilenet_v2_320": 5_924_116,
    "ssd_mobilenet_v2_fpnlite_320": 2_658_488,
    "ssd_mobilenet_v2_fpnlite_640": 2_658_488,
}


def small_ssd(size=128, **backbone):
    """ssd_mobilenet_v2_320 at alpha 0.35 on ``size`` x ``size`` (8, 4, 2, 1, 1, 1 at 128)."""
    base = presets.get("ssd_mobilenet_v2_320")
    return base.replace(name="small_ssd", image_size=(size, size), num_classes=3,
                        backbone={**base.backbone, "depth_multiplier": 0.35, **backbone})


def digits_like(size=128, levels=(3, 4), **backbone):
    """A small-object FPNLite like the synthetic-digits one: alpha 0.35, fpn_depth 64."""
    lo, hi = levels
    base = presets.get("ssd_mobilenet_v2_fpnlite_320")
    return base.replace(
        name=f"digits_like_{size}", image_size=(size, size), num_classes=10,
        anchor_generator=MultiscaleAnchors(min_level=lo, max_level=hi, anchor_scale=2.0,
                                           scales_per_octave=2, aspect_ratios=(1.0, 2.0, 0.5)),
        feature_strides=tuple(2 ** level for level in range(lo, hi + 1)),
        backbone={**base.backbone, "depth_multiplier": 0.35, "fpn_depth": 64,
                  "fpn_min_level": lo, "fpn_max_level": hi, "box_predictor_depth": 32,
                  "num_layers_before_predictor": 2, **backbone})


def images(config, batch=1, seed=0):
    h, w = config.image_size
    return np.random.default_rng(seed).uniform(0, 255, (batch, h, w, 3)).astype("float32")


def predict(model, x):
    """Eager forward pass in inference mode (numpy dict); avoids tracing ``predict``."""
    return {k: keras.ops.convert_to_numpy(v) for k, v in model(x, training=False).items()}


def perturb_weights(model, seed=0):
    """Move every weight (BatchNorm statistics included) off its initial value."""
    rng = np.random.default_rng(seed)
    model.set_weights([w + 0.01 * rng.standard_normal(w.shape).astype(w.dtype)
                       for w in model.get_weights()])


@pytest.mark.parametrize("name", sorted(PRESET_PARAMS))
def test_preset_builds_and_predicts_one_box_per_anchor(name):
    config = presets.get(name)
    model = ssd_keras.build_model(config)
    batch = 1 if "640" in name else 2
    out = predict(model, images(config, batch))
    n = config.num_anchors()
    assert n == {"ssd_mobilenet_v2_320": 2034, "ssd_mobilenet_v2_fpnlite_320": 12804,
                 "ssd_mobilenet_v2_fpnlite_640": 51150}[name]
    assert out["classification"].shape == (batch, n, 80)
    assert out["regression"].shape == (batch, n, 4)
    assert np.isfinite(out["classification"]).all() and np.isfinite(out["regression"]).all()
    assert model.count_params() == PRESET_PARAMS[name]


def test_ssd_mobilenet_v2_sources_and_extra_layers():
    config = presets.get("ssd_mobilenet_v2_320")
    model = ssd_keras.build_model(config)
    sources = ["block_13_expand_relu", "out_relu", "layer_19_2_Conv2d_2_3x3_s2_512_relu6",
               "layer_19_2_Conv2d_3_3x3_s2_256_relu6", "layer_19_2_Conv2d_4_3x3_s2_256_relu6",
               "layer_19_2_Conv2d_5_3x3_s2_128_relu6"]
    shapes = [tuple(model.get_layer(s).output.shape[1:]) for s in sources]
    assert shapes == [(20, 20, 576), (10, 10, 1280), (5, 5, 512), (3, 3, 256), (2, 2, 256),
                      (1, 1, 128)]
    assert config.get_feature_map_sizes() == ((20, 20), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1))
    # Class bias starts at the focal-loss prior (-4.6), box heads are 1x1.
    conf = model.get_layer("box_predictor_0_mbox_conf")
    assert conf.kernel.shape[:2] == (1, 1)
    np.testing.assert_allclose(conf.bias.numpy(), -4.6)


def test_fpnlite_levels_and_anchors_per_level():
    config = presets.get("ssd_mobilenet_v2_fpnlite_320")
    assert config.get_feature_map_sizes() == ((40, 40), (20, 20), (10, 10), (5, 5), (3, 3))
    assert config.boxes_per_cell() == (6,) * 5
    model = ssd_keras.build_model(config)
    maps = ["fpn_smoothing_3_relu6", "fpn_smoothing_4_relu6", "fpn_projection_5",
            "bottom_up_Conv2d_20_relu6", "bottom_up_Conv2d_21_relu6"]
    assert [tuple(model.get_layer(m).output.shape[1:]) for m in maps] == [
        (40, 40, 128), (20, 20, 128), (10, 10, 128), (5, 5, 128), (3, 3, 128)]
    per_level = [model.get_layer(f"level_{level}_class_reshape").output.shape[1]
                 for level in range(3, 8)]
    assert per_level == [40 * 40 * 6, 20 * 20 * 6, 10 * 10 * 6, 5 * 5 * 6, 3 * 3 * 6]
    assert sum(per_level) == config.num_anchors() == 12804
    # The backbone endpoints at strides 8, 16, 32 (alpha 1 channel counts).
    assert tuple(model.get_layer("block_5_add").output.shape[1:]) == (40, 40, 32)
    assert tuple(model.get_layer("block_12_add").output.shape[1:]) == (20, 20, 96)
    # One tower / head shared by every level, a BatchNorm per level.
    assert len(model.get_layer("box_tower_conv_0")._inbound_nodes) == 5
    assert len(model.get_layer("class_predictor")._inbound_nodes) == 5
    assert {f"box_tower_0_level_{level}_batchnorm" for level in range(3, 8)} <= {
        layer.name for layer in model.layers}
    np.testing.assert_allclose(model.get_layer("class_predictor").bias.numpy(), -4.6)


def _extra_layer_params(config, min_depth):
    """Parameters that depend on ``min_depth`` in a small_ssd variant: the extra layers and
    their heads (analytic: convs without bias + BatchNorm, 1x1 class and box heads)."""
    depth = mobilenet.depth_fn(config.backbone["depth_multiplier"], min_depth)
    total, c_in = 0, 1280
    for d, boxes in zip(config.backbone["extra_layer_depths"], config.boxes_per_cell()[2:]):
        mid, out = depth(d // 2), depth(d)
        total += c_in * mid + 4 * mid + 9 * mid * out + 4 * out
        total += (out + 1) * boxes * (config.num_outputs + 4)
        c_in = out
    return total


def test_min_depth_and_depth_multiplier_change_the_extra_layers():
    counts = {}
    for min_depth in (16, 128):
        config = small_ssd(min_depth=min_depth)
        model = ssd_keras.build_model(config)
        counts[min_depth] = model.count_params()
        keras.backend.clear_session()
    # alpha 0.35: mid depths 89, 44, 44, 22 and outputs 179, 89, 89, 44; min_depth 128
    # lifts all but the first output to 128.
    expected = _extra_layer_params(small_ssd(), 128) - _extra_layer_params(small_ssd(), 16)
    assert expected > 0
    assert counts[128] - counts[16] == expected
    assert tuple(model.get_layer("layer_19_2_Conv2d_2_3x3_s2_179").kernel.shape) == (3, 3, 128, 179)


def test_regularization_covers_backbone_and_scales_with_weight_decay():
    config = small_ssd()
    model = ssd_keras.build_model(config)
    assert model.get_layer("Conv1").kernel.regularizer is not None
    assert model.get_layer("block_13_depthwise").kernel.regularizer is not None
    kernels = [v for v in model.trainable_weights if v.name in ("kernel", "depthwise_kernel")]
    assert len(model.losses) == len(kernels) > 60
    twice = ssd_keras.build_model(config.replace(weight_decay=2 * config.weight_decay))
    twice.set_weights(model.get_weights())
    loss, loss2 = (float(sum(keras.ops.sum(v) for v in m.losses)) for m in (model, twice))
    assert loss > 0
    np.testing.assert_allclose(loss2, 2 * loss, rtol=1e-5)
    assert ssd_keras.build_model(config.replace(weight_decay=0.0)).losses == []


@pytest.mark.parametrize("make", [small_ssd, digits_like], ids=["ssd_mobilenet_v2", "fpnlite"])
def test_keras_round_trip_is_bit_identical(make, tmp_path):
    config = make()
    model = ssd_keras.build_model(config)
    perturb_weights(model)
    x = images(config, 2)
    before = predict(model, x)
    path = tmp_path / "model.keras"
    model.save(path)
    keras.backend.clear_session()
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, ssd_keras.DetectorModel)
    assert loaded.detector_config == config
    after = predict(loaded, x)
    for key in ("classification", "regression"):
        np.testing.assert_array_equal(before[key], after[key])


def test_fit_step_with_focal_loss_is_finite():
    import tensorflow as tf
    from ssd_keras.families.ssd.matching import encode_targets_for_config

    config = digits_like(levels=(3, 4))
    assert config.classification_loss == "sigmoid_focal"
    model = ssd_keras.build_model(config)
    anchors = config.anchors()
    gt = [(np.array([[0.1, 0.1, 0.3, 0.35], [0.5, 0.4, 0.7, 0.7]], "float32"), np.array([1, 7])),
          (np.zeros((0, 4), "float32"), np.zeros((0,), "int32"))]
    targets = [encode_targets_for_config(b, l, config, anchors) for b, l in gt]
    y = {key: tf.stack([t[key] for t in targets]).numpy() for key in ("labels", "boxes")}
    assert (y["labels"] > 0).sum() >= 2
    # Eager: the same train_step and loss code; tracing a MobileNetV2 backward pass
    # would cost 35-60 s on two busy cores.
    model.compile(keras.optimizers.Adam(1e-3), run_eagerly=True)
    history = model.fit(images(config, 2), y, epochs=1, steps_per_epoch=1, verbose=0)
    for key in ("loss", "classification_loss", "localization_loss", "regularization_loss"):
        assert np.isfinite(history.history[key][0]), key
    assert history.history["regularization_loss"][0] > 0


def test_weights_transfer_from_128_to_512_for_a_small_object_fpnlite():
    train = digits_like(128, levels=(2, 4))
    model = ssd_keras.build_model(train)
    # fpn_depth 64 is scaled like TF OD's additional_layer_depth: max(int(64 * 0.35), 16).
    assert model.get_layer("fpn_projection_2").kernel.shape[-1] == 22
    assert tuple(model.get_layer("block_2_add").output.shape[1:3]) == (32, 32)
    perturb_weights(model)
    big = ssd_keras.build_model(train.replace(name="digits_like_512", image_size=(512, 512)))
    big.set_weights(model.get_weights())
    for a, b in zip(model.get_weights(), big.get_weights()):
        np.testing.assert_array_equal(a, b)
    out = predict(big, images(big.detector_config, 1))
    n = big.detector_config.num_anchors()
    assert n == (128 * 128 + 64 * 64 + 32 * 32) * 6
    assert out["classification"].shape == (1, n, 10) and np.isfinite(out["regression"]).all()


def test_mismatched_feature_maps_and_levels_raise():
    with pytest.raises(ValueError, match="block_13_expand_relu"):
        ssd_keras.build_model(small_ssd().replace(
            feature_map_sizes=((9, 9), (4, 4), (2, 2), (1, 1), (1, 1), (1, 1))))
    with pytest.raises(ValueError, match="anchor levels"):
        config = digits_like(levels=(3, 4))
        ssd_keras.build_model(config.replace(backbone={**config.backbone, "fpn_min_level": 2}))
    with pytest.raises(ValueError, match="feature_strides"):
        ssd_keras.build_model(digits_like(levels=(3, 4)).replace(feature_strides=(8, 32)))


def test_imagenet_weights_option_loads_a_backbone_file_into_the_flat_backbone(tmp_path,
                                                                             monkeypatch):
    """``imagenet_weights=PATH`` (any alpha): build_model loads the file by layer name, offline."""
    from ssd_keras.pretrained import write_layer_weights_h5

    reference = keras.applications.MobileNetV2(input_shape=(128, 128, 3), include_top=False,
                                               weights=None, alpha=0.35)
    perturb_weights(reference)
    path = tmp_path / "mobilenet_v2_no_top.h5"
    write_layer_weights_h5(path, [(layer.name, [(v.name, v.numpy()) for v in layer.weights])
                                  for layer in reference.layers if layer.weights])

    def no_download(*args, **kwargs):
        raise AssertionError("tried to download")

    monkeypatch.setattr(keras.utils, "get_file", no_download)
    model = ssd_keras.build_model(digits_like(levels=(3, 5), imagenet_weights=str(path)))
    for name in ("Conv1", "block_12_project", "Conv_1", "Conv_1_bn"):
        for got, want in zip(model.get_layer(name).get_weights(),
                             reference.get_layer(name).get_weights()):
            np.testing.assert_array_equal(got, want)
    # the graph alone (what keras.saving.load_model rebuilds) reads no file
    assert not np.array_equal(mobilenet_graph_only(model).get_layer("Conv1").kernel.numpy(),
                              reference.get_layer("Conv1").kernel.numpy())


def mobilenet_graph_only(model):
    from ssd_keras.models.base import SSDModel

    return SSDModel(model.detector_config)
