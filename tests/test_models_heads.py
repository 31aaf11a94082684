"""The reusable SSD heads (models/heads.py); the FPN with an architecture's own units (necks.py)."""
from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import functools  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from ssd_keras.models.blocks import conv_bn_relu, normal_initializer  # noqa: E402
from ssd_keras.models.heads import (PREDICTOR_HEAD_NAMES, separate_conv_heads,  # noqa: E402
                                    weight_shared_heads)
from ssd_keras.models.necks import top_down_fpn  # noqa: E402


def _inputs(*shapes):
    return [keras.Input(shape) for shape in shapes]


def test_separate_conv_heads_shapes_names_and_cell_order():
    f1, f2 = _inputs((4, 6, 8), (2, 3, 16))
    cls, box = separate_conv_heads([f1, f2], (3, 2), 5, names=["a", "b"], class_bias_init=-4.6)
    n = 4 * 6 * 3 + 2 * 3 * 2
    assert cls.shape[1:] == (n, 5) and box.shape[1:] == (n, 4)
    model = keras.Model([f1, f2], [cls, box])
    names = {layer.name for layer in model.layers}
    assert {"a_mbox_conf", "a_mbox_loc", "b_mbox_conf_reshape", "mbox_conf", "classification",
            "regression"} <= names
    np.testing.assert_allclose(model.get_layer("a_mbox_conf").bias.numpy(), -4.6)
    # output row n is cell n // boxes, box n % boxes of the row-major grid of source a
    x1 = np.random.default_rng(0).normal(size=(1, 4, 6, 8)).astype("float32")
    x2 = np.zeros((1, 2, 3, 16), "float32")
    conv = keras.Model(f1, model.get_layer("a_mbox_conf").output)(x1).numpy()   # (1, 4, 6, 15)
    got = model([x1, x2])[0].numpy()
    np.testing.assert_allclose(got[0, : 4 * 6 * 3], conv.reshape(-1, 5), rtol=1e-6)
    assert got.dtype == np.float32


def test_separate_conv_heads_tower_initializer_factory_and_names():
    (f,) = _inputs((8, 8, 4))
    tower = lambda x, prefix: conv_bn_relu(x, 6, 1, None, f"{prefix}_tower0")  # noqa: E731
    cls, box = separate_conv_heads([f], (2,), 3, names=["p2"], tower=tower,
                                   kernel_initializer=functools.partial(normal_initializer, 0.01),
                                   layer_names=PREDICTOR_HEAD_NAMES)
    model = keras.Model(f, [cls, box])
    for name in ("p2_class_tower0_conv", "p2_box_tower0_bn", "p2_class_predictor",
                 "p2_box_predictor", "p2_class_reshape", "p2_box_reshape"):
        model.get_layer(name)
    k_cls = model.get_layer("p2_class_predictor").kernel.numpy()
    k_box = model.get_layer("p2_box_predictor").kernel.numpy()
    assert abs(k_cls.std() - 0.01) < 0.004 and not np.allclose(k_cls, k_box[..., :6])
    with pytest.raises(ValueError, match="must agree"):
        separate_conv_heads([f], (2, 2), 3)


def test_weight_shared_heads_share_convs_with_a_batchnorm_per_level():
    f3, f4 = _inputs((8, 8, 16), (4, 4, 16))
    cls, box = weight_shared_heads([f3, f4], [3, 4], 6, 7, depth=16, num_layers=2,
                                   class_bias_init=-4.6)
    assert cls.shape[1:] == ((64 + 16) * 6, 7) and box.shape[1:] == ((64 + 16) * 6, 4)
    model = keras.Model([f3, f4], [cls, box])
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.SeparableConv2D)]
    assert [c.name for c in convs] == ["box_tower_conv_0", "box_tower_conv_1",
                                       "class_predictor", "box_encoding_predictor"]
    bns = [layer.name for layer in model.layers
           if isinstance(layer, keras.layers.BatchNormalization)]
    assert sorted(bns) == sorted(f"box_tower_{i}_level_{lv}_batchnorm"
                                 for i in range(2) for lv in (3, 4))
    np.testing.assert_allclose(model.get_layer("class_predictor").bias.numpy(), -4.6)


def test_top_down_fpn_with_supplied_units_levels_names_and_odd_sizes():
    # strides 8, 16, 32 of a 100x100 input: 13, 7, 4 (odd sizes: the upsampled map is cropped)
    c3, c4, c5 = _inputs((13, 13, 8), (7, 7, 16), (4, 4, 32))
    lateral = lambda x, filters, level: keras.layers.Conv2D(  # noqa: E731
        filters, 1, name=f"proj_{level}")(x)
    smooth = lambda x, filters, level: conv_bn_relu(  # noqa: E731
        x, filters, 1, None, f"smooth_{level}")
    maps = top_down_fpn([c3, c4, c5], channels=(12, 12, 12), levels=(3, 4, 5),
                        lateral_block=lateral, smooth_block=smooth, lateral_first=True,
                        layer_names={"up": "up_{level}", "crop": "crop_{level}",
                                     "merge": "add_{level}"})
    assert [tuple(m.shape[1:]) for m in maps] == [(13, 13, 12), (7, 7, 12), (4, 4, 12)]
    model = keras.Model([c3, c4, c5], maps)
    for name in ("proj_5", "proj_3", "up_4", "crop_4", "crop_3", "add_3", "smooth_3_conv"):
        model.get_layer(name)
    assert model.get_layer("add_3").input[0].name == model.get_layer("proj_3").output.name
    # the top level is its lateral alone (no smoothing)
    assert maps[2].name == model.get_layer("proj_5").output.name
