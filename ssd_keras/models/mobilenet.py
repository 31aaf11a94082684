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
    (:func:`~ssd_keras.models.heads.separate_conv_heads`).  At 320x320: 20, 10, 5, 3, 2, 1.

``"ssd_mobilenet_v2_fpnlite"`` (TF OD ``ssd_mobilenet_v2_fpn_keras``, ``use_depthwise``)
    Backbone endpoints per FPN level (TF OD's ``layer_4/7/14/19``):
    level 2 ``block_2_add`` (stride 4, 24 ch at alpha 1), level 3 ``block_5_add``
    (stride 8, 32 ch), level 4 ``block_12_add`` (stride 16, 96 ch), level 5
    ``out_relu`` (stride 32, 1280 ch).  Levels ``fpn_min_level .. min(fpn_max_level, 5)``
    go through a top-down FPN (:func:`~ssd_keras.models.necks.top_down_fpn`): 1x1
    projections (with bias, no BN / activation) to ``depth(fpn_depth)``; the top
    level is its projection; each lower level is
    ``smooth(upsample2x(level above) + projection)``, where ``smooth`` is a 3x3
    separable conv + BatchNorm + ReLU6 and the level above is its *smoothed*
    output (as the Keras TF OD FPN does; the TF-slim one carried the unsmoothed
    sum).  Upsampled maps are cropped to the lateral size when the input is not a
    multiple of the stride.  Levels above 5 are 3x3 stride-2 separable convs +
    BatchNorm + ReLU6 on the previous level (``bottom_up_Conv2d_20``, ...).
    The box predictor is weight-shared across levels: ``num_layers_before_predictor``
    separable 3x3 convs of ``box_predictor_depth`` (one set of conv weights, a
    separate BatchNorm per level, as TF OD), then a separable 3x3 class conv
    (bias ``class_prediction_bias_init``) and a separable 3x3 box conv
    (:func:`~ssd_keras.models.heads.weight_shared_heads`).  At
    320x320 the levels are 40, 20, 10, 5, 3; at 640x640 80, 40, 20, 10, 5.

``backbone`` options (``config.backbone``; defaults in brackets, declared in
:data:`SSD_MOBILENET_V2_OPTIONS` / :data:`SSD_MOBILENET_V2_FPNLITE_OPTIONS`;
any other key is an error naming it)
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
from ssd_keras.models.base import register_architecture, regularizer
from ssd_keras.models.blocks import conv_bn_relu6, normal_initializer
from ssd_keras.models.heads import separate_conv_heads, weight_shared_heads
from ssd_keras.models.necks import top_down_fpn
from ssd_keras.models.options import backbone_options, declare_backbone_options

BN_MOMENTUM = 0.997       # TF OD batch_norm decay (Keras momentum == TF decay)

#: options both MobileNet v2 builders read (the backbone's own).
_MOBILENET_V2_OPTIONS = {"depth_multiplier": 1.0, "min_depth": 16,
                         "batch_norm_momentum": BN_MOMENTUM, "freeze_batch_norm": False,
                         "imagenet_weights": False}
#: ``ssd_mobilenet_v2`` backbone options and defaults (see the module docstring).
SSD_MOBILENET_V2_OPTIONS = declare_backbone_options("ssd_mobilenet_v2", {
    **_MOBILENET_V2_OPTIONS, "extra_layer_depths": (512, 256, 256, 128), "box_kernel_size": 1,
    "class_prediction_bias_init": 0.0})
#: ``ssd_mobilenet_v2_fpnlite`` backbone options and defaults (``None`` levels: the anchors').
SSD_MOBILENET_V2_FPNLITE_OPTIONS = declare_backbone_options("ssd_mobilenet_v2_fpnlite", {
    **_MOBILENET_V2_OPTIONS, "fpn_depth": 128, "fpn_min_level": None, "fpn_max_level": None,
    "box_predictor_depth": 128, "num_layers_before_predictor": 4,
    "class_prediction_bias_init": 0.0})

# FPN level -> keras.applications MobileNetV2 layer (TF OD layer_4, 7, 14, 19).
FPN_ENDPOINTS = {2: "block_2_add", 3: "block_5_add", 4: "block_12_add", 5: "out_relu"}
# The names keras.applications.MobileNetV2 gives its layers (the backbone part of a model).
BACKBONE_LAYER_NAME = re.compile(
    r"^(Conv1|bn_Conv1|Conv1_relu|expanded_conv_\w+|block_\d+_\w+|Conv_1|Conv_1_bn|out_relu)$")
_KERNEL_NAMES = ("kernel", "depthwise_kernel", "pointwise_kernel")


def depth_fn(depth_multiplier: float, min_depth: int):
    """TF OD ``get_depth_fn``: ``d -> max(int(d * depth_multiplier), min_depth)``."""
    return lambda d: max(int(d * depth_multiplier), min_depth)


def mobilenet_v2_features(x, endpoints, alpha=1.0, batch_norm_momentum=BN_MOMENTUM,
                          freeze_batch_norm=False, kernel_regularizer=None):
    """keras.applications MobileNetV2 built flat on ``x``; the outputs of ``endpoints``.

    Args:
        x: ``(B, H, W, 3)`` input already scaled to ``[-1, 1]`` (a Keras tensor).
        endpoints: MobileNetV2 layer names.
        alpha: the width multiplier (``depth_multiplier``).
        batch_norm_momentum: set on every backbone BatchNorm.
        freeze_batch_norm: make the backbone's BatchNorm layers non-trainable.
        kernel_regularizer: attached to every backbone kernel.

    Returns:
        list of the ``(B, h, w, c)`` outputs of those layers.
    """
    momentum, reg, freeze_bn = float(batch_norm_momentum), kernel_regularizer, freeze_batch_norm
    # weights=None always: initial weights (config.backbone["imagenet_weights"]) are
    # loaded by build_model after the graph exists, never when a saved model is rebuilt.
    net = keras.applications.MobileNetV2(input_tensor=x, include_top=False, weights=None,
                                         alpha=float(alpha))
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
    opts = backbone_options(config)
    momentum = float(opts["batch_norm_momentum"])
    depth = depth_fn(float(opts["depth_multiplier"]), int(opts["min_depth"]))
    extra_depths = tuple(opts["extra_layer_depths"])
    n_sources = len(config.boxes_per_cell())
    if n_sources != 2 + len(extra_depths):
        raise ValueError(f"{config.name}: ssd_mobilenet_v2 has 2 + {len(extra_depths)} source "
                         f"layers (extra_layer_depths={list(extra_depths)}), the anchors have "
                         f"{n_sources}")
    reg = regularizer(config)
    sources = _backbone(x, ("block_13_expand_relu", "out_relu"), opts, reg)
    names = ["block_13_expand_relu", "out_relu"]
    feat = sources[-1]
    for index, d in enumerate(extra_depths, start=2):
        mid = depth(d // 2)
        feat = conv_bn_relu6(feat, mid, 1, 1, f"layer_19_1_Conv2d_{index}_1x1_{mid}", reg, momentum)
        name = f"layer_19_2_Conv2d_{index}_3x3_s2_{depth(d)}"
        feat = conv_bn_relu6(feat, depth(d), 3, 2, name, reg, momentum)
        sources.append(feat)
        names.append(name)
    _check_feature_map_sizes(config, sources, names)
    return separate_conv_heads(sources, config.boxes_per_cell(), config.num_outputs,
                               names=[f"box_predictor_{k}" for k in range(n_sources)],
                               kernel_size=int(opts["box_kernel_size"]),
                               class_bias_init=float(opts["class_prediction_bias_init"]),
                               kernel_regularizer=reg)


# --------------------------------------------------------------------------
# SSD MobileNet v2 FPNLite
# --------------------------------------------------------------------------
def fpn_levels(config):
    """``(min_level, max_level)`` from ``backbone``, checked against anchors and strides."""
    spec = config.anchor_generator
    multiscale = isinstance(spec, MultiscaleAnchors)
    opts = backbone_options(config)
    lo, hi = opts["fpn_min_level"], opts["fpn_max_level"]
    lo = int(lo if lo is not None else spec.min_level if multiscale else 3)
    hi = int(hi if hi is not None else spec.max_level if multiscale else 7)
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

    :func:`~ssd_keras.models.necks.top_down_fpn` with TF OD's layers: 1x1
    projections with bias (``fpn_projection_{level}``), 3x3 separable
    smoothing + BatchNorm + ReLU6 (``fpn_smoothing_{level}``), the smoothed
    map fed down.

    Args:
        features: backbone maps, finest first, each half the size of the previous.
        levels: their FPN levels (e.g. ``[3, 4, 5]``).

    Returns:
        the ``(B, h_l, w_l, depth)`` maps, finest first.
    """
    return top_down_fpn(
        features, channels=(depth,) * len(features), levels=levels, name="fpn",
        lateral_block=lambda feat, filters, level: keras.layers.Conv2D(
            filters, 1, padding="same", use_bias=True, kernel_regularizer=reg,
            kernel_initializer=normal_initializer(0.01), name=f"fpn_projection_{level}")(feat),
        smooth_block=lambda merged, filters, level: conv_bn_relu6(
            merged, filters, 3, 1, f"fpn_smoothing_{level}", reg, momentum, separable=True),
        layer_names={"up": "fpn_upsample_{level}", "crop": "fpn_crop_{level}",
                     "merge": "fpn_add_{level}"})


def _backbone(x, endpoints, opts, reg):
    return mobilenet_v2_features(x, endpoints, alpha=opts["depth_multiplier"],
                                 batch_norm_momentum=opts["batch_norm_momentum"],
                                 freeze_batch_norm=bool(opts["freeze_batch_norm"]),
                                 kernel_regularizer=reg)


@register_architecture("ssd_mobilenet_v2_fpnlite")
def ssd_mobilenet_v2_fpnlite(x, config):
    """Builder for ``architecture="ssd_mobilenet_v2_fpnlite"`` (see the module docstring)."""
    opts = backbone_options(config)
    momentum = float(opts["batch_norm_momentum"])
    depth = depth_fn(float(opts["depth_multiplier"]), int(opts["min_depth"]))
    lo, hi = fpn_levels(config)
    base_hi = min(hi, 5)     # the backbone provides levels up to 5 (stride 32)
    reg = regularizer(config)
    fpn_depth = depth(opts["fpn_depth"])
    base_levels = list(range(lo, base_hi + 1))
    endpoints = _backbone(x, [FPN_ENDPOINTS[level] for level in base_levels], opts, reg)
    maps = fpn_top_down(endpoints, base_levels, fpn_depth, reg, momentum)
    names = [f"fpn_level_{level}" for level in base_levels]
    for level in range(base_hi + 1, hi + 1):
        name = f"bottom_up_Conv2d_{level - base_hi + 19}"
        maps.append(conv_bn_relu6(maps[-1], fpn_depth, 3, 2, name, reg, momentum, separable=True))
        names.append(name)
    _check_feature_map_sizes(config, maps, names)
    boxes = set(config.boxes_per_cell())
    if len(boxes) != 1:
        raise ValueError(f"{config.name}: a weight-shared predictor needs the same boxes per "
                         f"cell on every level, got {config.boxes_per_cell()}")
    return weight_shared_heads(
        maps, list(range(lo, hi + 1)), boxes.pop(), config.num_outputs,
        depth=int(opts["box_predictor_depth"]),
        num_layers=int(opts["num_layers_before_predictor"]),
        class_bias_init=float(opts["class_prediction_bias_init"]), kernel_regularizer=reg,
        batch_norm_momentum=momentum)
