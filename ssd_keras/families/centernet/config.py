"""CenterNet's head config, a stand-alone detector config and the CenterNet presets (as data).

:class:`CenterNetHead` is the family-specific head config (``kind="centernet"``)
that ``DetectorConfig.head`` will hold once the package is restructured.
Until then :class:`CenterNetConfig` carries the few common fields the CenterNet
pieces read (name, input size, classes, backbone, preprocessing, weight decay)
plus ``head``, so that the model, the ``tf.data`` encoder, the loss and the
decoder can be built and tested on their own.  Every CenterNet function reads
only ``config.name``, ``config.image_size``, ``config.num_classes``,
``config.head`` (and the model builder the backbone / preprocessing /
``weight_decay`` fields), so a future ``DetectorConfig`` with a ``head`` drops
in unchanged.
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Tuple


def _tuple(value):
    return tuple(_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


def _checked_fields(cls, d: dict) -> dict:
    """``d`` if every key is a field of dataclass ``cls``; else one line naming the unknown keys."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown key(s) {unknown}; known: {sorted(known)}")
    return d


@dataclasses.dataclass(frozen=True)
class CenterNetHead:
    """CenterNet ("Objects as Points") head, targets, loss and decoding settings.

    Attributes:
        kind: ``"centernet"`` (the family discriminator).
        output_stride: input pixels per output cell (4: the heatmap of a
            512x512 input is 128x128).
        head_channels: channels of the 3x3 conv (+ ReLU) of each head before
            its 1x1 predictor (TF OD API ``make_prediction_net``: 256).
        heatmap_prior_bias: initial bias of the class-heatmap logits
            (-2.19 = logit of 0.1, the paper's and TF OD API's value).
        size_loss_weight: weight of the L1 ``box_scale`` loss (0.1).
        offset_loss_weight: weight of the L1 ``box_offset`` loss (1.0).
        focal_alpha, focal_beta: the penalty-reduced focal loss exponents
            (alpha = 2 on the prediction, beta = 4 on ``1 - heatmap``).
        min_overlap: the IoU for the Gaussian radius (0.7).
        max_objects: size/offset target slots per image (objects beyond it
            still enter the heatmap but get no size/offset target).
        max_detections: top-k peaks kept over all classes (100).
        peak_pool: max-pool window of the peak extraction (3).
        score_threshold: detections below this score are padding.
    """

    kind: str = "centernet"
    output_stride: int = 4
    head_channels: int = 256
    heatmap_prior_bias: float = -2.19
    size_loss_weight: float = 0.1
    offset_loss_weight: float = 1.0
    focal_alpha: float = 2.0
    focal_beta: float = 4.0
    min_overlap: float = 0.7
    max_objects: int = 100
    max_detections: int = 100
    peak_pool: int = 3
    score_threshold: float = 0.01

    def __post_init__(self):
        if self.kind != "centernet":
            raise ValueError(f"CenterNetHead: kind must be 'centernet', got {self.kind!r}")
        for name in ("output_stride", "head_channels", "max_objects", "max_detections", "peak_pool"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"CenterNetHead: {name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 < self.min_overlap < 1.0:
            raise ValueError(f"CenterNetHead: min_overlap must be in (0, 1), got {self.min_overlap}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "CenterNetHead":
        return cls(**_checked_fields(cls, d))


#: the backbone builders of this family (``CenterNetConfig.architecture``).
ARCHITECTURES = ("resnet101_fpn", "centernet_convnet")


@dataclasses.dataclass(frozen=True)
class CenterNetConfig:
    """The fields of a detector config that CenterNet reads (stand-in for ``DetectorConfig``).

    Attributes:
        name: preset or run name (also the Keras model name).
        architecture: ``"resnet101_fpn"`` (ResNet101 v1 + the TF OD API
            CenterNet FPN to stride 4) or ``"centernet_convnet"`` (a small
            plain conv net + the same kind of FPN, for CPU runs).
        image_size: model input ``(height, width)``; a multiple of 32
            (``resnet101_fpn``) or of ``2 ** len(widths)`` (``centernet_convnet``).
        num_classes: object classes (no background).
        class_names: optional names of labels ``1..num_classes``.
        backbone: builder options (see :mod:`ssd_keras.families.centernet.model`);
            unknown keys are an error.
        input_scaling, pixel_mean, channel_order: the model's own input
            preprocessing (:class:`ssd_keras.layers.InputScaling`); the
            ResNet preset uses Keras' ResNet ``"caffe"`` preprocessing
            (BGR, ImageNet mean), as the TF OD API extractor does.
        weight_decay: Caffe-convention weight decay (``L2(wd / 2)`` per kernel).
        head: :class:`CenterNetHead`.
    """

    name: str = "centernet"
    architecture: str = "centernet_convnet"
    image_size: Tuple[int, int] = (512, 512)
    num_classes: int = 10
    class_names: Optional[Tuple[str, ...]] = None
    backbone: dict = dataclasses.field(default_factory=dict)
    input_scaling: str = "tf"
    pixel_mean: Tuple[float, float, float] = (123.68, 116.779, 103.939)
    channel_order: str = "rgb"
    weight_decay: float = 0.0
    head: CenterNetHead = dataclasses.field(default_factory=CenterNetHead)

    def __post_init__(self):
        set_ = object.__setattr__
        if isinstance(self.head, dict):
            set_(self, "head", CenterNetHead.from_dict(self.head))
        for name in ("image_size", "pixel_mean", "class_names"):
            set_(self, name, _tuple(getattr(self, name)))
        set_(self, "backbone", {k: _tuple(v) for k, v in (self.backbone or {}).items()})
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"{self.name}: unknown CenterNet architecture {self.architecture!r}; "
                             f"known: {list(ARCHITECTURES)}")
        if self.num_classes < 1:
            raise ValueError(f"{self.name}: num_classes must be >= 1, got {self.num_classes}")
        h, w = self.image_size
        s = self.head.output_stride
        if h % s or w % s:
            raise ValueError(f"{self.name}: image_size {self.image_size} is not a multiple of "
                             f"the output stride {s}")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["head"] = self.head.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "CenterNetConfig":
        return cls(**_checked_fields(cls, d))

    def replace(self, **changes) -> "CenterNetConfig":
        return dataclasses.replace(self, **changes)


#: presets as data (the restructure moves them into ``ssd_keras/presets.py``).
PRESETS = {
    # the research log's run 8: TF OD API "CenterNet ResNet101 V1 FPN 512x512"
    "centernet_resnet101_fpn_512": dict(
        name="centernet_resnet101_fpn_512", architecture="resnet101_fpn", image_size=(512, 512),
        num_classes=90, input_scaling="caffe", pixel_mean=(123.68, 116.779, 103.939),
        channel_order="bgr", weight_decay=0.0, head=dict(head_channels=256)),
    # a small CPU CenterNet for the synthetic digits (10-28 px objects)
    "centernet_digits": dict(
        name="centernet_digits", architecture="centernet_convnet", image_size=(512, 512),
        num_classes=10, input_scaling="tf", channel_order="rgb", weight_decay=0.0,
        backbone=dict(widths=(16, 32, 64, 96), blocks=(1, 2, 2, 2),
                      fpn_channels=(64, 64, 96)),
        head=dict(head_channels=64, max_objects=64)),
}


def centernet_preset(preset: str, **overrides) -> CenterNetConfig:
    """The preset ``preset`` as a :class:`CenterNetConfig` (``overrides`` replace fields)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown CenterNet preset {preset!r}; known: {sorted(PRESETS)}")
    return CenterNetConfig.from_dict({**PRESETS[preset], **overrides})
