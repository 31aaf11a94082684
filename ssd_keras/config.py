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
import math
from typing import Optional, Tuple

import numpy as np

from ssd_keras.config_base import JsonConfig, as_tuple  # noqa: F401  (JsonConfig: re-exported)
from ssd_keras.families.ssd.anchors import (  # noqa: F401  (the specs: re-exported)
    ANCHOR_FAMILIES, AnchorSpec, GridAnchors, MultiscaleAnchors, PriorBoxAnchors,
    anchor_spec_from_dict)

Size = Tuple[int, int]


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
            set_(self, name, as_tuple(getattr(self, name)))
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
        from ssd_keras.families.ssd.anchors import generate_anchors
        return generate_anchors(self, image_size)
