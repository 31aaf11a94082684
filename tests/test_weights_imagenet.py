"""The shipped ImageNet MobileNetV2 backbone: conversion from the TF-slim arrays, offline
loading by layer name (with its report), and saved models that never download."""
import hashlib
import os
from pathlib import Path

import keras
import numpy as np
import pytest

import ssd_keras
from ssd_keras import presets, pretrained, weights

@pytest.fixture(scope="module")
def shipped_arrays():
    return weights.read_layer_h5(pretrained.shipped_path())


def test_shipped_backbone_equals_the_tf_slim_arrays_layer_by_layer(shipped_arrays,
                                                                   mobilenet_v2_npy):
    """Every layer of the shipped file is exactly the TF-slim arrays (slim -> Keras names)."""
    npy = Path(mobilenet_v2_npy)
    net = pretrained.mobilenet_v2_backbone()
    with_weights = [layer for layer in net.layers if layer.weights]
    assert list(shipped_arrays) == [layer.name for layer in with_weights]      # 104 layers
    assert len(with_weights) == 104
    assert sum(a.size for arrays in shipped_arrays.values() for a in arrays) == 2_257_984
    for layer in with_weights:
        expected = pretrained.slim_arrays_for_layer(npy, layer)
        got = shipped_arrays[layer.name]
        assert len(got) == len(expected) == len(layer.weights), layer.name
        for a, b in zip(got, expected):
            assert a.dtype == np.float32 and a.shape == b.shape, layer.name
            np.testing.assert_array_equal(a, b, err_msg=layer.name)
    # spot checks of the mapping itself, against the file names of the README
    np.testing.assert_array_equal(shipped_arrays["Conv1"][0], np.load(npy / "Conv_weights.npy"))
    np.testing.assert_array_equal(shipped_arrays["block_16_project_BN"][3], np.load(
        npy / "expanded_conv_16_project_BatchNorm_moving_variance.npy"))
    np.testing.assert_array_equal(shipped_arrays["expanded_conv_depthwise"][0], np.load(
        npy / "expanded_conv_depthwise_depthwise_weights.npy"))


def test_converter_command_rebuilds_the_shipped_file_bit_for_bit(tmp_path, capsys,
                                                                 mobilenet_v2_npy):
    from ssd_keras.__main__ import main

    out = tmp_path / "mobilenet_v2.h5"
    assert main(["weights", "convert-mobilenet-v2", "--npy", mobilenet_v2_npy, "--out", str(out)]) == 0
    assert '"parameters": 2257984' in capsys.readouterr().out
    assert out.read_bytes() == Path(pretrained.shipped_path()).read_bytes()


def test_converter_names_a_missing_folder_or_array(tmp_path, capsys):
    from ssd_keras.__main__ import main

    assert main(["weights", "convert-mobilenet-v2", "--npy", str(tmp_path / "nope"),
                 "--out", str(tmp_path / "x.h5")]) == 1
    assert "nope: not a folder" in capsys.readouterr().err
    assert main(["weights", "convert-mobilenet-v2", "--npy", str(tmp_path),
                 "--out", str(tmp_path / "x.h5")]) == 1
    assert "Conv_weights.npy: missing (layer Conv1)" in capsys.readouterr().err
    assert not (tmp_path / "x.h5").exists()


def test_manifest_registers_the_shipped_file_with_its_hash_and_licence():
    entry = weights.read_manifest()["mobilenet_v2_1.0_imagenet_no_top"]
    path = pretrained.shipped_path()
    with open(path, "rb") as handle:
        assert entry["sha256"] == hashlib.sha256(handle.read()).hexdigest()
    assert entry["size"] == os.path.getsize(path)
    assert entry["verified"] is True and entry["format"] == "legacy_h5"
    assert "Apache-2.0" in entry["licence"] and "MIT" in entry["licence"]
    # the manifest and what it ships are package data, found without the repository
    assert os.path.dirname(weights.DEFAULT_MANIFEST) == os.path.dirname(path)


def test_shipped_file_is_a_keras_applications_weights_file(shipped_arrays, offline):
    net = keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=1.0, include_top=False,
                                         weights=pretrained.shipped_path())
    np.testing.assert_array_equal(net.get_layer("Conv_1_bn").get_weights()[2],
                                  shipped_arrays["Conv_1_bn"][2])


def test_imagenet_for_a_mobilenet_preset_loads_the_shipped_file_offline(shipped_arrays, offline,
                                                                        capsys):
    model = ssd_keras.build_model("ssd_mobilenet_v2_fpnlite_320")
    report = weights.load_into(model, "imagenet")
    assert sorted(report["loaded"]) == sorted(shipped_arrays)              # all 104 backbone layers
    assert report["skipped"] == [] and report["mismatched"] == {}
    assert "box_tower_conv_0" in report["missing"] and "Conv1" not in report["missing"]
    printed = capsys.readouterr().out
    assert "104 layers loaded, 0 skipped" in printed and "not in the file: fpn_projection" in printed
    for name in ("Conv1", "block_7_depthwise_BN", "Conv_1"):
        for got, want in zip(model.get_layer(name).get_weights(), shipped_arrays[name]):
            np.testing.assert_array_equal(got, want)


def test_a_model_built_from_imagenet_weights_reloads_offline_with_the_same_predictions(
        tmp_path, offline, shipped_arrays):
    base = presets.get("ssd_mobilenet_v2_320")
    config = base.replace(backbone={**base.backbone, "imagenet_weights": True})
    model = ssd_keras.build_model(config)
    np.testing.assert_array_equal(model.get_layer("block_3_expand").kernel.numpy(),
                                  shipped_arrays["block_3_expand"][0])
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    assert reloaded.detector_config.backbone["imagenet_weights"] is True   # the source is recorded
    images = np.random.default_rng(0).uniform(0, 255, (1, 320, 320, 3)).astype("float32")
    want, got = model.predict(images, verbose=0), reloaded.predict(images, verbose=0)
    for key in want:
        np.testing.assert_array_equal(got[key], want[key])


def test_imagenet_at_another_width_says_which_file_to_give():
    base = presets.get("ssd_mobilenet_v2_fpnlite_320")
    config = base.replace(backbone={**base.backbone, "depth_multiplier": 0.5})
    with pytest.raises(ValueError, match="depth_multiplier 1.0.*0.5_224_no_top.h5"):
        ssd_keras.build_model(config, weights="imagenet")


def test_keras3_backbone_weights_file_loads_by_layer_name(tmp_path, shipped_arrays, capsys):
    """A ``.weights.h5`` saved from keras.applications.MobileNetV2 (keyed by position)."""
    net = pretrained.mobilenet_v2_backbone()
    net.set_weights([w for layer in net.layers if layer.weights
                     for w in shipped_arrays[layer.name]])
    path = tmp_path / "mobilenet_v2_backbone.weights.h5"
    net.save_weights(path)
    model = ssd_keras.build_model("ssd_mobilenet_v2_fpnlite_320")
    report = weights.load_into(model, str(path))
    assert len(report["loaded"]) == 104 and report["skipped"] == []
    assert "(MobileNetV2(alpha=1))" in capsys.readouterr().out
    np.testing.assert_array_equal(model.get_layer("block_16_project").kernel.numpy(),
                                  shipped_arrays["block_16_project"][0])
    # the model's own .weights.h5 still loads whole (no report)
    own = tmp_path / "own.weights.h5"
    model.save_weights(own)
    again = ssd_keras.build_model("ssd_mobilenet_v2_fpnlite_320")
    assert weights.load_into(again, str(own)) is None
    for a, b in zip(again.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_shape_mismatches_are_named_or_skipped_and_reported(tmp_path, shipped_arrays):
    arrays = dict(shipped_arrays)
    arrays["Conv1"] = [np.zeros((3, 3, 3, 16), "float32")]   # a narrower first conv
    arrays["not_a_layer"] = [np.zeros((2,), "float32")]
    model = ssd_keras.build_model("ssd_mobilenet_v2_fpnlite_320")
    with pytest.raises(ValueError, match=r"layer Conv1 has weights \[\(3, 3, 3, 16\)\]"):
        weights.load_layer_weights(model, arrays, "edited.h5")
    report = weights.load_layer_weights(model, arrays, "edited.h5", skip_mismatch=True,
                                        verbose=False)
    assert report["skipped"] == ["Conv1", "not_a_layer"]
    assert report["mismatched"] == {"Conv1": "[(3, 3, 3, 16)] vs model [(3, 3, 3, 32)]"}
    assert "Conv1" not in report["missing"] and len(report["loaded"]) == 103   # listed once
    text = weights.format_load_report(report)
    assert "shape mismatch: Conv1" in text and "not in the model: not_a_layer" in text
    with pytest.raises(ValueError, match="none of its 1 layers"):
        weights.load_layer_weights(model, {"other": [np.zeros(1)]}, "wrong.h5")
