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

import functools

from ssd_keras.config import DetectorConfig
from ssd_keras.models.base import register_architecture, regularizer
from ssd_keras.models.blocks import conv_bn_relu, normal_initializer
from ssd_keras.models.heads import PREDICTOR_HEAD_NAMES, separate_conv_heads
from ssd_keras.models.necks import top_down_fpn
from ssd_keras.models.options import backbone_options, declare_backbone_options

#: ``digits_convnet`` backbone options and their defaults (see :func:`digits_convnet`).
DIGITS_CONVNET_OPTIONS = declare_backbone_options("digits_convnet", {
    "widths": (16, 32, 64, 96), "blocks": (1, 2, 2, 2), "fpn_depth": 64, "head_depth": 64,
    "head_layers": 1, "class_prediction_bias_init": -4.6})


def convnet_stages(x, widths, blocks, reg):
    """Plain conv stages: stage ``s`` (1-based) is ``blocks[s-1]`` conv + BN + ReLU units.

    The first unit of each stage has stride 2, so stage ``s`` is at stride
    ``2 ** s`` with ``widths[s-1]`` channels (layers ``stage{s}_{k}_conv`` ...).

    Returns:
        ``{s: (B, H / 2**s, W / 2**s, widths[s-1])}`` for every stage.
    """
    stages = {}
    for level, (width, count) in enumerate(zip(widths, blocks), start=1):
        for k in range(count):
            x = conv_bn_relu(x, width, 2 if k == 0 else 1, reg, f"stage{level}_{k}")
        stages[level] = x
    return stages


@register_architecture("digits_convnet")
def digits_convnet(images, config: DetectorConfig):
    """A small fully convolutional SSD for small objects (FPN on strides ``2**min..2**max``).

    ``config.backbone`` options (:data:`DIGITS_CONVNET_OPTIONS`; others are an error):
        widths: channels of the stages at strides 2, 4, 8, ... (one per stage;
            the deepest stage may lie above ``max_level`` and only feeds the
            top-down path with context).
        blocks: 3x3 conv layers per stage (the first has stride 2).
        fpn_depth: channels of the pyramid levels (1x1 conv + BN + ReLU lateral,
            nearest upsampling + add, then a 3x3 conv + BN + ReLU), the deepest
            stage being its lateral alone.
        head_depth, head_layers: 3x3 conv layers of each level's class and box
            towers before the predictors (separate per level).
        class_prediction_bias_init: class-logit bias (-4.6: prior 0.01).

    Input ``(B, H, W, 3)`` already scaled by the model; output ``(B, N, C)``
    logits and ``(B, N, 4)`` offsets, levels ``min_level..max_level`` in order.
    """
    spec = config.anchor_generator
    opts = backbone_options(config)
    widths, blocks = tuple(opts["widths"]), tuple(opts["blocks"])
    fpn_depth, head_depth = int(opts["fpn_depth"]), int(opts["head_depth"])
    head_layers = int(opts["head_layers"])
    reg = regularizer(config)
    if len(widths) < spec.max_level or len(blocks) != len(widths):
        raise ValueError(f"{config.name}: need one width and block count per stage up to level "
                         f"{spec.max_level}, got widths={widths} blocks={blocks}")

    stages = convnet_stages(images, widths, blocks, reg)
    # top-down pyramid from the deepest stage to min_level
    pyramid_levels = list(range(spec.min_level, len(widths) + 1))
    maps = top_down_fpn(
        [stages[level] for level in pyramid_levels], channels=(fpn_depth,) * len(pyramid_levels),
        levels=pyramid_levels, name="digits_fpn", lateral_first=True,
        lateral_block=lambda x, filters, level: conv_bn_relu(x, filters, 1, reg, f"lateral{level}",
                                                             kernel_size=1),
        smooth_block=lambda x, filters, level: conv_bn_relu(x, filters, 1, reg, f"fpn{level}"),
        layer_names={"up": "up{level}", "crop": "crop{level}", "merge": "merge{level}"})
    levels = dict(zip(pyramid_levels, maps))
    anchor_levels = range(spec.min_level, spec.max_level + 1)

    def tower(x, prefix):
        for k in range(head_layers):
            x = conv_bn_relu(x, head_depth, 1, reg, f"{prefix}_tower{k}")
        return x

    return separate_conv_heads(
        [levels[level] for level in anchor_levels], config.boxes_per_cell(), config.num_outputs,
        names=[f"p{level}" for level in anchor_levels], kernel_size=3,
        class_bias_init=float(opts["class_prediction_bias_init"]),
        kernel_initializer=functools.partial(normal_initializer, 0.01),
        kernel_regularizer=reg, tower=tower, layer_names=PREDICTOR_HEAD_NAMES)
