"""The local-file route for the VGG16 presets: a keras.applications VGG16 weights file
(written here with random weights; the real one is 500 MB and not obtainable offline)
loads into SSD300's reduced VGG16 base by layer name, through load_into and train --weights."""

import keras
import numpy as np
import pytest

import ssd_keras
from ssd_keras import presets, training, weights
from ssd_keras.weights import loading
from ssd_keras.data.toy import make_voc_tree
from ssd_keras.data.voc import read_voc
from ssd_keras.pretrained import write_layer_weights_h5

VGG_TO_SSD = {"block1_conv1": "conv1_1", "block3_conv2": "conv3_2", "block5_conv3": "conv5_3"}


@pytest.fixture(scope="module")
def vgg16_notop(tmp_path_factory):
    """Random keras.applications VGG16 (no top) saved as Keras' own ``_notop.h5`` layout and
    as a Keras 3 ``.weights.h5``."""
    folder = tmp_path_factory.mktemp("vgg16")
    vgg = keras.applications.VGG16(include_top=False, weights=None, input_shape=(64, 64, 3))
    rng = np.random.default_rng(0)
    vgg.set_weights([rng.normal(0, 0.05, w.shape).astype("float32") for w in vgg.get_weights()])
    legacy = folder / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    write_layer_weights_h5(legacy, [(layer.name, [(v.name, v.numpy()) for v in layer.weights])
                                    for layer in vgg.layers if layer.weights])
    keras3 = folder / "vgg16_notop.weights.h5"
    vgg.save_weights(keras3)
    arrays = {layer.name: layer.get_weights() for layer in vgg.layers if layer.weights}
    return {"legacy": str(legacy), "keras3": str(keras3), "arrays": arrays}


def _assert_base_loaded(model, arrays, report):
    assert len(report["loaded"]) == 13                        # conv1_1 .. conv5_3
    assert {"fc6", "fc7", "conv4_3_norm"} <= set(report["missing"])   # notop: no fc6 / fc7
    assert report["skipped"] == []
    for src, dst in VGG_TO_SSD.items():
        for got, want in zip(model.get_layer(dst).get_weights(), arrays[src]):
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("kind", ["legacy", "keras3"])
def test_keras_applications_vgg16_file_loads_into_ssd300_by_name(vgg16_notop, kind, offline,
                                                                 capsys):
    model = ssd_keras.build_model("ssd300_voc")
    report = weights.load_into(model, vgg16_notop[kind])
    _assert_base_loaded(model, vgg16_notop["arrays"], report)
    printed = capsys.readouterr().out
    assert "13 layers loaded, 0 skipped" in printed and "not in the file:" in printed


def test_train_weights_takes_the_vgg16_file(vgg16_notop, tmp_path, offline, monkeypatch):
    """``train(weights=PATH)`` (the ``--weights`` of the CLI) goes through the same route."""
    class Loaded(Exception):
        """Stops train() once the initial weights are in (before the first step)."""

    original, seen = loading.load_into, {}

    def load_then_stop(model, source, *args, **kwargs):
        seen["report"], seen["model"] = original(model, source, *args, **kwargs), model
        raise Loaded

    # train() starts a new run through load_initial_weights, which calls loading.load_into
    monkeypatch.setattr(loading, "load_into", load_then_stop)
    records = read_voc(make_voc_tree(tmp_path / "voc", num_images=2, size=(64, 48),
                                     quirks=False), "trainval")
    config = presets.get("ssd300_voc")
    with pytest.raises(Loaded):
        training.train(config, records, str(tmp_path / "run"),
                       training.TrainConfig(total_steps=1, batch_size=2, steps_per_epoch=1,
                                            warmup_steps=0, augment=False),
                       weights=vgg16_notop["legacy"], verbose=0)
    _assert_base_loaded(seen["model"], vgg16_notop["arrays"], seen["report"])


def test_imagenet_offline_for_vgg16_says_to_give_the_file(offline, tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))      # an empty Keras cache
    model = ssd_keras.build_model("ssd300_voc")
    with pytest.raises(OSError, match="could not be downloaded.*vgg16_weights_tf_dim_ordering_"
                                      "tf_kernels.h5.*--weights PATH"):
        weights.load_into(model, "imagenet")
