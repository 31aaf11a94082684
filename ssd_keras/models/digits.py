"""``digits_convnet``: a small fully convolutional SSD for small objects (the digits main job).

A plain 3x3 conv + BatchNorm + ReLU backbone to stride 16, a top-down FPN on
the anchor levels (strides 4 and 8 for the digits preset), one conv tower per
level for the class and box heads, then 3x3 predictors.  Registered as the
``digits_convnet`` architecture; the ``digits_convnet`` preset in
:mod:`ssd_keras.presets` pairs it with pixel-sized anchors fitted to the digit
boxes.  Chosen over MobileNetV2 FPNLite for the CPU recipe: at depth
multiplier 0.35 on levels 2-3 that model has only 35k parameters at the same
step time (see the README's digits section).
"""
from __future__ import annotations

import keras

from ssd_keras.config import DetectorConfig
from ssd_keras.models.base import concat_predictions, register_architecture, regularizer


def _conv_bn_relu(x, filters, stride, reg, name, kernel_size=3):
    x = keras.layers.Conv2D(filters, kernel_size, strides=stride, padding="same", use_bias=False,
                            kernel_regularizer=reg, name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(momentum=0.99, epsilon=1e-3, name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


@register_architecture("digits_convnet")
def digits_convnet(images, config: DetectorConfig):
    """A small fully convolutional SSD for small objects (FPN on strides ``2**min..2**max``).

    ``config.backbone`` options:
        widths: channels of the stages at strides 2, 4, 8, ... (one per stage;
            the deepest stage may lie above ``max_level`` and only feeds the
            top-down path with context).
        blocks: 3x3 conv layers per stage (the first has stride 2).
        fpn_depth: channels of the pyramid levels (1x1 lateral + nearest
            upsampling + add, then a 3x3 conv).
        head_depth, head_layers: 3x3 conv layers of each level's class and box
            towers before the predictors (separate per level).
        class_prediction_bias_init: class-logit bias (-4.6: prior 0.01).

    Input ``(B, H, W, 3)`` already scaled by the model; output ``(B, N, C)``
    logits and ``(B, N, 4)`` offsets, levels ``min_level..max_level`` in order.
    """
    spec = config.anchor_generator
    b = config.backbone
    widths = tuple(b.get("widths", (16, 32, 64, 96)))
    blocks = tuple(b.get("blocks", (1, 2, 2, 2)))
    fpn_depth = int(b.get("fpn_depth", 64))
    head_depth = int(b.get("head_depth", 64))
    head_layers = int(b.get("head_layers", 1))
    bias_init = float(b.get("class_prediction_bias_init", -4.6))
    reg = regularizer(config)
    if len(widths) < spec.max_level or len(blocks) != len(widths):
        raise ValueError(f"{config.name}: need one width and block count per stage up to level "
                         f"{spec.max_level}, got widths={widths} blocks={blocks}")

    x = images
    stages = {}
    for level, (width, count) in enumerate(zip(widths, blocks), start=1):
        for k in range(count):
            x = _conv_bn_relu(x, width, 2 if k == 0 else 1, reg, f"stage{level}_{k}")
        stages[level] = x

    # top-down pyramid from the deepest stage to min_level
    top = len(widths)
    p = _conv_bn_relu(stages[top], fpn_depth, 1, reg, f"lateral{top}", kernel_size=1)
    levels = {}
    for level in range(top - 1, spec.min_level - 1, -1):
        lateral = _conv_bn_relu(stages[level], fpn_depth, 1, reg, f"lateral{level}", kernel_size=1)
        up = keras.layers.UpSampling2D(2, interpolation="nearest", name=f"up{level}")(p)
        p = keras.layers.Add(name=f"merge{level}")([lateral, up])
        p = _conv_bn_relu(p, fpn_depth, 1, reg, f"fpn{level}")
        levels[level] = p

    c = config.num_outputs
    cls_out, box_out = [], []
    for level, boxes in zip(range(spec.min_level, spec.max_level + 1), config.boxes_per_cell()):
        feat = levels[level] if level in levels else p
        towers = {}
        for kind in ("class", "box"):
            t = feat
            for k in range(head_layers):
                t = _conv_bn_relu(t, head_depth, 1, reg, f"p{level}_{kind}_tower{k}")
            towers[kind] = t
        cls = keras.layers.Conv2D(boxes * c, 3, padding="same", kernel_regularizer=reg,
                                  bias_initializer=keras.initializers.Constant(bias_init),
                                  kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
                                  name=f"p{level}_class_predictor")(towers["class"])
        box = keras.layers.Conv2D(boxes * 4, 3, padding="same", kernel_regularizer=reg,
                                  kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
                                  name=f"p{level}_box_predictor")(towers["box"])
        cls_out.append(keras.layers.Reshape((-1, c), name=f"p{level}_class_reshape")(cls))
        box_out.append(keras.layers.Reshape((-1, 4), name=f"p{level}_box_reshape")(box))
    return concat_predictions(cls_out, box_out)
