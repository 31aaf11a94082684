"""``CenterNetHead``: the CenterNet family's part of a detector config (``config.head``).

A :class:`~ssd_keras.config.DetectorConfig` with ``head=CenterNetHead(...)``
is a CenterNet detector; its common fields (name, architecture
``"resnet101_fpn"`` or ``"centernet_convnet"``, input size, classes,
backbone, preprocessing, weight decay) are shared with every family.  Every
CenterNet function reads only ``config.name``, ``config.image_size``,
``config.num_classes`` and ``config.head`` (and the builders the backbone /
preprocessing / ``weight_decay`` fields).  The presets are in
:mod:`ssd_keras.presets` (``centernet_resnet101_fpn_512``, ``centernet_digits``).
"""
from __future__ import annotations

import dataclasses

from ssd_keras.config_base import checked_fields


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
        return cls(**checked_fields(cls, d))
