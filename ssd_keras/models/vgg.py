"""SSD300 / SSD512 with the reduced VGG16 base, exactly as the Caffe model.

VGG16 ``conv1_1 .. conv5_3`` (pools 2x2/2, pool3 in Caffe ceil mode = Keras
``same``), ``pool5`` 3x3 stride 1, ``fc6`` 3x3 dilation 6 with 1024 filters,
``fc7`` 1x1 1024, extra layers ``conv6 .. conv9`` (SSD512: ``conv6 .. conv10``),
``conv4_3_norm`` = :class:`~ssd_keras.layers.L2Normalization` (scale 20), and 3x3
class/box heads on ``conv4_3_norm, fc7, conv6_2, conv7_2, conv8_2, conv9_2``
(+ ``conv10_2``).  Layer names match the Caffe model and the legacy Keras port,
which the weight importer relies on.  SSD300 with 21 classes has 26,285,486
parameters.

The fc-reduction surgery that gives this base its ImageNet weights is here too
(:func:`reduce_vgg16_weights`, :func:`vgg16_arrays_to_ssd`: arrays in, arrays
out); loading them into a model is :mod:`ssd_keras.weights`' job.
"""
from __future__ import annotations

import keras
import numpy as np

from ssd_keras.layers import L2Normalization
from ssd_keras.models.base import conv_heads, register_architecture, regularizer
from ssd_keras.models.options import backbone_options, declare_backbone_options

#: ``ssd_vgg16`` backbone options and defaults (``imagenet_weights``: see ``build_model``).
SSD_VGG16_OPTIONS = declare_backbone_options("ssd_vgg16", {"imagenet_weights": False})
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
    """Builder for ``architecture="ssd_vgg16"``: SSD300 (6 sources) or SSD512 (7 sources).

    ``config.backbone`` options (:data:`SSD_VGG16_OPTIONS`): ``imagenet_weights``
    only (read by ``build_model``; the graph has no options).
    """
    backbone_options(config)
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


# --------------------------------------------------------------------------- fc-reduction surgery

# keras.applications VGG16 layer -> SSD layer
_VGG_CONV_NAMES = {f"block{b}_conv{i}": f"conv{b}_{i}"
                   for b, n in zip(range(1, 6), (2, 2, 3, 3, 3)) for i in range(1, n + 1)}


def reduce_vgg16_weights(vgg16) -> dict:
    """SSD base weights from a ``keras.applications.VGG16(include_top=True)`` model.

    As the Caffe ``VGG_ILSVRC_16_layers_fc_reduced`` model: ``fc6`` (``7*7*512 ->
    4096``) becomes 1024 filters of ``3x3x512`` by keeping every 4th filter and
    every 3rd spatial tap (the 3x3 kernel is then applied with dilation 6 after
    the stride-1 ``pool5``); ``fc7`` (``4096 x 4096``) becomes ``1024 x 1024`` by
    keeping every 4th input and output.

    Returns:
        ``{ssd_layer_name: [kernel, bias]}`` for ``conv1_1 .. conv5_3``, ``fc6``
        (kernel ``(3, 3, 512, 1024)``) and ``fc7`` (kernel ``(1, 1, 1024, 1024)``).
    """
    names = [*_VGG_CONV_NAMES, "fc1", "fc2"]
    try:
        arrays = {name: [np.asarray(w) for w in vgg16.get_layer(name).get_weights()]
                  for name in names}
    except ValueError as error:
        raise ValueError(f"{error}: build VGG16 with include_top=True") from None
    return vgg16_arrays_to_ssd(arrays)


def vgg16_arrays_to_ssd(layer_arrays: dict) -> dict:
    """keras.applications VGG16 arrays ``{block1_conv1: [k, b], ..., fc1, fc2}`` -> SSD names.

    ``blockB_convI`` becomes ``convB_I``; ``fc1`` / ``fc2`` (a file with the top)
    are reduced to ``fc6`` / ``fc7`` as :func:`reduce_vgg16_weights` describes;
    the classifier ``predictions`` is dropped.  A ``notop`` file has no ``fc1`` /
    ``fc2``: ``fc6`` / ``fc7`` then keep their initialisation (a load report
    lists them as missing).  Other names pass through unchanged.
    """
    out = {}
    for name, arrays in layer_arrays.items():
        if name == "predictions":
            continue
        out[_VGG_CONV_NAMES.get(name, name)] = arrays
    if "fc1" in out and "fc2" in out:
        (fc1_w, fc1_b), (fc2_w, fc2_b) = out.pop("fc1"), out.pop("fc2")
        if fc1_w.shape != (7 * 7 * 512, 4096) or fc2_w.shape != (4096, 4096):
            raise ValueError(f"expected VGG16 fc1 (25088, 4096) and fc2 (4096, 4096), got "
                             f"{fc1_w.shape} and {fc2_w.shape}")
        # fc1 (25088, 4096) is the flatten of (7, 7, 512) -> fc6 (3, 3, 512, 1024)
        out["fc6"] = [np.ascontiguousarray(fc1_w.reshape(7, 7, 512, 4096)[::3, ::3, :, ::4]),
                      fc1_b[::4].copy()]
        out["fc7"] = [np.ascontiguousarray(fc2_w[::4, ::4].reshape(1, 1, 1024, 1024)),
                      fc2_b[::4].copy()]
    return out
