"""SSD300 / SSD512 with the reduced VGG16 base, exactly as the Caffe model.

VGG16 ``conv1_1 .. conv5_3`` (pools 2x2/2, pool3 in Caffe ceil mode = Keras
``same``), ``pool5`` 3x3 stride 1, ``fc6`` 3x3 dilation 6 with 1024 filters,
``fc7`` 1x1 1024, extra layers ``conv6 .. conv9`` (SSD512: ``conv6 .. conv10``),
``conv4_3_norm`` = :class:`~ssd_keras.layers.L2Normalization` (scale 20), and 3x3
class/box heads on ``conv4_3_norm, fc7, conv6_2, conv7_2, conv8_2, conv9_2``
(+ ``conv10_2``).  Layer names match the Caffe model and the legacy Keras port,
which the weight importer relies on.  SSD300 with 21 classes has 26,285,486
parameters.
"""
from __future__ import annotations

import keras

from ssd_keras.layers import L2Normalization
from ssd_keras.models.base import conv_heads, register_architecture, regularizer

VGG16_BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


def vgg16_reduced(x, reg):
    """The reduced VGG16 base: returns ``(conv4_3, fc7)`` feature maps."""
    conv4_3 = None
    for b, widths in enumerate(VGG16_BLOCKS, start=1):
        for i, filters in enumerate(widths, start=1):
            x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu",
                                    kernel_regularizer=reg, name=f"conv{b}_{i}")(x)
        if b == 4:
            conv4_3 = x
        if b < 5:
            x = keras.layers.MaxPooling2D(2, 2, padding="same", name=f"pool{b}")(x)
    x = keras.layers.MaxPooling2D(3, 1, padding="same", name="pool5")(x)
    x = keras.layers.Conv2D(1024, 3, dilation_rate=6, padding="same", activation="relu",
                            kernel_regularizer=reg, name="fc6")(x)
    fc7 = keras.layers.Conv2D(1024, 1, padding="same", activation="relu",
                              kernel_regularizer=reg, name="fc7")(x)
    return conv4_3, fc7


def _extra(x, name, mid, out, reg, kernel=3, stride=1, pad=0):
    x = keras.layers.Conv2D(mid, 1, activation="relu", kernel_regularizer=reg,
                            name=f"{name}_1")(x)
    if pad:
        x = keras.layers.ZeroPadding2D(pad, name=f"{name}_padding")(x)
    return keras.layers.Conv2D(out, kernel, strides=stride, padding="valid", activation="relu",
                               kernel_regularizer=reg, name=f"{name}_2")(x)


@register_architecture("ssd_vgg16")
def ssd_vgg16(x, config):
    """Builder for ``architecture="ssd_vgg16"``: SSD300 (6 sources) or SSD512 (7 sources)."""
    reg = regularizer(config)
    conv4_3, fc7 = vgg16_reduced(x, reg)
    n_sources = len(config.boxes_per_cell())
    if n_sources not in (6, 7):
        raise ValueError(f"{config.name}: ssd_vgg16 has 6 (SSD300) or 7 (SSD512) source layers, "
                         f"the config has {n_sources}")
    conv6_2 = _extra(fc7, "conv6", 256, 512, reg, stride=2, pad=1)
    conv7_2 = _extra(conv6_2, "conv7", 128, 256, reg, stride=2, pad=1)
    if n_sources == 6:   # SSD300: two 3x3 valid convolutions (5 -> 3 -> 1)
        conv8_2 = _extra(conv7_2, "conv8", 128, 256, reg)
        conv9_2 = _extra(conv8_2, "conv9", 128, 256, reg)
        extras = [conv6_2, conv7_2, conv8_2, conv9_2]
    else:                # SSD512: strided 3x3 then the 4x4 conv10_2 (.. 4 -> 2 -> 1)
        conv8_2 = _extra(conv7_2, "conv8", 128, 256, reg, stride=2, pad=1)
        conv9_2 = _extra(conv8_2, "conv9", 128, 256, reg, stride=2, pad=1)
        conv10_2 = _extra(conv9_2, "conv10", 128, 256, reg, kernel=4, pad=1)
        extras = [conv6_2, conv7_2, conv8_2, conv9_2, conv10_2]
    conv4_3_norm = L2Normalization(gamma_init=20.0, gamma_regularizer=reg,
                                   name="conv4_3_norm")(conv4_3)
    sources = [conv4_3_norm, fc7] + extras
    names = ["conv4_3_norm", "fc7"] + [f"conv{k}_2" for k in range(6, 6 + len(extras))]
    for feat, (fh, fw), name in zip(sources, config.get_feature_map_sizes(), names):
        if tuple(feat.shape[1:3]) != (fh, fw):
            raise ValueError(f"{config.name}: source {name} is {tuple(feat.shape[1:3])}, "
                             f"config says {(fh, fw)}")
    return conv_heads(sources, config, kernel_size=3, names=names)
