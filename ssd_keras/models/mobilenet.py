"""SSD MobileNet v2 and SSD MobileNet v2 FPNLite, as the TF Object Detection API builds them.

Both use ``keras.applications.MobileNetV2`` (``include_top=False``,
``alpha=depth_multiplier``) built *flat* on the already-scaled input tensor
(``input_tensor=x``), so every backbone layer (``Conv1``, ``block_13_expand_relu``,
``out_relu``, ...) is a layer of the :class:`~ssd_keras.models.base.SSDModel`
itself, reachable with ``model.get_layer(name)``, and the ``.keras`` round trip
rebuilds the same graph from the config.  Backbone layers that no source needs
(e.g. blocks 13-16 when FPNLite stops at level 4) are not part of the model.

``"ssd_mobilenet_v2"`` (TF OD ``ssd_mobilenet_v2_keras``)
    Sources ``block_13_expand_relu`` (stride 16, the "layer_15/expansion_output"
    of TF-slim; 576 channels at alpha 1), ``out_relu`` (stride 32; 1280
    channels, ``_make_divisible(1280 * alpha, 8)`` for alpha > 1), then one extra
    layer per ``extra_layer_depths`` entry ``d``: 1x1 conv of ``depth(d // 2)``
    and 3x3 stride-2 'same' conv of ``depth(d)``, each with BatchNorm + ReLU6,
    named as TF OD names them (``layer_19_2_Conv2d_2_3x3_s2_512``).  Heads: one
    ``box_kernel_size`` (1) conv per source for classes and boxes
    (:func:`~ssd_keras.models.base.conv_heads`).  At 320x320: 20, 10, 5, 3, 2, 1.

``"ssd_mobilenet_v2_fpnlite"`` (TF OD ``ssd_mobilenet_v2_fpn_keras``, ``use_depthwise``)
    Backbone endpoints per FPN level (TF OD's ``layer_4/7/14/19``):
    level 2 ``block_2_add`` (stride 4, 24 ch at alpha 1), level 3 ``block_5_add``
    (stride 8, 32 ch), level 4 ``block_12_add`` (stride 16, 96 ch), level 5
    ``out_relu`` (stride 32, 1280 ch).  Levels ``fpn_min_level .. min(fpn_max_level, 5)``
    go through a top-down FPN: 1x1 projections (with bias, no BN / activation)
    to ``depth(fpn_depth)``; the top level is its projection; each lower level is
    ``smooth(upsample2x(level above) + projection)``, where ``smooth`` is a 3x3
    separable conv + BatchNorm + ReLU6 and the level above is its *smoothed*
    output (as the Keras TF OD FPN does; the TF-slim one carried the unsmoothed
    sum).  Upsampled maps are cropped to the lateral size when the input is not a
    multiple of the stride.  Levels above 5 are 3x3 stride-2 separable convs +
    BatchNorm + ReLU6 on the previous level (``bottom_up_Conv2d_20``, ...).
    The box predictor is weight-shared across levels: ``num_layers_before_predictor``
    separable 3x3 convs of ``box_predictor_depth`` (one set of conv weights, a
    separate BatchNorm per level, as TF OD), then a separable 3x3 class conv
    (bias ``class_prediction_bias_init``) and a separable 3x3 box conv.  At
    320x320 the levels are 40, 20, 10, 5, 3; at 640x640 80, 40, 20, 10, 5.

``backbone`` options (``config.backbone``; defaults in brackets)
    ``depth_multiplier`` [1.0] MobileNetV2 ``alpha`` and the multiplier of the
    extra / FPN depths; ``min_depth`` [16] lower bound of those depths:
    ``depth(d) = max(int(d * depth_multiplier), min_depth)`` (TF OD's
    ``get_depth_fn``; the keras.applications backbone keeps its own rounding to
    multiples of 8 and ignores ``min_depth``); ``extra_layer_depths``
    [512, 256, 256, 128]; ``box_kernel_size`` [1]; ``fpn_depth`` [128] (scaled by
    ``depth()`` like TF OD's ``additional_layer_depth``: 0.35 x 64 -> 22);
    ``fpn_min_level`` / ``fpn_max_level`` [the anchors' levels, else 3 / 7];
    ``box_predictor_depth`` [128] (not scaled); ``num_layers_before_predictor`` [4];
    ``class_prediction_bias_init`` [0.0]; ``batch_norm_momentum`` [0.997, TF OD's
    decay, also applied to the backbone's BatchNorm layers as TF OD's
    ``override_base_feature_extractor_hyperparams``]; ``freeze_batch_norm`` [False]:
    the backbone's BatchNorm layers are non-trainable, so they run in inference
    mode with their loaded (ImageNet) statistics even in ``training=True`` calls,
    as Keras transfer learning does -- the own-data recipe
    (:mod:`ssd_keras.recipes`) sets it; ``imagenet_weights``
    [False]: where :func:`~ssd_keras.models.base.build_model` takes the backbone's
    initial weights from -- ``True``: the ImageNet MobileNetV2 1.0 file shipped in
    the package (:mod:`ssd_keras.pretrained`; offline; ``depth_multiplier`` 1.0
    only), or the path of a keras.applications-layout MobileNetV2 weights file
    (any alpha, e.g. Keras' ``mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5``).
    The graph builder itself never loads weights (so ``keras.saving.load_model``
    of a saved model never downloads or reads a file); the 224x224-trained
    kernels serve any input size, the network being fully convolutional.

Weight decay (``regularizer(config)``) applies to every conv kernel, the
backbone's included (keras.applications takes no regularizer: it is attached to
the built kernels' variables, so ``model.losses`` counts it); not to biases or
BatchNorm.  Parameter counts at ``weights=None``, 80 classes:
``ssd_mobilenet_v2_320`` 5,924,116; ``ssd_mobilenet_v2_fpnlite_320`` and ``_640``
2,658,488 each (fully convolutional: the input size does not change them, so
weights move between sizes with ``set_weights``).
"""
from __future__ import annotations

import re

import keras

from ssd_keras.config import MultiscaleAnchors
from ssd_keras.models.base import concat_predictions, conv_heads, register_architecture, regularizer

BN_EPSILON = 1e-3
BN_MOMENTUM = 0.997       # TF OD batch_norm decay (Keras momentum == TF decay)

# FPN level -> keras.applications MobileNetV2 layer (TF OD layer_4, 7, 14, 19).
FPN_ENDPOINTS = {2: "block_2_add", 3: "block_5_add", 4: "block_12_add", 5: "out_relu"}
# The names keras.applications.MobileNetV2 gives its layers (the backbone part of a model).
BACKBONE_LAYER_NAME = re.compile(
    r"^(Conv1|bn_Conv1|Conv1_relu|expanded_conv_\w+|block_\d+_\w+|Conv_1|Conv_1_bn|out_relu)$")
_KERNEL_NAMES = ("kernel", "depthwise_kernel", "pointwise_kernel")


def depth_fn(depth_multiplier: float, min_depth: int):
    """TF OD ``get_depth_fn``: ``d -> max(int(d * depth_multiplier), min_depth)``."""
    return lambda d: max(int(d * depth_multiplier), min_depth)


def _options(config):
    opts = config.backbone
    return (float(opts.get("depth_multiplier", 1.0)), int(opts.get("min_depth", 16)),
            float(opts.get("batch_norm_momentum", BN_MOMENTUM)))


def mobilenet_v2_features(x, config, endpoints):
    """keras.applications MobileNetV2 built flat on ``x``; the outputs of ``endpoints``.

    Args:
        x: ``(B, H, W, 3)`` input already scaled to ``[-1, 1]`` (a Keras tensor).
        config: the detector config (``backbone`` options, weight decay).
        endpoints: MobileNetV2 layer names.

    Returns:
        list of the ``(B, h, w, c)`` outputs of those layers.
    """
    alpha, _, momentum = _options(config)
    # weights=None always: initial weights (config.backbone["imagenet_weights"]) are
    # loaded by build_model after the graph exists, never when a saved model is rebuilt.
    net = keras.applications.MobileNetV2(input_tensor=x, include_top=False, weights=None,
                                         alpha=alpha)
    reg = regularizer(config)
    freeze_bn = bool(config.backbone.get("freeze_batch_norm", False))
    for layer in net.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = momentum
            # A non-trainable BatchNormalization runs in inference mode (Keras
            # transfer-learning semantics): the ImageNet statistics stay as loaded.
            layer.trainable = not freeze_bn
        if reg is None:
            continue
        # Regularizers are read from the variables (Layer.losses), so they can be
        # attached after the layers are built; the layer attributes only keep
        # get_config truthful.
        for attr in ("kernel_regularizer", "depthwise_regularizer", "pointwise_regularizer"):
            if hasattr(layer, attr):
                setattr(layer, attr, reg)
        for variable in layer.trainable_weights:
            if variable.name in _KERNEL_NAMES:
                variable.regularizer = reg
    return [net.get_layer(name).output for name in endpoints]


def backbone_layers(model) -> list:
    """The keras.applications MobileNetV2 layers of a built model (by their Keras names)."""
    return [layer for layer in model.layers if BACKBONE_LAYER_NAME.match(layer.name)]


def _normal(stddev, truncated=False):
    # A fresh instance per use: a reused unseeded Keras initializer repeats its values.
    cls = keras.initializers.TruncatedNormal if truncated else keras.initializers.RandomNormal
    return cls(mean=0.0, stddev=stddev)


def _bn_relu6(x, name, momentum):
    x = keras.layers.BatchNormalization(momentum=momentum, epsilon=BN_EPSILON,
                                        name=f"{name}_batchnorm")(x)
    return keras.layers.ReLU(6.0, name=f"{name}_relu6")(x)


def _conv_bn_relu6(x, filters, kernel, stride, name, reg, momentum, separable=False):
    """Conv (no bias) + BatchNorm + ReLU6; ``separable`` for depthwise-separable."""
    if separable:
        conv = keras.layers.SeparableConv2D(
            filters, kernel, strides=stride, padding="same", use_bias=False,
            depthwise_regularizer=reg, pointwise_regularizer=reg,
            depthwise_initializer=_normal(0.01), pointwise_initializer=_normal(0.01), name=name)
    else:
        conv = keras.layers.Conv2D(
            filters, kernel, strides=stride, padding="same", use_bias=False,
            kernel_regularizer=reg, kernel_initializer=_normal(0.03, truncated=True), name=name)
    return _bn_relu6(conv(x), name, momentum)


def _check_feature_map_sizes(config, features, names):
    expected = config.get_feature_map_sizes()
    if len(features) != len(expected):
        raise ValueError(f"{config.name}: {config.architecture} makes {len(features)} source "
                         f"layers ({', '.join(names)}), the config has {len(expected)}")
    for feat, (fh, fw), name in zip(features, expected, names):
        if tuple(feat.shape[1:3]) != (fh, fw):
            raise ValueError(f"{config.name}: source layer {name} is {tuple(feat.shape[1:3])}, "
                             f"the config says {(fh, fw)} (check feature_strides/feature_map_sizes "
                             f"for image_size {tuple(config.image_size)})")


# --------------------------------------------------------------------------
# SSD MobileNet v2
# --------------------------------------------------------------------------
@register_architecture("ssd_mobilenet_v2")
def ssd_mobilenet_v2(x, config):
    """Builder for ``architecture="ssd_mobilenet_v2"`` (see the module docstring)."""
    alpha, min_depth, momentum = _options(config)
    depth = depth_fn(alpha, min_depth)
    opts = config.backbone
    extra_depths = tuple(opts.get("extra_layer_depths", (512, 256, 256, 128)))
    n_sources = len(config.boxes_per_cell())
    if n_sources != 2 + len(extra_depths):
        raise ValueError(f"{config.name}: ssd_mobilenet_v2 has 2 + {len(extra_depths)} source "
                         f"layers (extra_layer_depths={list(extra_depths)}), the anchors have "
                         f"{n_sources}")
    reg = regularizer(config)
    sources = mobilenet_v2_features(x, config, ("block_13_expand_relu", "out_relu"))
    names = ["block_13_expand_relu", "out_relu"]
    feat = sources[-1]
    for index, d in enumerate(extra_depths, start=2):
        mid = depth(d // 2)
        feat = _conv_bn_relu6(feat, mid, 1, 1, f"layer_19_1_Conv2d_{index}_1x1_{mid}", reg, momentum)
        name = f"layer_19_2_Conv2d_{index}_3x3_s2_{depth(d)}"
        feat = _conv_bn_relu6(feat, depth(d), 3, 2, name, reg, momentum)
        sources.append(feat)
        names.append(name)
    _check_feature_map_sizes(config, sources, names)
    return conv_heads(sources, config, kernel_size=opts.get("box_kernel_size", 1),
                      names=[f"box_predictor_{k}" for k in range(n_sources)],
                      bias_init=opts.get("class_prediction_bias_init", 0.0))


# --------------------------------------------------------------------------
# SSD MobileNet v2 FPNLite
# --------------------------------------------------------------------------
def fpn_levels(config):
    """``(min_level, max_level)`` from ``backbone``, checked against anchors and strides."""
    spec = config.anchor_generator
    multiscale = isinstance(spec, MultiscaleAnchors)
    lo = int(config.backbone.get("fpn_min_level", spec.min_level if multiscale else 3))
    hi = int(config.backbone.get("fpn_max_level", spec.max_level if multiscale else 7))
    if not 2 <= lo <= hi:
        raise ValueError(f"{config.name}: FPN levels must satisfy 2 <= fpn_min_level <= "
                         f"fpn_max_level, got {lo}..{hi}")
    if multiscale and (spec.min_level, spec.max_level) != (lo, hi):
        raise ValueError(f"{config.name}: backbone FPN levels {lo}..{hi} differ from the anchor "
                         f"levels {spec.min_level}..{spec.max_level}")
    strides = tuple(2 ** level for level in range(lo, hi + 1))
    if tuple(float(s) for s in config.feature_strides) != tuple(float(s) for s in strides):
        raise ValueError(f"{config.name}: FPN levels {lo}..{hi} have strides {strides}, "
                         f"config.feature_strides is {tuple(config.feature_strides)}")
    return lo, hi


def fpn_top_down(features, levels, depth, reg, momentum):
    """Top-down FPN (TF OD ``KerasFpnTopDownFeatureMaps``, depthwise smoothing).

    Args:
        features: backbone maps, finest first, each half the size of the previous.
        levels: their FPN levels (e.g. ``[3, 4, 5]``).

    Returns:
        the ``(B, h_l, w_l, depth)`` maps, finest first.
    """
    def projection(feat, level):
        return keras.layers.Conv2D(depth, 1, padding="same", use_bias=True, kernel_regularizer=reg,
                                   kernel_initializer=_normal(0.01),
                                   name=f"fpn_projection_{level}")(feat)

    outputs = [projection(features[-1], levels[-1])]
    for feat, level in zip(reversed(features[:-1]), reversed(levels[:-1])):
        lateral = projection(feat, level)
        top_down = keras.layers.UpSampling2D(2, interpolation="nearest",
                                             name=f"fpn_upsample_{level}")(outputs[-1])
        excess = (top_down.shape[1] - lateral.shape[1], top_down.shape[2] - lateral.shape[2])
        if excess != (0, 0):   # odd lateral size: the upsampled map has one row/column more
            top_down = keras.layers.Cropping2D(((0, excess[0]), (0, excess[1])),
                                               name=f"fpn_crop_{level}")(top_down)
        merged = keras.layers.Add(name=f"fpn_add_{level}")([top_down, lateral])
        outputs.append(_conv_bn_relu6(merged, depth, 3, 1, f"fpn_smoothing_{level}", reg,
                                      momentum, separable=True))
    return outputs[::-1]


def weight_shared_box_predictor(features, levels, config, depth, num_layers, bias_init):
    """TF OD ``WeightSharedConvolutionalBoxPredictor`` (depthwise, shared tower).

    The same separable convs run on every level (a separate BatchNorm per level),
    then one class and one box separable 3x3 conv, also shared.

    Returns:
        ``(B, N, C)`` class logits and ``(B, N, 4)`` offsets, levels in order.
    """
    boxes = set(config.boxes_per_cell())
    if len(boxes) != 1:
        raise ValueError(f"{config.name}: a weight-shared predictor needs the same boxes per "
                         f"cell on every level, got {config.boxes_per_cell()}")
    boxes = boxes.pop()
    reg = regularizer(config)
    momentum = _options(config)[2]
    c = config.num_outputs

    def separable(filters, name, bias=0.0, use_bias=True):
        return keras.layers.SeparableConv2D(
            filters, 3, padding="same", use_bias=use_bias, depthwise_regularizer=reg,
            pointwise_regularizer=reg, depthwise_initializer=_normal(0.01),
            pointwise_initializer=_normal(0.01),
            bias_initializer=keras.initializers.Constant(bias), name=name)

    tower = [separable(depth, f"box_tower_conv_{i}", use_bias=False) for i in range(num_layers)]
    class_conv = separable(boxes * c, "class_predictor", bias=bias_init)
    box_conv = separable(boxes * 4, "box_encoding_predictor")
    cls_list, box_list = [], []
    for feat, level in zip(features, levels):
        for i, conv in enumerate(tower):
            feat = _bn_relu6(conv(feat), f"box_tower_{i}_level_{level}", momentum)
        cls_list.append(keras.layers.Reshape((-1, c), name=f"level_{level}_class_reshape")(
            class_conv(feat)))
        box_list.append(keras.layers.Reshape((-1, 4), name=f"level_{level}_box_reshape")(
            box_conv(feat)))
    return concat_predictions(cls_list, box_list)


@register_architecture("ssd_mobilenet_v2_fpnlite")
def ssd_mobilenet_v2_fpnlite(x, config):
    """Builder for ``architecture="ssd_mobilenet_v2_fpnlite"`` (see the module docstring)."""
    alpha, min_depth, momentum = _options(config)
    depth = depth_fn(alpha, min_depth)
    opts = config.backbone
    lo, hi = fpn_levels(config)
    base_hi = min(hi, 5)     # the backbone provides levels up to 5 (stride 32)
    reg = regularizer(config)
    fpn_depth = depth(opts.get("fpn_depth", 128))
    base_levels = list(range(lo, base_hi + 1))
    endpoints = mobilenet_v2_features(x, config, [FPN_ENDPOINTS[level] for level in base_levels])
    maps = fpn_top_down(endpoints, base_levels, fpn_depth, reg, momentum)
    names = [f"fpn_level_{level}" for level in base_levels]
    for level in range(base_hi + 1, hi + 1):
        name = f"bottom_up_Conv2d_{level - base_hi + 19}"
        maps.append(_conv_bn_relu6(maps[-1], fpn_depth, 3, 2, name, reg, momentum, separable=True))
        names.append(name)
    _check_feature_map_sizes(config, maps, names)
    return weight_shared_box_predictor(
        maps, list(range(lo, hi + 1)), config, int(opts.get("box_predictor_depth", 128)),
        int(opts.get("num_layers_before_predictor", 4)),
        opts.get("class_prediction_bias_init", 0.0))
