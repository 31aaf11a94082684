"""CenterNet architectures (backbone -> one stride-4 FPN map) and the CenterNet model name.

Architectures (``config.architecture``, registered with
:func:`~ssd_keras.models.base.register_architecture`; each returns ``[map]``,
a one-element list, and the family's head
(:func:`~ssd_keras.families.centernet.heads.centernet_heads`) predicts from it):

* ``resnet101_fpn`` -- TF OD API ``CenterNetResnetV1FpnFeatureExtractor``
  (``resnet_v1_101_fpn``): ResNet101 v1 taps at strides 4/8/16/32, a 1x1 conv
  to 256 channels on ``conv5_block3_out``, then three times: nearest x2
  upsampling + a 1x1 lateral conv (256, 128, 64 filters) + add + 3x3 conv
  (128, 64, 64) + BatchNorm + ReLU -> a ``(B, H/4, W/4, 64)`` map.
  ``backbone`` options: ``imagenet_weights`` (False / True / a path).
* ``centernet_convnet`` -- a plain 3x3 conv + BN + ReLU net (the digits SSD's
  stages) to stride ``2 ** len(widths)``, the same kind of top-down FPN over
  the stages from stride 4 up, to one stride-4 map.  ``backbone`` options:
  ``widths``, ``blocks`` (per stage, strides 2, 4, 8, ...), ``fpn_channels``
  (per tapped stage, stride 4 first).

Heads (TF OD API ``make_prediction_net``): per output a 3x3 conv
(``head.head_channels``) + ReLU + 1x1 conv: ``object_center`` (K logits,
bias ``head.heatmap_prior_bias``), ``box_scale`` (w, h) and ``box_offset``
(dx, dy), all float32 ``(B, H/4, W/4, .)``.
"""
from __future__ import annotations

import keras

from ssd_keras.models.base import DetectorModel, register_architecture, regularizer
from ssd_keras.models.necks import top_down_fpn
from ssd_keras.models.options import backbone_options, declare_backbone_options

#: ``centernet_convnet`` backbone options and defaults.
CONVNET_OPTIONS = declare_backbone_options(
    "centernet_convnet", {"widths": (16, 32, 64, 96), "blocks": (1, 2, 2, 2),
                          "fpn_channels": (64, 64, 96)})
RESNET_OPTIONS = declare_backbone_options("resnet101_fpn", {"imagenet_weights": False})


@register_architecture("resnet101_fpn")
def resnet101_fpn_features(x, config):
    """``(B, H, W, 3)`` preprocessed -> ``[(B, H/4, W/4, 64)]`` (TF OD API resnet_v1_101_fpn)."""
    from ssd_keras.models.resnet import resnet_v1_features

    opts = backbone_options(config, RESNET_OPTIONS)
    weights = opts["imagenet_weights"]
    weights = "imagenet" if weights is True else (weights or None)
    c2, c3, c4, c5 = resnet_v1_features(x, depth=101, weights=weights)
    (p2,) = top_down_fpn([c2, c3, c4, c5], channels=(64, 64, 128, 256), outputs=(0,),
                         kernel_regularizer=regularizer(config), name="fpn")
    return [p2]   # one stride-4 map for the family's heads


@register_architecture("centernet_convnet")
def convnet_features(x, config):
    """A plain conv net to stride ``2 ** len(widths)`` + top-down FPN -> ``[(B, H/4, W/4, c)]``."""
    from ssd_keras.models.digits import convnet_stages  # the digits SSD's stages

    opts = backbone_options(config, CONVNET_OPTIONS)
    widths, blocks = tuple(opts["widths"]), tuple(opts["blocks"])
    fpn_channels = tuple(opts["fpn_channels"])
    if len(widths) != len(blocks) or len(widths) < 2:
        raise ValueError(f"{config.name}: backbone widths {widths} and blocks {blocks} need "
                         f"one entry per stage (at least 2 stages)")
    if len(fpn_channels) != len(widths) - 1:
        raise ValueError(f"{config.name}: fpn_channels {fpn_channels} needs one entry per stage "
                         f"from stride 4 up ({len(widths) - 1})")
    reg = regularizer(config)
    stages = convnet_stages(x, widths, blocks, reg)
    (p2,) = top_down_fpn([stages[s] for s in range(2, len(widths) + 1)], channels=fpn_channels,
                         outputs=(0,),
                         kernel_regularizer=reg, name="fpn")
    return [p2]   # one stride-4 map for the family's heads


@keras.saving.register_keras_serializable(package="ssd_keras")
class CenterNetModel(DetectorModel):
    """:class:`~ssd_keras.models.base.DetectorModel` under the name CenterNet ``.keras`` files carry.

    Identical behaviour (outputs ``{"object_center", "box_scale",
    "box_offset"}``, metrics ``object_center_loss``, ``box_scale_loss``,
    ``box_offset_loss``, ``regularization_loss``); kept so files saved as
    ``ssd_keras>CenterNetModel`` reload.
    """
