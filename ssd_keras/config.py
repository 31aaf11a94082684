"""Detector configuration: one dataclass that is the single source of truth.

A :class:`DetectorConfig` describes everything that must agree between the
model, the target encoder in the input pipeline, the loss and the decoder.
What every detector has (name, architecture, image size, classes, backbone
options, preprocessing, weight decay) is a field; what a detector *family*
owns (SSD: anchors, box coder, matching, loss, NMS defaults; CenterNet:
output stride, heatmap loss, peak decoding) is ``config.head``, that
family's head config, discriminated by its ``kind`` (``"ssd"``,
``"centernet"``).  Presets (``ssd_keras.presets``) are plain data built from it.

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
from typing import Any, Optional, Tuple

import numpy as np

from ssd_keras.config_base import JsonConfig, as_tuple  # noqa: F401  (JsonConfig: re-exported)
from ssd_keras.families.ssd.anchors import (  # noqa: F401  (the specs: re-exported)
    ANCHOR_FAMILIES, AnchorSpec, GridAnchors, MultiscaleAnchors, PriorBoxAnchors,
    anchor_spec_from_dict)
from ssd_keras.families.ssd.head import LEGACY_FIELDS, SSDHead, split_legacy_fields

Size = Tuple[int, int]


# --------------------------------------------------------------------------
# The detector config
# --------------------------------------------------------------------------
def _head_from(value):
    """A head config from itself or its dict (``kind`` picks the family's head class)."""
    if not isinstance(value, dict):
        return value
    from ssd_keras.families.base import get_family
    if "kind" not in value:
        raise ValueError(f"head config without 'kind': {sorted(value)}")
    return get_family(value["kind"]).head_from_dict(dict(value))


@dataclasses.dataclass(frozen=True)
class DetectorConfig(JsonConfig):
    """What the model, the target encoder, the loss and the decoder must agree on.

    The common fields are here; what differs between detector families
    (anchors and NMS for SSD, heatmaps for CenterNet) is the ``head``, a
    family-specific frozen dataclass whose ``kind`` names the family
    (:func:`ssd_keras.families.get_family`); :attr:`family` is that family.

    Attributes:
        name: preset name or run name (also the Keras model name).
        architecture: model builder key (``"ssd_vgg16"``, ``"ssd_mobilenet_v2"``,
            ``"ssd_mobilenet_v2_fpnlite"``, ``"digits_convnet"``,
            ``"resnet101_fpn"``, ``"centernet_convnet"``; see
            :func:`ssd_keras.models.base.register_architecture`).
        image_size: model input ``(height, width)``.
        num_classes: number of object classes, *without* background.
        class_names: optional names of labels ``1..num_classes``.
        backbone: builder options (see each builder's docstring).
        input_scaling: ``"caffe"`` (subtract ``pixel_mean``, reorder to
            ``channel_order``) or ``"tf"`` (scale to ``[-1, 1]``). The model does
            this itself: its input is RGB float in ``[0, 255]``.
        pixel_mean: RGB mean in ``[0, 255]`` (also the expand canvas colour).
        channel_order: ``"bgr"`` for Caffe-trained VGG weights, else ``"rgb"``.
        weight_decay: Caffe-convention weight decay (see module docstring).
        head: the family's head config: :class:`~ssd_keras.families.ssd.head.SSDHead`
            (default: SSD300 VOC's) or
            :class:`~ssd_keras.families.centernet.config.CenterNetHead`.

    Reading head fields: ``config.head.anchor_generator`` always works; the
    SSD head's fields are also readable as ``config.anchor_generator``,
    ``config.max_detections``, ... (read-only; what every config had before
    the seam), and ``config.anchors()``, ``num_anchors()``,
    ``get_feature_map_sizes()``, ``boxes_per_cell()``, ``num_outputs`` are
    SSD's; on a config whose head lacks the field they raise
    ``AttributeError`` naming the family.  :meth:`replace` routes head
    fields to the head (``config.replace(max_detections=50)``).
    """

    name: str = "ssd300_voc"
    architecture: str = "ssd_vgg16"
    image_size: Size = (300, 300)
    num_classes: int = 20
    class_names: Optional[Tuple[str, ...]] = None
    backbone: dict = dataclasses.field(default_factory=dict)
    input_scaling: str = "caffe"
    pixel_mean: Tuple[float, float, float] = (123.0, 117.0, 104.0)
    channel_order: str = "bgr"
    weight_decay: float = 5e-4
    head: Any = dataclasses.field(default_factory=SSDHead)

    # ----------------------------------------------------------------- checks
    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "head", _head_from(self.head))
        for name in ("image_size", "pixel_mean", "class_names"):
            set_(self, name, as_tuple(getattr(self, name)))
        set_(self, "backbone", {k: as_tuple(v) for k, v in (self.backbone or {}).items()})
        if not dataclasses.is_dataclass(self.head) or not getattr(self.head, "kind", ""):
            raise ValueError(f"{self.name}: head must be a family head config with a 'kind', "
                             f"got {type(self.head).__name__}")
        h, w = self.image_size
        if h <= 0 or w <= 0:
            raise ValueError(f"image_size must be positive (height, width), got {self.image_size}")
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1 (background excluded), got {self.num_classes}")
        if self.class_names is not None and len(self.class_names) != self.num_classes:
            raise ValueError(f"{len(self.class_names)} class_names for num_classes={self.num_classes}")
        if self.input_scaling not in ("caffe", "tf"):
            raise ValueError(f"input_scaling must be 'caffe' or 'tf', got {self.input_scaling!r}")
        if self.channel_order not in ("rgb", "bgr"):
            raise ValueError(f"channel_order must be 'rgb' or 'bgr', got {self.channel_order!r}")
        self.family.check_config(self)

    # ------------------------------------------------------------ round trip
    @classmethod
    def from_dict(cls, d: dict) -> "DetectorConfig":
        """From :meth:`to_dict` output -- or a pre-seam dict with the SSD fields flat.

        A dict without ``head`` is the old format (every ``config.json`` and
        ``.keras`` written before the family seam): its SSD fields become
        ``head=SSDHead(...)`` and the config loads unchanged.
        """
        return super().from_dict(split_legacy_fields(d))

    def replace(self, **changes) -> "DetectorConfig":
        """A copy with fields changed; head fields (``max_detections=...``) go to the head.

        ``head=`` replaces the whole head (a head config or its dict).
        """
        own = {f.name for f in dataclasses.fields(self)}
        head_changes = {k: v for k, v in changes.items() if k not in own}
        if head_changes:
            head = _head_from(changes.get("head", self.head))
            head_fields = {f.name for f in dataclasses.fields(head)} - {"kind"}
            unknown = sorted(set(head_changes) - head_fields)
            if unknown:
                raise ValueError(f"{self.name}: unknown field(s) {unknown} for a {head.kind} "
                                 f"detector config; known: {sorted(own | head_fields)}")
            changes = {k: v for k, v in changes.items() if k in own}
            changes["head"] = dataclasses.replace(head, **head_changes)
        return dataclasses.replace(self, **changes)

    # ---------------------------------------------------------------- family
    @property
    def family(self):
        """The :class:`~ssd_keras.families.base.DetectorFamily` of ``head.kind``."""
        from ssd_keras.families.base import get_family
        return get_family(self.head.kind)

    def _ssd(self, what: str):
        if self.head.kind != "ssd":
            raise AttributeError(f"{self.name}: {what} is an SSD head's; this is a "
                                 f"{self.head.kind!r} detector (see config.head)")
        return self

    # ------------------------------------------------------- SSD derived data
    @property
    def num_outputs(self) -> int:
        """Width of the SSD class head: ``num_classes + 1`` (softmax) or ``num_classes`` (sigmoid)."""
        return self._ssd("num_outputs").head.num_class_outputs(self.num_classes)

    def boxes_per_cell(self) -> Tuple[int, ...]:
        """SSD anchors per cell of each source layer."""
        return self._ssd("boxes_per_cell()").head.boxes_per_cell()

    def get_feature_map_sizes(self, image_size: Optional[Size] = None) -> Tuple[Size, ...]:
        """``(h, w)`` of each SSD source layer for ``image_size`` (default: the config's)."""
        from ssd_keras.families.ssd.anchors import feature_map_sizes
        return feature_map_sizes(self._ssd("get_feature_map_sizes()"), image_size)

    def num_anchors(self, image_size: Optional[Size] = None) -> int:
        """``N``: the SSD anchors (= the model's predictions) at ``image_size``."""
        from ssd_keras.families.ssd.anchors import num_anchors
        return num_anchors(self._ssd("num_anchors()"), image_size)

    def anchors(self, image_size: Optional[Size] = None) -> np.ndarray:
        """SSD default boxes: float32 ``(N, 4)`` normalised ``(cx, cy, w, h)``.

        In exactly the order of the model's predictions: source layer by source
        layer, cells row-major, then the boxes of a cell (see the anchor family).
        ``image_size`` (default: the config's) lets a fully convolutional model
        with pixel-sized anchors (multiscale) run on another input size.
        """
        from ssd_keras.families.ssd.anchors import generate_anchors
        return generate_anchors(self._ssd("anchors()"), image_size)


def _head_field(name: str):
    def read(self):
        try:
            return getattr(self.head, name)
        except AttributeError:
            raise AttributeError(f"{self.name}: {name} is an SSD head field; this is a "
                                 f"{self.head.kind!r} detector (see config.head)") from None
    read.__name__ = name
    read.__doc__ = f"``config.head.{name}`` (read-only; see :class:`SSDHead`)."
    return property(read)


# the pre-seam flat reads (config.anchor_generator, config.max_detections, ...) stay valid
for _name in LEGACY_FIELDS:
    setattr(DetectorConfig, _name, _head_field(_name))
del _name
