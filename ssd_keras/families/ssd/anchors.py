"""SSD default (anchor) boxes: the typed anchor specs and their numpy generators.

The specs (:class:`PriorBoxAnchors`, :class:`GridAnchors`,
:class:`MultiscaleAnchors`, discriminated by ``kind``) are frozen dataclasses
held by the SSD head config (``config.head.anchor_generator``); one generator
function per spec; :func:`generate_anchors` dispatches.  Every
function returns float32 ``(N, 4)`` normalised ``(cx, cy, w, h)`` in the order of
the model's predictions: layer by layer, cells row-major (``i`` over rows, ``j``
over columns), then the boxes of a cell.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Optional, Tuple, Union

import numpy as np

from ssd_keras.config_base import as_tuple


# --------------------------------------------------------------------------
# Anchor specs
# --------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class PriorBoxAnchors:
    """Caffe SSD ``PriorBox`` anchors (Liu et al. 2016).

    For source layer ``k`` with scale ``s_k`` (fraction of the image's smaller
    side; ``min_size = s_k * S``, ``max_size = s_{k+1} * S``) each cell holds, in
    this order: the ratio-1 box of side ``s_k``, the ratio-1 box of side
    ``sqrt(s_k * s_{k+1})``, then for each ratio ``r`` in ``aspect_ratios[k]``
    the boxes ``r`` and ``1/r`` (``w = s_k*sqrt(r)``, ``h = s_k/sqrt(r)``).
    Centres are ``(j + offset) * step / W`` and ``(i + offset) * step / H``.

    Attributes:
        scales: ``L + 1`` scales ``s_1 .. s_{L+1}`` (the last one only serves
            the second ratio-1 box of the last layer).
        aspect_ratios: per layer, the ratios besides 1 (each also flipped).
        steps: per layer, the cell size in pixels (Caffe ``step``).
        offset: cell-centre offset (0.5).
        clip: clip anchors to ``[0, 1]`` (Caffe's ``clip: false`` for SSD).
    """

    scales: Tuple[float, ...]
    aspect_ratios: Tuple[Tuple[float, ...], ...]
    steps: Tuple[float, ...]
    offset: float = 0.5
    clip: bool = False
    kind: str = "priorbox"

    def boxes_per_cell(self) -> Tuple[int, ...]:
        return tuple(2 + 2 * len(r) for r in self.aspect_ratios)


@dataclasses.dataclass(frozen=True)
class GridAnchors:
    """TF Object Detection API ``ssd_anchor_generator`` (SSD MobileNet v2).

    Scales ``s_i = min_scale + (max_scale - min_scale) * i / (L - 1)`` plus
    ``s_L = 1.0`` for interpolation.  Layer 0 with ``reduce_boxes_in_lowest_layer``
    holds ``(0.1, 1), (s_0, 2), (s_0, 1/2)``; every other layer holds
    ``(s_i, r)`` for each ratio then ``(sqrt(s_i * s_{i+1}), 1)``.
    ``w = s * sqrt(r)``, ``h = s / sqrt(r)`` (normalised), centres
    ``(j + 0.5) / f_w``.  Scales are fractions of the image's smaller side.
    """

    num_layers: int = 6
    min_scale: float = 0.2
    max_scale: float = 0.95
    aspect_ratios: Tuple[float, ...] = (1.0, 2.0, 0.5, 3.0, 1.0 / 3.0)
    interpolated_scale_aspect_ratio: float = 1.0
    reduce_boxes_in_lowest_layer: bool = True
    clip: bool = False
    kind: str = "grid"

    def layer_boxes(self):
        """Per layer, a list of ``(scale, ratio)`` pairs (normalised scale)."""
        n = self.num_layers
        scales = [self.min_scale + (self.max_scale - self.min_scale) * i / max(n - 1, 1)
                  for i in range(n)] + [1.0]
        layers = []
        for i in range(n):
            if i == 0 and self.reduce_boxes_in_lowest_layer:
                layers.append([(0.1, 1.0), (scales[0], 2.0), (scales[0], 0.5)])
                continue
            pairs = [(scales[i], r) for r in self.aspect_ratios]
            if self.interpolated_scale_aspect_ratio > 0:
                pairs.append((math.sqrt(scales[i] * scales[i + 1]),
                              self.interpolated_scale_aspect_ratio))
            layers.append(pairs)
        return layers

    def boxes_per_cell(self) -> Tuple[int, ...]:
        return tuple(len(p) for p in self.layer_boxes())


@dataclasses.dataclass(frozen=True)
class MultiscaleAnchors:
    """RetinaNet / FPNLite ``multiscale_anchor_generator`` anchors, in pixels.

    Level ``l`` (stride ``2**l``) holds, per cell, for each octave scale
    ``2**(i / scales_per_octave)`` and each ratio ``r``, a box of
    ``anchor_scale * 2**l * 2**(i/spo)`` pixels with ``w = size*sqrt(r)``,
    ``h = size/sqrt(r)``; centres at ``(j + 0.5) * 2**l`` pixels.  Sizes are in
    pixels, so a model trained on crops detects with the same anchors on a
    larger image.  ``size_multipliers`` (optional, one per level) rescales a
    level's anchors -- used to fit anchors to small objects.
    """

    min_level: int = 3
    max_level: int = 7
    anchor_scale: float = 4.0
    scales_per_octave: int = 2
    aspect_ratios: Tuple[float, ...] = (1.0, 2.0, 0.5)
    size_multipliers: Optional[Tuple[float, ...]] = None
    clip: bool = False
    kind: str = "multiscale"

    @property
    def num_layers(self) -> int:
        return self.max_level - self.min_level + 1

    def boxes_per_cell(self) -> Tuple[int, ...]:
        return (self.scales_per_octave * len(self.aspect_ratios),) * self.num_layers

    def strides(self) -> Tuple[int, ...]:
        return tuple(2 ** l for l in range(self.min_level, self.max_level + 1))


ANCHOR_FAMILIES = {
    "priorbox": PriorBoxAnchors,
    "grid": GridAnchors,
    "multiscale": MultiscaleAnchors,
}
AnchorSpec = Union[PriorBoxAnchors, GridAnchors, MultiscaleAnchors]


def anchor_spec_from_dict(d: dict) -> AnchorSpec:
    d = dict(d)
    kind = d.get("kind", "priorbox")
    if kind not in ANCHOR_FAMILIES:
        raise ValueError(f"unknown anchor kind {kind!r}; expected one of {sorted(ANCHOR_FAMILIES)}")
    cls = ANCHOR_FAMILIES[kind]
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise ValueError(f"unknown {kind} anchor fields: {sorted(unknown)}")
    return cls(**{k: as_tuple(v) for k, v in d.items()})


# --------------------------------------------------------------------------
# Generators
# --------------------------------------------------------------------------


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


_GENERATORS = {
    "priorbox": priorbox_anchors,
    "grid": grid_anchors,
    "multiscale": multiscale_anchors,
}


def head_feature_map_sizes(head, image_size, config_size, name="") -> Tuple[Tuple[int, int], ...]:
    """``(h, w)`` of each source layer of an SSD ``head`` for an input of ``image_size``.

    ``head.feature_map_sizes`` (fixed sizes) hold for ``config_size`` -- the
    config's own input size -- only; otherwise ``ceil(H / stride)`` per
    ``head.feature_strides``.  ``name`` names the config in the error.
    """
    if tuple(image_size) == tuple(config_size):
        if head.feature_map_sizes is not None:
            return tuple(tuple(s) for s in head.feature_map_sizes)
    elif head.feature_map_sizes is not None:
        raise ValueError(
            f"{name}: feature map sizes are fixed for {tuple(config_size)}; "
            f"use config.replace(image_size=..., feature_map_sizes=...) for {tuple(image_size)}")
    h, w = image_size
    return tuple((int(math.ceil(h / s)), int(math.ceil(w / s))) for s in head.feature_strides)


@functools.lru_cache(maxsize=32)
def head_anchors(head, image_size, config_size, name="") -> np.ndarray:
    """float32 ``(N, 4)`` normalised ``(cx, cy, w, h)`` anchors of ``head`` at ``image_size``.

    Memoised on the (frozen, hashable) head and the sizes: the encoder, the
    model and the decoder share one array.  Do not write into it.
    """
    fmaps = head_feature_map_sizes(head, image_size, config_size, name)
    spec = head.anchor_generator
    anchors = _GENERATORS[spec.kind](spec, tuple(image_size), fmaps)
    if spec.clip:
        corners = np.concatenate([anchors[:, :2] - anchors[:, 2:] / 2,
                                  anchors[:, :2] + anchors[:, 2:] / 2], 1).clip(0.0, 1.0)
        anchors = np.concatenate([(corners[:, :2] + corners[:, 2:]) / 2,
                                  corners[:, 2:] - corners[:, :2]], 1)
    anchors = anchors.astype(np.float32)
    anchors.setflags(write=False)
    return anchors


def _sizes(config, image_size):
    size = tuple(int(s) for s in (image_size if image_size is not None else config.image_size))
    return size, tuple(int(s) for s in config.image_size)


def feature_map_sizes(config, image_size=None) -> Tuple[Tuple[int, int], ...]:
    """``(h, w)`` of each source layer of an SSD ``config`` at ``image_size`` (default: its own)."""
    return head_feature_map_sizes(config.head, *_sizes(config, image_size), config.name)


def num_anchors(config, image_size=None) -> int:
    """``N``, the anchors of an SSD ``config`` at ``image_size`` (the model's prediction count)."""
    return int(sum(fh * fw * b for (fh, fw), b in
                   zip(feature_map_sizes(config, image_size), config.head.boxes_per_cell())))


def cached_anchors(config, image_size=None) -> np.ndarray:
    """``config.anchors(image_size)`` memoised and read-only (:func:`head_anchors`)."""
    return head_anchors(config.head, *_sizes(config, image_size), config.name)


def generate_anchors(config, image_size=None) -> np.ndarray:
    """float32 ``(N, 4)`` normalised ``(cx, cy, w, h)`` anchors of an SSD ``config`` (a copy).

    ``image_size`` ``(H, W)`` defaults to ``config.image_size``.
    """
    return head_anchors(config.head, *_sizes(config, image_size), config.name).copy()
