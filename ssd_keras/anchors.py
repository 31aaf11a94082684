"""Default (anchor) boxes from a :class:`~ssd_keras.config.DetectorConfig`, in numpy.

One function per anchor family; :func:`generate_anchors` dispatches.  Every
function returns float32 ``(N, 4)`` normalised ``(cx, cy, w, h)`` in the order of
the model's predictions: layer by layer, cells row-major (``i`` over rows, ``j``
over columns), then the boxes of a cell.
"""
from __future__ import annotations

import math

import numpy as np

from ssd_keras.config import DetectorConfig, GridAnchors, MultiscaleAnchors, PriorBoxAnchors


def _tile(fh: int, fw: int, cx_of_j, cy_of_i, sizes: np.ndarray) -> np.ndarray:
    """Place ``sizes`` ``(b, 2)`` normalised (w, h) at every cell of an ``fh x fw`` grid.

    Returns ``(fh * fw * b, 4)`` (cx, cy, w, h) float64, cells row-major.
    """
    cy = np.asarray([cy_of_i(i) for i in range(fh)], np.float64)
    cx = np.asarray([cx_of_j(j) for j in range(fw)], np.float64)
    cyy, cxx = np.meshgrid(cy, cx, indexing="ij")                  # (fh, fw)
    b = len(sizes)
    centres = np.stack([cxx, cyy], -1)[:, :, None, :]              # (fh, fw, 1, 2)
    centres = np.broadcast_to(centres, (fh, fw, b, 2))
    wh = np.broadcast_to(sizes[None, None], (fh, fw, b, 2))
    return np.concatenate([centres, wh], -1).reshape(-1, 4)


def priorbox_anchors(spec: PriorBoxAnchors, image_size, feature_map_sizes) -> np.ndarray:
    """Caffe ``PriorBox`` layer, all source layers (see :class:`PriorBoxAnchors`)."""
    img_h, img_w = image_size
    side = min(img_h, img_w)
    out = []
    for k, (fh, fw) in enumerate(feature_map_sizes):
        min_size = spec.scales[k] * side
        max_size = spec.scales[k + 1] * side
        sizes = [(min_size, min_size)]
        s2 = math.sqrt(min_size * max_size)
        sizes.append((s2, s2))
        for r in spec.aspect_ratios[k]:
            sr = math.sqrt(r)
            sizes.append((min_size * sr, min_size / sr))
            sizes.append((min_size / sr, min_size * sr))
        sizes = np.asarray(sizes, np.float64) / np.array([img_w, img_h], np.float64)
        step = spec.steps[k]
        out.append(_tile(fh, fw,
                         lambda j: (j + spec.offset) * step / img_w,
                         lambda i: (i + spec.offset) * step / img_h, sizes))
    return np.concatenate(out, 0)


def grid_anchors(spec: GridAnchors, image_size, feature_map_sizes) -> np.ndarray:
    """TF OD API ``ssd_anchor_generator`` (see :class:`GridAnchors`)."""
    img_h, img_w = image_size
    side = min(img_h, img_w)
    layers = spec.layer_boxes()
    if len(layers) != len(feature_map_sizes):
        raise ValueError(f"grid anchors have {len(layers)} layers, model has {len(feature_map_sizes)}")
    out = []
    for (fh, fw), pairs in zip(feature_map_sizes, layers):
        sizes = np.asarray([(s * math.sqrt(r) * side / img_w, s / math.sqrt(r) * side / img_h)
                            for s, r in pairs], np.float64)
        out.append(_tile(fh, fw, lambda j: (j + 0.5) / fw, lambda i: (i + 0.5) / fh, sizes))
    return np.concatenate(out, 0)


def multiscale_anchors(spec: MultiscaleAnchors, image_size, feature_map_sizes) -> np.ndarray:
    """RetinaNet / FPNLite anchors with sizes in pixels (see :class:`MultiscaleAnchors`)."""
    img_h, img_w = image_size
    strides = spec.strides()
    if len(strides) != len(feature_map_sizes):
        raise ValueError(f"multiscale anchors have {len(strides)} levels, model has {len(feature_map_sizes)}")
    mult = spec.size_multipliers or (1.0,) * len(strides)
    out = []
    for k, ((fh, fw), stride) in enumerate(zip(feature_map_sizes, strides)):
        base = spec.anchor_scale * stride * mult[k]
        sizes = []
        for o in range(spec.scales_per_octave):
            size = base * 2.0 ** (o / spec.scales_per_octave)
            for r in spec.aspect_ratios:
                sizes.append((size * math.sqrt(r) / img_w, size / math.sqrt(r) / img_h))
        sizes = np.asarray(sizes, np.float64)
        out.append(_tile(fh, fw, lambda j: (j + 0.5) * stride / img_w,
                         lambda i: (i + 0.5) * stride / img_h, sizes))
    return np.concatenate(out, 0)


_FAMILIES = {
    "priorbox": priorbox_anchors,
    "grid": grid_anchors,
    "multiscale": multiscale_anchors,
}


def generate_anchors(config: DetectorConfig, image_size=None) -> np.ndarray:
    """float32 ``(N, 4)`` normalised ``(cx, cy, w, h)`` anchors for ``config``.

    ``image_size`` ``(H, W)`` defaults to ``config.image_size``.
    """
    size = tuple(image_size) if image_size is not None else tuple(config.image_size)
    fmaps = config.get_feature_map_sizes(size)
    spec = config.anchor_generator
    anchors = _FAMILIES[spec.kind](spec, size, fmaps)
    if spec.clip:
        corners = np.concatenate([anchors[:, :2] - anchors[:, 2:] / 2,
                                  anchors[:, :2] + anchors[:, 2:] / 2], 1).clip(0.0, 1.0)
        anchors = np.concatenate([(corners[:, :2] + corners[:, 2:]) / 2,
                                  corners[:, 2:] - corners[:, :2]], 1)
    return anchors.astype(np.float32)
