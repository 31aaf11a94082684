"""A tiny test architecture that keeps training/weights tests to seconds on CPU.

Three strided convs then a fourth: two source layers at strides 8 and 16 of a
32x32 input, multiscale anchors.  Importing this module registers the
``tiny_test`` architecture (subprocess tests import it too).
"""
from __future__ import annotations

import keras

from ssd_keras.config import DetectorConfig
from ssd_keras.families.ssd.anchors import MultiscaleAnchors
from ssd_keras.families.ssd.head import SSDHead
from ssd_keras.data.voc import VOC_CLASSES
from ssd_keras.models.base import conv_heads, register_architecture


@register_architecture("tiny_test")
def tiny(images, config):
    x = images
    for i in range(3):
        x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu",
                                name=f"tiny_conv{i}")(x)
    f8 = x
    f16 = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu",
                              name="tiny_conv3")(f8)
    return conv_heads([f8, f16], config, names=["f8", "f16"])


def tiny_config(num_classes=20, size=32, name="tiny", weight_decay=5e-4):
    return DetectorConfig(
        name=name, architecture="tiny_test", image_size=(size, size), num_classes=num_classes,
        class_names=VOC_CLASSES[:num_classes] if num_classes == 20 else None,
        input_scaling="tf", pixel_mean=(127.5, 127.5, 127.5), channel_order="rgb",
        weight_decay=weight_decay,
        head=SSDHead(anchor_generator=MultiscaleAnchors(min_level=3, max_level=4, anchor_scale=2.0,
                                                        scales_per_octave=1,
                                                        aspect_ratios=(1.0, 2.0, 0.5)),
                     feature_map_sizes=None, feature_strides=(8, 16),
                     max_detections=20, max_detections_per_class=20))
