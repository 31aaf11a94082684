"""Necks: a reusable top-down feature pyramid (FPN) with explicit arguments.

:func:`top_down_fpn` takes backbone maps finest first (each stride twice the
previous) and runs the top-down path of Lin et al. 2017:

* the coarsest map goes through a 1x1 lateral conv to ``channels[-1]``;
* at each finer level ``k`` the running map is upsampled x2 (nearest), a 1x1
  lateral conv of ``features[k]`` (to the running map's channels) is added,
  and a 3x3 smoothing conv gives ``channels[k]`` channels (optionally
  BatchNorm + activation, optionally depthwise-separable);
* ``smoothed_top_down=True`` feeds the smoothed map down (TF OD API CenterNet
  ResNet FPN, the Keras TF OD FPNLite, the digits convnet); ``False`` feeds the
  un-smoothed sum down and only outputs the smoothed maps (classic FPN / TF-slim
  TF OD API ``fpn_top_down_feature_maps``; then every level has the same channel
  count).

It is the one top-down FPN of the package.  The lateral and smoothing units
are built from flags (CenterNet) or passed in as ``lateral_block`` /
``smooth_block`` with the architecture's own layers and names, the pyramid
levels naming the layers: SSD MobileNet v2 FPNLite
(:mod:`ssd_keras.models.mobilenet`: 1x1 projections with bias, 3x3 separable
conv + BatchNorm + ReLU6 smoothing) and the digits convnet
(:mod:`ssd_keras.models.digits`: conv + BatchNorm + ReLU units).

Examples::

    # TF OD API CenterNet resnet_v1_101_fpn: taps at strides 4, 8, 16, 32
    p = top_down_fpn([c2, c3, c4, c5], channels=(64, 64, 128, 256),
                     smooth_top=False, outputs=(0,))          # -> [(B, H/4, W/4, 64)]
    # classic FPN, 256 channels everywhere, all levels out
    p2, p3, p4, p5 = top_down_fpn([c2, c3, c4, c5], channels=(256,) * 4,
                                  smoothed_top_down=False, batch_norm=False,
                                  activation=None)
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import keras


def _conv(x, filters, kernel, name, reg, depthwise=False, use_bias=True):
    if depthwise and kernel > 1:
        return keras.layers.SeparableConv2D(filters, kernel, padding="same", use_bias=use_bias,
                                            depthwise_regularizer=reg, pointwise_regularizer=reg,
                                            name=name)(x)
    return keras.layers.Conv2D(filters, kernel, padding="same", use_bias=use_bias,
                               kernel_regularizer=reg, name=name)(x)


#: default names of the layers between the blocks (``{name}`` prefix, ``{level}``).
FPN_LAYER_NAMES = {"up": "{name}_up{level}", "crop": "{name}_crop{level}",
                   "merge": "{name}_merge{level}"}


def top_down_fpn(features: Sequence, channels: Sequence[int],
                 outputs: Optional[Sequence[int]] = None,
                 smoothed_top_down: bool = True, smooth_top: bool = False,
                 batch_norm: bool = True, activation: Optional[str] = "relu",
                 lateral_batch_norm: bool = False, depthwise: bool = False,
                 kernel_regularizer=None, name: str = "fpn", *,
                 levels: Optional[Sequence[int]] = None,
                 lateral_block: Optional[Callable] = None, smooth_block: Optional[Callable] = None,
                 lateral_first: bool = False, layer_names: Optional[dict] = None) -> list:
    """Top-down pyramid over ``features``; returns the maps at ``outputs``.

    Args:
        features: backbone maps ``[(B, H/s_0, W/s_0, c_0), ...]`` finest first,
            each of half the previous resolution (``s_{k+1} = 2 s_k``; an
            upsampled map one row / column larger than the lateral -- odd
            sizes -- is cropped at the bottom / right).
        channels: output channels per level (same length as ``features``).
            With ``smoothed_top_down`` the lateral conv of level ``k`` has
            ``channels[k + 1]`` filters (it is added to the upsampled level
            ``k + 1``); without it all entries must be equal.
        outputs: indices into ``features`` of the maps to return (finest
            first); default all.  E.g. ``(0,)`` for CenterNet's stride-4 map.
        smoothed_top_down: feed the smoothed map down (see module docstring).
        smooth_top: also apply a 3x3 smoothing conv at the coarsest level.
        batch_norm, activation: after each smoothing conv (``None``: none).
        lateral_batch_norm: BatchNorm + activation after each 1x1 lateral conv.
        depthwise: depthwise-separable 3x3 smoothing (FPNLite).
        kernel_regularizer: for every conv kernel.
        name: layer-name prefix (``{name}_lateral{level}``, ``{name}_smooth{level}``, ...).
        levels: the features' level numbers used in layer names (default
            ``0 .. n-1``, the indices).
        lateral_block: ``lateral_block(x, filters, level) -> (B, h, w, filters)``
            replacing the flag-built 1x1 lateral (conv, optional BatchNorm +
            activation) -- an architecture's own layers and names.
        smooth_block: ``smooth_block(x, filters, level) -> (B, h, w, filters)``
            replacing the flag-built 3x3 smoothing.
        lateral_first: add ``lateral + upsampled`` instead of ``upsampled + lateral``
            (the same sum; the input order fixes the layer order of a saved model).
        layer_names: templates for the ``"up"``, ``"crop"``, ``"merge"`` layers
            (``{name}``, ``{level}``; default :data:`FPN_LAYER_NAMES`).

    Returns:
        list of ``(B, H/s_k, W/s_k, channels[k])`` for ``k`` in ``outputs``.
    """
    n = len(features)
    channels = [int(c) for c in channels]
    if n < 1 or len(channels) != n:
        raise ValueError(f"{name}: need one channel count per feature map, got {len(channels)} "
                         f"for {n} maps")
    if not smoothed_top_down and len(set(channels)) != 1:
        raise ValueError(f"{name}: smoothed_top_down=False needs equal channels, got {channels}")
    outputs = tuple(range(n)) if outputs is None else tuple(int(k) for k in outputs)
    if any(k < 0 or k >= n for k in outputs):
        raise ValueError(f"{name}: outputs {outputs} outside 0..{n - 1}")
    levels = tuple(range(n)) if levels is None else tuple(int(level) for level in levels)
    if len(levels) != n:
        raise ValueError(f"{name}: need one level per feature map, got {levels} for {n} maps")
    names = {**FPN_LAYER_NAMES, **(layer_names or {})}
    reg = kernel_regularizer

    def norm_act(x, tag, norm, act):
        if norm:
            x = keras.layers.BatchNormalization(name=f"{name}_{tag}_bn")(x)
        if act:
            x = keras.layers.Activation(act, name=f"{name}_{tag}_{act}")(x)
        return x

    def flag_lateral(x, filters, level):
        x = _conv(x, filters, 1, f"{name}_lateral{level}", reg, use_bias=not lateral_batch_norm)
        return norm_act(x, f"lateral{level}", lateral_batch_norm,
                        activation if lateral_batch_norm else None)

    def flag_smooth(x, filters, level):
        x = _conv(x, filters, 3, f"{name}_smooth{level}", reg, depthwise=depthwise,
                  use_bias=True)  # TF OD API: conv with bias, then BatchNorm
        return norm_act(x, f"smooth{level}", batch_norm, activation)

    lateral = lateral_block or flag_lateral
    smooth = smooth_block or flag_smooth

    top = n - 1
    running = lateral(features[top], channels[top], levels[top])
    maps = {top: smooth(running, channels[top], levels[top]) if smooth_top else running}
    if smooth_top and smoothed_top_down:
        running = maps[top]
    for k in range(top - 1, -1, -1):
        level = levels[k]
        side = lateral(features[k], running.shape[-1], level)
        up = keras.layers.UpSampling2D(2, interpolation="nearest",
                                       name=names["up"].format(name=name, level=level))(running)
        excess = (up.shape[1] - side.shape[1], up.shape[2] - side.shape[2])
        if excess != (0, 0):   # odd lateral size: the upsampled map has one row/column more
            up = keras.layers.Cropping2D(((0, excess[0]), (0, excess[1])),
                                         name=names["crop"].format(name=name, level=level))(up)
        merge = keras.layers.Add(name=names["merge"].format(name=name, level=level))
        merged = merge([side, up] if lateral_first else [up, side])
        maps[k] = smooth(merged, channels[k], level)
        running = maps[k] if smoothed_top_down else merged
    return [maps[k] for k in outputs]
