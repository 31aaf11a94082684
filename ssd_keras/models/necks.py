"""Necks: a reusable top-down feature pyramid (FPN) with explicit arguments.

:func:`top_down_fpn` takes backbone maps finest first (each stride twice the
previous) and runs the top-down path of Lin et al. 2017:

* the coarsest map goes through a 1x1 lateral conv to ``channels[-1]``;
* at each finer level ``k`` the running map is upsampled x2 (nearest), a 1x1
  lateral conv of ``features[k]`` (to the running map's channels) is added,
  and a 3x3 smoothing conv gives ``channels[k]`` channels (optionally
  BatchNorm + activation, optionally depthwise-separable);
* ``smoothed_top_down=True`` feeds the smoothed map down (TF OD API CenterNet
  ResNet FPN, the digits convnet); ``False`` feeds the un-smoothed sum down and
  only outputs the smoothed maps (classic FPN / TF OD API ``fpn_top_down_feature_maps``;
  then every level has the same channel count).

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

from typing import Optional, Sequence

import keras


def _conv(x, filters, kernel, name, reg, depthwise=False, use_bias=True):
    if depthwise and kernel > 1:
        return keras.layers.SeparableConv2D(filters, kernel, padding="same", use_bias=use_bias,
                                            depthwise_regularizer=reg, pointwise_regularizer=reg,
                                            name=name)(x)
    return keras.layers.Conv2D(filters, kernel, padding="same", use_bias=use_bias,
                               kernel_regularizer=reg, name=name)(x)


def top_down_fpn(features: Sequence, channels: Sequence[int], outputs: Optional[Sequence[int]] = None,
                 smoothed_top_down: bool = True, smooth_top: bool = False,
                 batch_norm: bool = True, activation: Optional[str] = "relu",
                 lateral_batch_norm: bool = False, depthwise: bool = False,
                 kernel_regularizer=None, name: str = "fpn") -> list:
    """Top-down pyramid over ``features``; returns the maps at ``outputs``.

    Args:
        features: backbone maps ``[(B, H/s_0, W/s_0, c_0), ...]`` finest first,
            each of half the previous resolution (``s_{k+1} = 2 s_k``).
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
        name: layer-name prefix (``{name}_lateral{k}``, ``{name}_smooth{k}``, ...).

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
    reg = kernel_regularizer

    def norm_act(x, tag, norm, act):
        if norm:
            x = keras.layers.BatchNormalization(name=f"{name}_{tag}_bn")(x)
        if act:
            x = keras.layers.Activation(act, name=f"{name}_{tag}_{act}")(x)
        return x

    def lateral(k, filters):
        x = _conv(features[k], filters, 1, f"{name}_lateral{k}", reg,
                  use_bias=not lateral_batch_norm)
        return norm_act(x, f"lateral{k}", lateral_batch_norm,
                        activation if lateral_batch_norm else None)

    def smooth(x, k):
        x = _conv(x, channels[k], 3, f"{name}_smooth{k}", reg, depthwise=depthwise,
                  use_bias=True)  # TF OD API: conv with bias, then BatchNorm
        return norm_act(x, f"smooth{k}", batch_norm, activation)

    top = n - 1
    running = lateral(top, channels[top])
    maps = {top: smooth(running, top) if smooth_top else running}
    if smooth_top and smoothed_top_down:
        running = maps[top]
    for k in range(top - 1, -1, -1):
        up = keras.layers.UpSampling2D(2, interpolation="nearest", name=f"{name}_up{k}")(running)
        merged = keras.layers.Add(name=f"{name}_merge{k}")([up, lateral(k, up.shape[-1])])
        maps[k] = smooth(merged, k)
        running = maps[k] if smoothed_top_down else merged
    return [maps[k] for k in outputs]
