"""The CenterNet prediction heads: class heatmap, box scale, box offset on one feature map."""
from __future__ import annotations

import keras

__all__ = ["centernet_heads"]


def centernet_heads(feature, num_classes, head, kernel_regularizer=None):
    """The three CenterNet heads on one ``(B, h, w, c)`` map -> raw outputs dict (float32)."""
    out = {}
    for key, channels, bias in (("object_center", num_classes, head.heatmap_prior_bias),
                                ("box_scale", 2, 0.0), ("box_offset", 2, 0.0)):
        t = keras.layers.Conv2D(head.head_channels, 3, padding="same",
                                kernel_regularizer=kernel_regularizer, name=f"{key}_conv")(feature)
        t = keras.layers.ReLU(name=f"{key}_relu")(t)
        t = keras.layers.Conv2D(channels, 1, kernel_regularizer=kernel_regularizer,
                                bias_initializer=keras.initializers.Constant(bias),
                                name=f"{key}_predictor")(t)
        out[key] = keras.layers.Activation("linear", dtype="float32", name=key)(t)
    return out
