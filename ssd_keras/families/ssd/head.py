"""``SSDHead``: the SSD family's part of a detector config (``config.head``, ``kind="ssd"``).

Everything anchor-related the model, the ``tf.data`` encoder, the loss and the
decoder must agree on: the anchor spec and the source-layer geometry, the box
coder, matching, the loss and the NMS defaults.  The common fields (image
size, classes, backbone, preprocessing, weight decay) stay in
:class:`~ssd_keras.config.DetectorConfig`.

The field names are exactly the flat SSD fields ``DetectorConfig`` had before
the family seam, so an old config (a ``config.json`` or the config inside a
saved ``.keras``) loads by moving those keys under ``head``
(:func:`split_legacy_fields`).
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Tuple

from ssd_keras.config_base import JsonConfig, as_tuple, checked_fields
from ssd_keras.families.ssd.anchors import AnchorSpec, PriorBoxAnchors, anchor_spec_from_dict

Size = Tuple[int, int]
CLASSIFICATION_LOSSES = ("softmax", "sigmoid_focal")


@dataclasses.dataclass(frozen=True)
class SSDHead(JsonConfig):
    """SSD anchors, box coder, matching, loss and decoding settings.

    Attributes (grouped):
        kind: ``"ssd"`` (the family discriminator).

        anchor_generator: one of :class:`PriorBoxAnchors`, :class:`GridAnchors`,
            :class:`MultiscaleAnchors` (the array comes from ``config.anchors()``).
        feature_map_sizes: ``(h, w)`` of each source layer; ``None`` derives
            ``ceil(H / stride)`` from ``feature_strides``.
        feature_strides: stride in pixels of each source layer.

        variances: box-coder variances ``(cx, cy, w, h)``; offsets are
            ``((g_c - a_c) / a_wh) / v`` and ``log(g_wh / a_wh) / v``
            (TF OD API scale factors 10, 10, 5, 5 are the same thing).
        match_iou_threshold: anchors with IoU >= this to some box are positive
            (after every box has taken its best anchor).
        negative_iou_threshold: anchors below this are negatives; anchors in
            between are ignored (label -1).  ``None``: equal to the match
            threshold (no ignore zone), as in SSD.
        ignore_iou_threshold: a ground-truth box labelled ``-1`` (an object
            to ignore, e.g. one cut by a training crop) is not matched, and
            the background anchors with IoU ``>=`` this with it are ignored
            (label -1); 0 disables.

        classification_loss: ``"softmax"`` (cross-entropy with hard negative
            mining, SSD) or ``"sigmoid_focal"`` (RetinaNet / TF OD API).
        neg_pos_ratio: hard negatives per positive (softmax loss).
        localization_weight: weight of the smooth-L1 term (SSD's alpha).
        focal_alpha, focal_gamma: focal-loss parameters.

        score_threshold, nms_iou_threshold, max_detections,
        max_detections_per_class: decoding defaults (Caffe: 0.01, 0.45, 200,
            400 candidates per class).

    The defaults are SSD300 VOC's (Caffe ``ssd_pascal.py``).
    """

    kind: str = "ssd"
    anchor_generator: AnchorSpec = dataclasses.field(default_factory=lambda: PriorBoxAnchors(
        scales=(0.1, 0.2, 0.37, 0.54, 0.71, 0.88, 1.05),
        aspect_ratios=((2.0,), (2.0, 3.0), (2.0, 3.0), (2.0, 3.0), (2.0,), (2.0,)),
        steps=(8, 16, 32, 64, 100, 300)))
    feature_map_sizes: Optional[Tuple[Size, ...]] = ((38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1))
    feature_strides: Tuple[float, ...] = (8, 16, 32, 64, 100, 300)

    variances: Tuple[float, float, float, float] = (0.1, 0.1, 0.2, 0.2)
    match_iou_threshold: float = 0.5
    negative_iou_threshold: Optional[float] = None
    ignore_iou_threshold: float = 0.3

    classification_loss: str = "softmax"
    neg_pos_ratio: float = 3.0
    localization_weight: float = 1.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0

    score_threshold: float = 0.01
    nms_iou_threshold: float = 0.45
    max_detections: int = 200
    max_detections_per_class: int = 400

    def __post_init__(self):
        set_ = object.__setattr__
        if self.kind != "ssd":
            raise ValueError(f"SSDHead: kind must be 'ssd', got {self.kind!r}")
        if isinstance(self.anchor_generator, dict):
            set_(self, "anchor_generator", anchor_spec_from_dict(self.anchor_generator))
        for name in ("feature_map_sizes", "feature_strides", "variances"):
            set_(self, name, as_tuple(getattr(self, name)))
        if self.classification_loss not in CLASSIFICATION_LOSSES:
            raise ValueError(f"classification_loss must be 'softmax' or 'sigmoid_focal', "
                             f"got {self.classification_loss!r}")
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

    def boxes_per_cell(self) -> Tuple[int, ...]:
        """Anchors per cell of each source layer."""
        return self.anchor_generator.boxes_per_cell()

    def num_class_outputs(self, num_classes: int) -> int:
        """Width of the class head: ``K + 1`` (softmax, background first) or ``K`` (sigmoid)."""
        return num_classes + 1 if self.classification_loss == "softmax" else num_classes

    @classmethod
    def from_dict(cls, d: dict) -> "SSDHead":
        return cls(**checked_fields(cls, d))


#: the flat ``DetectorConfig`` fields of the pre-seam format: exactly the head's fields.
LEGACY_FIELDS = tuple(f.name for f in dataclasses.fields(SSDHead) if f.name != "kind")


def split_legacy_fields(d: dict) -> dict:
    """A pre-seam config dict (flat SSD fields, no ``head``) -> the same dict with ``head``.

    Keys that are SSD head fields move into ``head = {"kind": "ssd", ...}``;
    the rest stay.  A dict with a ``head`` already is returned unchanged (and
    flat SSD keys beside it are left for the caller to reject as unknown).
    """
    if "head" in d:
        return dict(d)
    out = {k: v for k, v in d.items() if k not in LEGACY_FIELDS}
    out["head"] = {"kind": "ssd", **{k: v for k, v in d.items() if k in LEGACY_FIELDS}}
    return out
