"""Detector configuration: one dataclass that is the single source of truth.

A :class:`DetectorConfig` describes everything that must agree between the
model, the target encoder in the input pipeline, the loss and the decoder:
image size, classes, the anchor (default box) family and its parameters, the
box coder variances, matching thresholds, preprocessing, loss and decoding
defaults.  Presets (``ssd_keras.presets``) are plain data built from it.

Conventions used everywhere in ssd_keras
-----------------------------------------
* Image sizes are ``(height, width)`` in pixels.
* Anchors are float32 ``(N, 4)`` **normalised** ``(cx, cy, w, h)`` in ``[0, 1]``
  relative to the model input, in the order of the model's predictions.
* Ground-truth and decoded boxes inside the library are normalised corners
  ``[xmin, ymin, xmax, ymax]``; readers keep source pixels
  (see :mod:`ssd_keras.data.records`).
* ``weight_decay`` uses the Caffe / TF-slim convention: the loss gains
  ``0.5 * weight_decay * sum(w**2)``, so the gradient gains ``weight_decay * w``
  exactly as Caffe's ``weight_decay: 0.0005``.  Keras' ``L2(l)`` adds
  ``l * sum(w**2)``, so layers use ``L2(weight_decay / 2)``.
"""
from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np

Size = Tuple[int, int]


def _as_tuple(value):
    """Recursively turn lists into tuples (JSON round trips give lists)."""
    if isinstance(value, (list, tuple)):
        return tuple(_as_tuple(v) for v in value)
    return value


# --------------------------------------------------------------------------
# Anchor families
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
    return cls(**{k: _as_tuple(v) for k, v in d.items()})


class JsonConfig:
    """JSON round trip for config dataclasses: ``replace``, ``to_dict``/``from_dict`` (unknown
    fields rejected, naming them), ``to_json`` (atomic file write)/``from_json`` (path or text)."""

    def replace(self, **changes):
        """A copy with fields changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))  # tuples -> lists, plain JSON

    @classmethod
    def from_dict(cls, d: dict):
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
        return cls(**dict(d))

    def to_json(self, path=None, indent=2) -> str:
        text = json.dumps(self.to_dict(), indent=indent)
        if path is not None:
            from ssd_keras.io_utils import atomic_write_text
            atomic_write_text(path, text + "\n")
        return text

    @classmethod
    def from_json(cls, path_or_text):
        text = str(path_or_text)
        if not text.lstrip().startswith("{"):
            with open(path_or_text) as f:
                text = f.read()
        return cls.from_dict(json.loads(text))


# --------------------------------------------------------------------------
# The detector config
# --------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class DetectorConfig(JsonConfig):
    """Everything the model, encoder, loss and decoder must agree on.

    Attributes (grouped):
        name: preset name or run name.
        architecture: model builder key: ``"ssd_vgg16"``, ``"ssd_mobilenet_v2"``,
            ``"ssd_mobilenet_v2_fpnlite"`` (see :mod:`ssd_keras.models`).
        image_size: model input ``(height, width)``.
        num_classes: number of object classes, *without* background.
        class_names: optional names of labels ``1..num_classes``.

        anchor_generator: one of :class:`PriorBoxAnchors`, :class:`GridAnchors`,
            :class:`MultiscaleAnchors` (the array comes from :meth:`anchors`).
        feature_map_sizes: ``(h, w)`` of each source layer; ``None`` derives
            ``ceil(H / stride)`` from ``feature_strides``.
        feature_strides: stride in pixels of each source layer.

        variances: box-coder variances ``(cx, cy, w, h)``; offsets are
            ``((g_c - a_c) / a_wh) / v`` and ``log(g_wh / a_wh) / v``
            (TF OD API scale factors 10, 10, 5, 5 are the same thing).
        match_iou_threshold: anchors with IoU >= this to some box are positive
            (after every box has taken its best anchor).
        negative_iou_threshold: anchors below this are negatives; anchors in
            between are ignored (label -1).  Equal to the match threshold by
            default (no ignore zone), as in SSD.

        input_scaling: ``"caffe"`` (subtract ``pixel_mean``, reorder to
            ``channel_order``) or ``"tf"`` (scale to ``[-1, 1]``). The model does
            this itself: its input is RGB float in ``[0, 255]``.
        pixel_mean: RGB mean in ``[0, 255]`` (also the expand canvas colour).
        channel_order: ``"bgr"`` for Caffe-trained VGG weights, else ``"rgb"``.

        classification_loss: ``"softmax"`` (cross-entropy with hard negative
            mining, SSD) or ``"sigmoid_focal"`` (RetinaNet / TF OD API).
        neg_pos_ratio: hard negatives per positive (softmax loss).
        localization_weight: weight of the smooth-L1 term (SSD's alpha).
        focal_alpha, focal_gamma: focal-loss parameters.
        weight_decay: Caffe-convention weight decay (see module docstring).

        score_threshold, nms_iou_threshold, max_detections,
        max_detections_per_class: decoding defaults (Caffe: 0.01, 0.45, 200,
            400 candidates per class).

        backbone: free-form builder options (e.g. ``depth_multiplier``,
            ``min_depth``, ``fpn_depth``; see each builder's docstring).
    """

    name: str = "ssd300_voc"
    architecture: str = "ssd_vgg16"
    image_size: Size = (300, 300)
    num_classes: int = 20
    class_names: Optional[Tuple[str, ...]] = None

    anchor_generator: AnchorSpec = dataclasses.field(default_factory=lambda: PriorBoxAnchors(
        scales=(0.1, 0.2, 0.37, 0.54, 0.71, 0.88, 1.05),
        aspect_ratios=((2.0,), (2.0, 3.0), (2.0, 3.0), (2.0, 3.0), (2.0,), (2.0,)),
        steps=(8, 16, 32, 64, 100, 300)))
    feature_map_sizes: Optional[Tuple[Size, ...]] = ((38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1))
    feature_strides: Tuple[float, ...] = (8, 16, 32, 64, 100, 300)

    variances: Tuple[float, float, float, float] = (0.1, 0.1, 0.2, 0.2)
    match_iou_threshold: float = 0.5
    negative_iou_threshold: Optional[float] = None

    input_scaling: str = "caffe"
    pixel_mean: Tuple[float, float, float] = (123.0, 117.0, 104.0)
    channel_order: str = "bgr"

    classification_loss: str = "softmax"
    neg_pos_ratio: float = 3.0
    localization_weight: float = 1.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    weight_decay: float = 5e-4

    score_threshold: float = 0.01
    nms_iou_threshold: float = 0.45
    max_detections: int = 200
    max_detections_per_class: int = 400

    backbone: dict = dataclasses.field(default_factory=dict)

    # ----------------------------------------------------------------- checks
    def __post_init__(self):
        set_ = object.__setattr__
        if isinstance(self.anchor_generator, dict):
            set_(self, "anchor_generator", anchor_spec_from_dict(self.anchor_generator))
        for name in ("image_size", "feature_map_sizes", "feature_strides", "variances",
                     "pixel_mean", "class_names"):
            set_(self, name, _as_tuple(getattr(self, name)))
        set_(self, "backbone", dict(self.backbone or {}))
        h, w = self.image_size
        if h <= 0 or w <= 0:
            raise ValueError(f"image_size must be positive (height, width), got {self.image_size}")
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1 (background excluded), got {self.num_classes}")
        if self.class_names is not None and len(self.class_names) != self.num_classes:
            raise ValueError(f"{len(self.class_names)} class_names for num_classes={self.num_classes}")
        if self.classification_loss not in ("softmax", "sigmoid_focal"):
            raise ValueError(f"classification_loss must be 'softmax' or 'sigmoid_focal', "
                             f"got {self.classification_loss!r}")
        if self.input_scaling not in ("caffe", "tf"):
            raise ValueError(f"input_scaling must be 'caffe' or 'tf', got {self.input_scaling!r}")
        if self.channel_order not in ("rgb", "bgr"):
            raise ValueError(f"channel_order must be 'rgb' or 'bgr', got {self.channel_order!r}")
        if any(v <= 0 for v in self.variances) or len(self.variances) != 4:
            raise ValueError(f"variances must be 4 positive numbers, got {self.variances}")
        n_layers = len(self.anchor_generator.boxes_per_cell())
        if len(self.feature_strides) != n_layers:
            raise ValueError(f"{len(self.feature_strides)} feature_strides for {n_layers} anchor layers")
        if self.feature_map_sizes is not None and len(self.feature_map_sizes) != n_layers:
            raise ValueError(f"{len(self.feature_map_sizes)} feature_map_sizes for {n_layers} anchor layers")
        if isinstance(self.anchor_generator, PriorBoxAnchors):
            a = self.anchor_generator
            if len(a.scales) != n_layers + 1 or len(a.steps) != n_layers:
                raise ValueError(f"priorbox anchors need {n_layers + 1} scales and {n_layers} steps, "
                                 f"got {len(a.scales)} and {len(a.steps)}")

    # ----------------------------------------------------------- derived data
    @property
    def num_outputs(self) -> int:
        """Width of the class head: ``num_classes + 1`` (softmax) or ``num_classes`` (sigmoid)."""
        return self.num_classes + 1 if self.classification_loss == "softmax" else self.num_classes

    def boxes_per_cell(self) -> Tuple[int, ...]:
        return self.anchor_generator.boxes_per_cell()

    def get_feature_map_sizes(self, image_size: Optional[Size] = None) -> Tuple[Size, ...]:
        """``(h, w)`` of each source layer for ``image_size`` (default: the config's)."""
        if image_size is None or tuple(image_size) == tuple(self.image_size):
            if self.feature_map_sizes is not None:
                return tuple(tuple(s) for s in self.feature_map_sizes)
            image_size = self.image_size
        elif self.feature_map_sizes is not None:
            raise ValueError(
                f"{self.name}: feature map sizes are fixed for {self.image_size}; "
                f"use config.replace(image_size=..., feature_map_sizes=...) for {tuple(image_size)}")
        h, w = image_size
        return tuple((int(math.ceil(h / s)), int(math.ceil(w / s))) for s in self.feature_strides)

    def num_anchors(self, image_size: Optional[Size] = None) -> int:
        return int(sum(fh * fw * b for (fh, fw), b in
                       zip(self.get_feature_map_sizes(image_size), self.boxes_per_cell())))

    def anchors(self, image_size: Optional[Size] = None) -> np.ndarray:
        """Default boxes: float32 ``(N, 4)`` normalised ``(cx, cy, w, h)``.

        In exactly the order of the model's predictions: source layer by source
        layer, cells row-major, then the boxes of a cell (see the anchor family).
        ``image_size`` (default: the config's) lets a fully convolutional model
        with pixel-sized anchors (multiscale) run on another input size.
        """
        from ssd_keras.anchors import generate_anchors
        return generate_anchors(self, image_size)
