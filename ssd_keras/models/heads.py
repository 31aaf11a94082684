"""SSD prediction heads: reusable pieces with explicit arguments.

Both heads take the source feature maps ``[(B, h_k, w_k, c_k), ...]`` in
anchor order (the order of ``config.anchors()``) and return

* ``(B, N, C)`` class logits -- ``C = num_outputs`` (``K + 1`` with background
  first for the softmax loss, ``K`` for sigmoid), and
* ``(B, N, 4)`` box offsets (encoded against the anchors),

``N = sum_k h_k * w_k * boxes_k``, each cell's boxes contiguous (row-major
cells, then the boxes of a cell), both float32 (layers ``classification`` and
``regression``; see :func:`concat_predictions`).

:func:`separate_conv_heads`
    One class conv and one box conv per source (torchvision ``SSDHead``; the
    Caffe SSD, SSD MobileNet v2 and, with a per-level ``tower``, the digits
    convnet).
:func:`weight_shared_heads`
    TF OD API ``WeightSharedConvolutionalBoxPredictor`` (depthwise): one tower
    of separable convs and one class / box predictor shared by every level,
    a separate BatchNorm per level (SSD MobileNet v2 FPNLite).

Layer names are arguments (:class:`HeadNames`), so each architecture keeps the
names its saved weights and importers use.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Optional, Sequence

import keras

from ssd_keras.models.blocks import BN_EPSILON, bn_relu6, normal_initializer


class HeadNames(NamedTuple):
    """Layer-name templates of :func:`separate_conv_heads`, formatted with the source's prefix."""
    class_conv: str
    box_conv: str
    class_reshape: str
    box_reshape: str


#: Caffe SSD / legacy Keras port names (``conv4_3_norm_mbox_conf``, ...).
CAFFE_HEAD_NAMES = HeadNames("{}_mbox_conf", "{}_mbox_loc", "{}_mbox_conf_reshape",
                             "{}_mbox_loc_reshape")
#: predictor names (``p2_class_predictor``, ``p2_box_reshape``, ...).
PREDICTOR_HEAD_NAMES = HeadNames("{}_class_predictor", "{}_box_predictor", "{}_class_reshape",
                                 "{}_box_reshape")


def concat_predictions(cls_list, box_list):
    """Per-source ``(B, n_k, C)`` / ``(B, n_k, 4)`` -> float32 ``classification`` / ``regression``.

    Concatenated over sources (axis 1) as ``mbox_conf`` / ``mbox_loc`` when
    there is more than one, then cast to float32 (also under mixed precision).
    """
    cls, box = cls_list[0], box_list[0]
    if len(cls_list) > 1:
        cls = keras.layers.Concatenate(axis=1, name="mbox_conf")(cls_list)
    if len(box_list) > 1:
        box = keras.layers.Concatenate(axis=1, name="mbox_loc")(box_list)
    cls = keras.layers.Activation("linear", dtype="float32", name="classification")(cls)
    box = keras.layers.Activation("linear", dtype="float32", name="regression")(box)
    return cls, box


def _fresh(initializer):
    # One initializer per layer, since a reused unseeded Keras initializer repeats
    # its values: an instance is cloned, a factory called; names and config dicts
    # are instantiated per layer by Keras itself.
    if isinstance(initializer, keras.initializers.Initializer):
        return type(initializer).from_config(initializer.get_config())
    return initializer() if callable(initializer) else initializer


def separate_conv_heads(features: Sequence, boxes_per_cell: Sequence[int], num_outputs: int, *,
                        names: Optional[Sequence[str]] = None, kernel_size: int = 3,
                        class_bias_init: float = 0.0, depthwise: bool = False,
                        kernel_initializer="glorot_uniform", kernel_regularizer=None,
                        tower: Optional[Callable] = None,
                        layer_names: HeadNames = CAFFE_HEAD_NAMES):
    """One class head and one box head per source, concatenated over sources.

    Args:
        features: source maps ``[(B, h_k, w_k, c_k), ...]`` in anchor order.
        boxes_per_cell: anchors per cell of each source (``config.boxes_per_cell()``).
        num_outputs: class outputs per box ``C`` (``config.num_outputs``).
        names: per-source name prefixes (default ``source0, source1, ...``).
        kernel_size: predictor kernel (3 for SSD VGG, 1 for TF OD SSD MobileNet v2).
        class_bias_init: class-bias initial value (``-4.6`` ~ prior 0.01 for focal loss).
        depthwise: depthwise-separable predictors.
        kernel_initializer: predictor kernels: a Keras name, an initializer
            (cloned per layer) or a zero-argument factory called per layer.
        kernel_regularizer: for every predictor kernel (biases are not regularised).
        tower: optional ``tower(x, prefix) -> x`` run on each source separately
            for the class branch (``prefix = f"{name}_class"``) and the box
            branch (``f"{name}_box"``) before the predictors.
        layer_names: the layers' name templates (:data:`CAFFE_HEAD_NAMES`).

    Returns:
        ``(B, N, C)`` class logits and ``(B, N, 4)`` offsets (see module docstring).
    """
    reg = kernel_regularizer
    names = names or [f"source{k}" for k in range(len(features))]
    if not len(features) == len(boxes_per_cell) == len(names):
        raise ValueError(f"separate_conv_heads: {len(features)} sources, {len(boxes_per_cell)} "
                         f"boxes-per-cell entries and {len(names)} names must agree")
    c = int(num_outputs)

    def conv(filters, name, bias=0.0):
        if depthwise:
            return keras.layers.SeparableConv2D(
                filters, kernel_size, padding="same", depthwise_regularizer=reg,
                pointwise_regularizer=reg, depthwise_initializer=_fresh(kernel_initializer),
                pointwise_initializer=_fresh(kernel_initializer),
                bias_initializer=keras.initializers.Constant(bias), name=name)
        return keras.layers.Conv2D(
            filters, kernel_size, padding="same", kernel_regularizer=reg,
            kernel_initializer=_fresh(kernel_initializer),
            bias_initializer=keras.initializers.Constant(bias), name=name)

    cls_out, box_out = [], []
    for feat, boxes, name in zip(features, boxes_per_cell, names):
        cls_feat = tower(feat, f"{name}_class") if tower else feat
        box_feat = tower(feat, f"{name}_box") if tower else feat
        cls = conv(boxes * c, layer_names.class_conv.format(name), class_bias_init)(cls_feat)
        box = conv(boxes * 4, layer_names.box_conv.format(name))(box_feat)
        cls_out.append(keras.layers.Reshape(
            (-1, c), name=layer_names.class_reshape.format(name))(cls))
        box_out.append(keras.layers.Reshape(
            (-1, 4), name=layer_names.box_reshape.format(name))(box))
    return concat_predictions(cls_out, box_out)


def weight_shared_heads(features: Sequence, levels: Sequence[int], boxes_per_cell: int,
                        num_outputs: int, *, depth: int, num_layers: int,
                        class_bias_init: float = 0.0, kernel_regularizer=None,
                        batch_norm_momentum: float = 0.997, batch_norm_epsilon: float = BN_EPSILON):
    """TF OD ``WeightSharedConvolutionalBoxPredictor`` (depthwise, shared tower).

    The same ``num_layers`` separable 3x3 convs of ``depth`` channels (no bias,
    ``box_tower_conv_{i}``) run on every level, each followed by a per-level
    BatchNorm + ReLU6 (``box_tower_{i}_level_{level}_batchnorm`` / ``_relu6``),
    then one class (``class_predictor``, bias ``class_bias_init``) and one box
    (``box_encoding_predictor``) separable 3x3 conv, also shared.  Kernels
    N(0, 0.01).

    Args:
        features: the level maps ``[(B, h_l, w_l, c), ...]`` finest first (the
            same ``c`` on every level: the convs are shared).
        levels: their pyramid levels (names only), e.g. ``[3, 4, 5, 6, 7]``.
        boxes_per_cell: anchors per cell, the same on every level.
        num_outputs: class outputs per box ``C``.
        kernel_regularizer: for every kernel (depthwise and pointwise).

    Returns:
        ``(B, N, C)`` class logits and ``(B, N, 4)`` offsets, levels in order.
    """
    reg = kernel_regularizer
    c = int(num_outputs)
    boxes = int(boxes_per_cell)

    def separable(filters, name, bias=0.0, use_bias=True):
        return keras.layers.SeparableConv2D(
            filters, 3, padding="same", use_bias=use_bias, depthwise_regularizer=reg,
            pointwise_regularizer=reg, depthwise_initializer=normal_initializer(0.01),
            pointwise_initializer=normal_initializer(0.01),
            bias_initializer=keras.initializers.Constant(bias), name=name)

    tower = [separable(depth, f"box_tower_conv_{i}", use_bias=False) for i in range(num_layers)]
    class_conv = separable(boxes * c, "class_predictor", bias=class_bias_init)
    box_conv = separable(boxes * 4, "box_encoding_predictor")
    cls_list, box_list = [], []
    for feat, level in zip(features, levels):
        for i, conv in enumerate(tower):
            feat = bn_relu6(conv(feat), f"box_tower_{i}_level_{level}", batch_norm_momentum,
                            batch_norm_epsilon)
        cls_list.append(keras.layers.Reshape((-1, c), name=f"level_{level}_class_reshape")(
            class_conv(feat)))
        box_list.append(keras.layers.Reshape((-1, 4), name=f"level_{level}_box_reshape")(
            box_conv(feat)))
    return concat_predictions(cls_list, box_list)
