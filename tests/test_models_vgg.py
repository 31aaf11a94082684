"""SSD300/SSD512 VGG16: structure, serialisation, weights import, backends."""
import importlib.util
import os
import subprocess
import sys

import h5py
import keras
import numpy as np
import pytest

import ssd_keras
from ssd_keras import presets
from ssd_keras.layers import L2Normalization
from ssd_keras.weights import load_legacy_h5, reduce_vgg16_weights, set_vgg16_base


@pytest.fixture(scope="module")
def ssd300():
    return ssd_keras.build_model("ssd300_voc")


def test_ssd300_structure(ssd300):
    assert ssd300.count_params() == 26_285_486
    out = ssd300(np.zeros((1, 300, 300, 3), np.float32))
    assert out["classification"].shape == (1, 8732, 21)
    assert out["regression"].shape == (1, 8732, 4)
    norm = ssd300.get_layer("conv4_3_norm")
    assert isinstance(norm, L2Normalization)
    np.testing.assert_array_equal(norm.get_weights()[0], np.full(512, 20.0, np.float32))
    assert ssd300.get_layer("fc6").dilation_rate == (6, 6)
    assert ssd300.get_layer("pool5").pool_size == (3, 3) and ssd300.get_layer("pool5").strides == (1, 1)
    # weight decay: Keras L2(wd / 2) == Caffe weight_decay (gradient wd * w)
    assert ssd300.get_layer("conv1_1").kernel_regularizer.l2 == pytest.approx(2.5e-4)
    assert len(ssd300.losses) > 0


def test_ssd512_structure():
    model = ssd_keras.build_model("ssd512_voc")
    assert model.get_layer("conv10_2").output.shape[1:3] == (1, 1)
    assert model.output["classification"].shape[1] == 24564


def test_l2_normalization_math_and_config():
    layer = L2Normalization(gamma_init=3.0, name="n")
    x = np.random.default_rng(0).normal(size=(2, 4, 4, 8)).astype(np.float32)
    y = np.asarray(layer(x))
    np.testing.assert_allclose(np.linalg.norm(y, axis=-1), 3.0, rtol=1e-5)
    again = L2Normalization.from_config(layer.get_config())
    assert again.gamma_init == 3.0 and again.epsilon == layer.epsilon and again.axis == -1


def test_save_load_bit_identical(ssd300, tmp_path):
    x = np.random.default_rng(1).uniform(0, 255, (2, 300, 300, 3)).astype(np.float32)
    before = ssd300.predict(x, verbose=0)
    path = tmp_path / "m.keras"
    ssd300.save(path)
    loaded = keras.saving.load_model(path)   # safe mode, no custom_objects
    assert isinstance(loaded, ssd_keras.DetectorModel)
    assert loaded.detector_config == ssd300.detector_config
    after = loaded.predict(x, verbose=0)
    for k in before:
        np.testing.assert_array_equal(before[k], after[k])


def test_inference_model_boxes_in_pixels(ssd300, tmp_path):
    inf = ssd_keras.build_inference_model(ssd300, max_detections=10)
    out = inf(np.random.default_rng(2).uniform(0, 255, (1, 300, 300, 3)).astype(np.float32))
    assert out["boxes"].shape == (1, 10, 4)
    n = int(out["num_detections"][0])
    assert n > 0 and float(out["boxes"][0, :n].numpy().max()) > 1.0   # pixels, not normalised
    inf.save(tmp_path / "inf.keras")
    again = keras.saving.load_model(tmp_path / "inf.keras")
    x = np.full((1, 300, 300, 3), 100.0, np.float32)
    np.testing.assert_array_equal(inf(x)["boxes"].numpy(), again(x)["boxes"].numpy())


def test_vgg16_fc_reduction_with_random_weights(ssd300):
    vgg = keras.applications.VGG16(include_top=True, weights=None)
    reduced = reduce_vgg16_weights(vgg)
    fc1_w = vgg.get_layer("fc1").get_weights()[0].reshape(7, 7, 512, 4096)
    assert reduced["fc6"][0].shape == (3, 3, 512, 1024)
    np.testing.assert_array_equal(reduced["fc6"][0][1, 2, :, 5], fc1_w[3, 6, :, 20])
    fc2_w = vgg.get_layer("fc2").get_weights()[0]
    np.testing.assert_array_equal(reduced["fc7"][0][0, 0, 7, 9], fc2_w[28, 36])
    set_vgg16_base(ssd300, reduced)
    np.testing.assert_array_equal(ssd300.get_layer("conv3_2").get_weights()[0],
                                  vgg.get_layer("block3_conv2").get_weights()[0])
    np.testing.assert_array_equal(ssd300.get_layer("fc7").get_weights()[1],
                                  vgg.get_layer("fc2").get_weights()[1][::4])


def write_legacy_h5(model, path, whole_model=True):
    """A Keras-2 style file: layer groups with weight_names attrs (as the old ssd_keras saved)."""
    with h5py.File(path, "w") as f:
        root = f.create_group("model_weights") if whole_model else f
        names = [l.name for l in model.layers if l.weights]
        root.attrs["layer_names"] = [n.encode() for n in names]
        for layer in model.layers:
            if not layer.weights:
                continue
            g = root.create_group(layer.name)
            wnames = []
            for w, v in zip(layer.weights, layer.get_weights()):
                wname = f"{layer.name}/{w.name}:0"
                g.create_dataset(wname, data=v)
                wnames.append(wname.encode())
            g.attrs["weight_names"] = wnames


def test_legacy_h5_import(ssd300, tmp_path):
    path = tmp_path / "VGG_VOC0712_SSD_300x300_iter_120000.h5"
    write_legacy_h5(ssd300, path)
    fresh = ssd_keras.build_model("ssd300_voc")
    report = load_legacy_h5(fresh, str(path), verbose=False)
    assert "conv4_3_norm" in report["loaded"] and "conv9_2_mbox_loc" in report["loaded"]
    assert not report["missing"]
    x = np.random.default_rng(3).uniform(0, 255, (1, 300, 300, 3)).astype(np.float32)
    np.testing.assert_array_equal(ssd300.predict(x, verbose=0)["classification"],
                                  fresh.predict(x, verbose=0)["classification"])
    # a model with another class count: clear error, or skip the heads on request
    other = ssd_keras.build_model(presets.get("ssd300_voc", num_classes=5, class_names=None))
    with pytest.raises(ValueError, match="mbox_conf"):
        load_legacy_h5(other, str(path), verbose=False)
    rep = load_legacy_h5(other, str(path), skip_mismatch=True, verbose=False)
    assert "conv4_3_norm_mbox_conf" in rep["skipped"] and "conv1_1" in rep["loaded"]


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_forward_pass_under_jax_backend():
    code = ("import numpy as np, ssd_keras\n"
            "from ssd_keras import presets\n"
            "import keras; assert keras.backend.backend() == 'jax'\n"
            "m = ssd_keras.build_model(presets.get('ssd300_voc'))\n"
            "out = m(np.zeros((1, 300, 300, 3), np.float32))\n"
            "assert out['classification'].shape == (1, 8732, 21)\n"
            "from ssd_keras.families.ssd.losses import ssd_softmax_loss\n"
            "y = {'labels': np.zeros((1, 8732), np.int32), 'boxes': np.zeros((1, 8732, 4), np.float32)}\n"
            "y['labels'][0, :5] = 3\n"
            "parts = ssd_softmax_loss(y, out)\n"
            "assert all(np.isfinite(float(v)) for v in parts.values())\n"
            "print('jax ok')\n")
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "jax ok" in res.stdout
