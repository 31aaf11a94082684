"""ResNet v1 backbones (``keras.applications``) as multi-stride feature taps.

The taps are the last block of each stage, as the TF OD API CenterNet
``resnet_v1_*_fpn`` feature extractors read them (``_RESNET_MODEL_OUTPUT_LAYERS``):
ResNet101: ``conv2_block3_out`` (stride 4, 256 ch), ``conv3_block4_out``
(stride 8, 512), ``conv4_block23_out`` (stride 16, 1024), ``conv5_block3_out``
(stride 32, 2048).  The input must already be preprocessed as the weights
expect (Keras' ResNet: ``"caffe"`` -- BGR minus the ImageNet mean).
"""
from __future__ import annotations

import keras

#: stage-output layer names per depth (strides 4, 8, 16, 32).
RESNET_V1_TAPS = {
    50: ("conv2_block3_out", "conv3_block4_out", "conv4_block6_out", "conv5_block3_out"),
    101: ("conv2_block3_out", "conv3_block4_out", "conv4_block23_out", "conv5_block3_out"),
}


def resnet_v1_features(images, depth=101, weights=None, name=None):
    """ResNet v1 stage outputs for ``images`` ``(B, H, W, 3)`` (preprocessed).

    Args:
        images: a Keras tensor; ``H`` and ``W`` multiples of 32.
        depth: 50 or 101.
        weights: ``None`` (random) or ``"imagenet"`` / a path, as
            ``keras.applications`` takes it (ImageNet needs internet).
        name: the nested backbone model's name (default ``resnet{depth}``).

    Returns:
        ``[c2, c3, c4, c5]``: ``(B, H/4, W/4, 256)``, ``(B, H/8, W/8, 512)``,
        ``(B, H/16, W/16, 1024)``, ``(B, H/32, W/32, 2048)``.
    """
    if depth not in RESNET_V1_TAPS:
        raise ValueError(f"resnet depth must be one of {sorted(RESNET_V1_TAPS)}, got {depth}")
    h, w = images.shape[1], images.shape[2]
    if h is None or w is None or h % 32 or w % 32:
        raise ValueError(f"resnet{depth}: input size ({h}, {w}) must be known multiples of 32")
    app = keras.applications.ResNet50 if depth == 50 else keras.applications.ResNet101
    base = app(include_top=False, weights=weights, input_shape=(h, w, 3))
    taps = keras.Model(base.input, [base.get_layer(n).output for n in RESNET_V1_TAPS[depth]],
                       name=name or f"resnet{depth}")
    return list(taps(images))
