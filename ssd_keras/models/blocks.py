"""Convolution units shared by the backbones, necks and heads (one implementation each).

Every unit takes and returns a channels-last Keras tensor ``(B, h, w, c)``;
``name`` is the layer-name stem, and the suffixes are part of the contract
(the legacy ``.h5`` importer, the shipped ImageNet backbone and saved
``.keras`` files all rely on the layer names and classes):

* :func:`conv_bn_relu6` -- TF OD API conv (no bias) + BatchNorm + ReLU6:
  ``{name}``, ``{name}_batchnorm``, ``{name}_relu6`` (SSD MobileNet extras,
  FPNLite smoothing and bottom-up layers).
* :func:`bn_relu6` -- the BatchNorm + ReLU6 half alone (the weight-shared box
  predictor shares one conv across levels but has a BatchNorm per level).
* :func:`conv_bn_relu` -- conv (no bias) + BatchNorm + ReLU: ``{name}_conv``,
  ``{name}_bn``, ``{name}_relu`` (the digits convnet and CenterNet convnet).
"""
from __future__ import annotations

import keras

#: TF OD API batch-norm epsilon (its ``batch_norm { epsilon: 0.001 }``).
BN_EPSILON = 1e-3


def normal_initializer(stddev: float, truncated: bool = False):
    """A fresh zero-mean (truncated) normal initializer.

    A fresh instance per layer: a reused unseeded Keras initializer repeats its values.
    """
    cls = keras.initializers.TruncatedNormal if truncated else keras.initializers.RandomNormal
    return cls(mean=0.0, stddev=stddev)


def bn_relu6(x, name: str, momentum: float, epsilon: float = BN_EPSILON):
    """BatchNorm (``{name}_batchnorm``) + ReLU6 (``{name}_relu6``); shape unchanged."""
    x = keras.layers.BatchNormalization(momentum=momentum, epsilon=epsilon,
                                        name=f"{name}_batchnorm")(x)
    return keras.layers.ReLU(6.0, name=f"{name}_relu6")(x)


def conv_bn_relu6(x, filters: int, kernel: int, stride: int, name: str, reg, momentum: float,
                  separable: bool = False):
    """Conv (no bias, ``name``) + BatchNorm + ReLU6: ``(B, h, w, c)`` -> ``(B, h', w', filters)``.

    ``h' = ceil(h / stride)``, ``w' = ceil(w / stride)`` ('same' padding).

    ``separable``: a depthwise-separable conv, initialised N(0, 0.01) as TF OD's
    depthwise layers; otherwise a truncated N(0, 0.03) conv.  ``reg`` regularises
    every kernel.
    """
    if separable:
        conv = keras.layers.SeparableConv2D(
            filters, kernel, strides=stride, padding="same", use_bias=False,
            depthwise_regularizer=reg, pointwise_regularizer=reg,
            depthwise_initializer=normal_initializer(0.01),
            pointwise_initializer=normal_initializer(0.01), name=name)
    else:
        conv = keras.layers.Conv2D(
            filters, kernel, strides=stride, padding="same", use_bias=False,
            kernel_regularizer=reg, kernel_initializer=normal_initializer(0.03, truncated=True),
            name=name)
    return bn_relu6(conv(x), name, momentum)


def conv_bn_relu(x, filters: int, stride: int, reg, name: str, kernel_size: int = 3):
    """Conv (no bias, glorot) + BatchNorm (momentum 0.99) + ReLU, 'same' padding.

    Layers ``{name}_conv``, ``{name}_bn``, ``{name}_relu``; output
    ``(B, ceil(h/stride), ceil(w/stride), filters)``.
    """
    x = keras.layers.Conv2D(filters, kernel_size, strides=stride, padding="same", use_bias=False,
                            kernel_regularizer=reg, name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(momentum=0.99, epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)
