"""Named detector configurations, as data.

``presets.get(name, **overrides)`` returns a :class:`~ssd_keras.config.DetectorConfig`;
``presets.names()`` lists them.  Overrides replace fields (head fields too), e.g.
``presets.get("ssd300_voc", num_classes=3)`` or ``presets.get("centernet_digits",
max_detections=50)``.  SSD presets hold an :class:`~ssd_keras.families.ssd.head.SSDHead`,
CenterNet presets a :class:`~ssd_keras.families.centernet.config.CenterNetHead`.

VGG16 presets follow the original Caffe models (Liu et al. 2016,
``ssd_pascal.py`` / ``ssd_coco.py``); MobileNet presets follow the TF Object
Detection API configs ``ssd_mobilenet_v2_320x320_coco17`` and
``ssd_mobilenet_v2_fpnlite_{320x320,640x640}_coco17`` (differences are noted
on each entry).
"""
from __future__ import annotations

from ssd_keras.config import DetectorConfig
from ssd_keras.data.digits import DIGIT_CLASSES
from ssd_keras.families.centernet.config import CenterNetHead
from ssd_keras.families.ssd.anchors import GridAnchors, MultiscaleAnchors, PriorBoxAnchors
from ssd_keras.families.ssd.head import SSDHead
from ssd_keras.data.voc import VOC_CLASSES

_VGG_RATIOS_300 = ((2.0,), (2.0, 3.0), (2.0, 3.0), (2.0, 3.0), (2.0,), (2.0,))
_VGG_RATIOS_512 = ((2.0,), (2.0, 3.0), (2.0, 3.0), (2.0, 3.0), (2.0, 3.0), (2.0,), (2.0,))
_FMAPS_300 = ((38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1))
_FMAPS_512 = ((64, 64), (32, 32), (16, 16), (8, 8), (4, 4), (2, 2), (1, 1))
_STEPS_300 = (8, 16, 32, 64, 100, 300)
_STEPS_512 = (8, 16, 32, 64, 128, 256, 512)


def _ssd_vgg(name, size, scales, num_classes, class_names):
    is300 = size == 300
    steps = _STEPS_300 if is300 else _STEPS_512
    return DetectorConfig(
        name=name, architecture="ssd_vgg16", image_size=(size, size),
        num_classes=num_classes, class_names=class_names,
        input_scaling="caffe", pixel_mean=(123.0, 117.0, 104.0), channel_order="bgr",
        weight_decay=5e-4,
        head=SSDHead(
            anchor_generator=PriorBoxAnchors(
                scales=scales, aspect_ratios=_VGG_RATIOS_300 if is300 else _VGG_RATIOS_512,
                steps=steps, offset=0.5, clip=False),
            feature_map_sizes=_FMAPS_300 if is300 else _FMAPS_512,
            feature_strides=steps,
            variances=(0.1, 0.1, 0.2, 0.2),
            classification_loss="softmax", neg_pos_ratio=3.0, localization_weight=1.0,
            score_threshold=0.01, nms_iou_threshold=0.45, max_detections=200,
            max_detections_per_class=400))


def ssd300_voc():
    """SSD300, Pascal VOC (20 classes): min sizes 30, 60, 111, 162, 213, 264 px; 8732 boxes."""
    return _ssd_vgg("ssd300_voc", 300, (0.1, 0.2, 0.37, 0.54, 0.71, 0.88, 1.05), 20, VOC_CLASSES)


def ssd512_voc():
    """SSD512, Pascal VOC: min sizes 35.84, 76.8, 153.6, 230.4, 307.2, 384, 460.8 px; 24564 boxes."""
    return _ssd_vgg("ssd512_voc", 512, (0.07, 0.15, 0.3, 0.45, 0.6, 0.75, 0.9, 1.05), 20, VOC_CLASSES)


def ssd300_coco():
    """SSD300, COCO (80 contiguous classes): the smaller COCO scales 0.07, 0.15, 0.33, ..."""
    return _ssd_vgg("ssd300_coco", 300, (0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05), 80, None)


def ssd512_coco():
    """SSD512, COCO: scales 0.04, 0.1, 0.26, 0.42, 0.58, 0.74, 0.9, 1.06."""
    return _ssd_vgg("ssd512_coco", 512, (0.04, 0.1, 0.26, 0.42, 0.58, 0.74, 0.9, 1.06), 80, None)


def ssd_mobilenet_v2_320():
    """SSD MobileNet v2 as ``ssd_mobilenet_v2_320x320_coco17`` of the TF OD API.

    Six source layers (block 13 expansion at stride 16 -- 20x20 at 320 -- the
    last 1280-channel layer, four extra layers: 20, 10, 5, 3, 2, 1), grid anchors
    0.2..0.95 with ratios 1, 2, 1/2, 3, 1/3 and a reduced lowest layer, scales
    10/10/5/5 (= variances 0.1/0.1/0.2/0.2), argmax matching at 0.5, sigmoid
    focal loss (alpha 0.75, gamma 2), smooth L1, NMS 0.6 / 100 detections.
    Note: the TF OD API's "320x320" model actually resizes to 300x300; this
    preset uses 320x320 as its name says.
    """
    return DetectorConfig(
        name="ssd_mobilenet_v2_320", architecture="ssd_mobilenet_v2", image_size=(320, 320),
        num_classes=80,
        input_scaling="tf", pixel_mean=(127.5, 127.5, 127.5), channel_order="rgb",
        weight_decay=4e-5,
        head=SSDHead(
            anchor_generator=GridAnchors(num_layers=6, min_scale=0.2, max_scale=0.95,
                                         aspect_ratios=(1.0, 2.0, 0.5, 3.0, 1.0 / 3.0),
                                         reduce_boxes_in_lowest_layer=True),
            feature_map_sizes=None, feature_strides=(16, 32, 64, 128, 256, 512),
            variances=(0.1, 0.1, 0.2, 0.2), match_iou_threshold=0.5,
            classification_loss="sigmoid_focal", focal_alpha=0.75, focal_gamma=2.0,
            localization_weight=1.0,
            score_threshold=1e-8, nms_iou_threshold=0.6, max_detections=100,
            max_detections_per_class=100),
        backbone={"depth_multiplier": 1.0, "min_depth": 16,
                  "extra_layer_depths": [512, 256, 256, 128],
                  "box_kernel_size": 1, "class_prediction_bias_init": -4.6})


def _fpnlite(name, size):
    return DetectorConfig(
        name=name, architecture="ssd_mobilenet_v2_fpnlite", image_size=(size, size),
        num_classes=80,
        input_scaling="tf", pixel_mean=(127.5, 127.5, 127.5), channel_order="rgb",
        weight_decay=4e-5,
        head=SSDHead(
            anchor_generator=MultiscaleAnchors(min_level=3, max_level=7, anchor_scale=4.0,
                                               scales_per_octave=2, aspect_ratios=(1.0, 2.0, 0.5)),
            feature_map_sizes=None, feature_strides=(8, 16, 32, 64, 128),
            variances=(0.1, 0.1, 0.2, 0.2), match_iou_threshold=0.5,
            classification_loss="sigmoid_focal", focal_alpha=0.25, focal_gamma=2.0,
            localization_weight=1.0,
            score_threshold=1e-8, nms_iou_threshold=0.6, max_detections=100,
            max_detections_per_class=100),
        backbone={"depth_multiplier": 1.0, "min_depth": 16, "fpn_depth": 128,
                  "fpn_min_level": 3, "fpn_max_level": 7,
                  "box_predictor_depth": 128, "num_layers_before_predictor": 4,
                  "class_prediction_bias_init": -4.6})


def ssd_mobilenet_v2_fpnlite_320():
    """SSD MobileNet v2 FPNLite 320 (``ssd_mobilenet_v2_fpnlite_320x320_coco17``).

    FPN on levels 3-7 with depthwise-separable convolutions of depth 128,
    anchors at each level with anchor scale 4, 2 scales per octave, ratios 1, 2,
    1/2, a weight-shared box predictor of 4 depthwise layers, focal loss alpha
    0.25, gamma 2.
    """
    return _fpnlite("ssd_mobilenet_v2_fpnlite_320", 320)


def ssd_mobilenet_v2_fpnlite_640():
    """SSD MobileNet v2 FPNLite 640 (``ssd_mobilenet_v2_fpnlite_640x640_coco17``)."""
    return _fpnlite("ssd_mobilenet_v2_fpnlite_640", 640)


def digits_convnet_preset():
    """Small scratch SSD for the digits: strides 4 and 8, anchors fitted to digit boxes."""
    return DetectorConfig(
        name="digits_convnet", architecture="digits_convnet", image_size=(512, 512),
        num_classes=10, class_names=DIGIT_CLASSES,
        input_scaling="tf", pixel_mean=(127.5, 127.5, 127.5), channel_order="rgb",
        weight_decay=4e-5,
        head=SSDHead(
            anchor_generator=MultiscaleAnchors(min_level=2, max_level=3, anchor_scale=2.0,
                                               scales_per_octave=2, aspect_ratios=(0.3, 0.55, 0.8)),
            feature_map_sizes=None, feature_strides=(4, 8),
            variances=(0.1, 0.1, 0.2, 0.2), match_iou_threshold=0.5, negative_iou_threshold=0.4,
            classification_loss="sigmoid_focal", focal_alpha=0.25, focal_gamma=2.0,
            localization_weight=1.0,
            score_threshold=0.01, nms_iou_threshold=0.5, max_detections=100,
            max_detections_per_class=100),
        backbone={"widths": [16, 32, 64, 96], "blocks": [1, 2, 2, 2], "fpn_depth": 64,
                  "head_depth": 64, "head_layers": 1, "class_prediction_bias_init": -4.6})


def ssd_mobilenet_v2_320_digits():
    """The reference experiment's detector: ``ssd_mobilenet_v2_320`` with the 10 digit classes.

    Kept unchanged otherwise (grid anchors 0.2-0.95 of the image, so the
    smallest anchor is ~64 px at 320 for 10-28 px digits at 512 -> 6-17 px at
    320): the honest baseline for the digits, not a tuned recipe.
    """
    return ssd_mobilenet_v2_320().replace(
        name="ssd_mobilenet_v2_320_digits", num_classes=10, class_names=DIGIT_CLASSES)


def centernet_resnet101_fpn_512():
    """CenterNet ResNet101 v1 FPN 512x512: the research log's run 8 (TF OD API, COCO 90 ids).

    ResNet101 v1 + the TF OD API CenterNet FPN to stride 4, Keras' ResNet
    ``"caffe"`` preprocessing (BGR, ImageNet mean), heads of 256 channels,
    penalty-reduced focal loss + L1 size (0.1) and offset (1.0), top 100 peaks.
    ``backbone={"imagenet_weights": True}`` starts from ImageNet where
    ``keras.applications`` can download.
    """
    return DetectorConfig(
        name="centernet_resnet101_fpn_512", architecture="resnet101_fpn", image_size=(512, 512),
        num_classes=90, input_scaling="caffe", pixel_mean=(123.68, 116.779, 103.939),
        channel_order="bgr", weight_decay=0.0, head=CenterNetHead(head_channels=256))


def centernet_digits():
    """A small CPU CenterNet for the synthetic digits (10-28 px objects at 512x512)."""
    return DetectorConfig(
        name="centernet_digits", architecture="centernet_convnet", image_size=(512, 512),
        num_classes=10, class_names=DIGIT_CLASSES, input_scaling="tf",
        pixel_mean=(127.5, 127.5, 127.5), channel_order="rgb", weight_decay=0.0,
        backbone=dict(widths=(16, 32, 64, 96), blocks=(1, 2, 2, 2), fpn_channels=(64, 64, 96)),
        head=CenterNetHead(head_channels=64, max_objects=64))


_PRESETS = {
    "ssd300_voc": ssd300_voc,
    "ssd512_voc": ssd512_voc,
    "ssd300_coco": ssd300_coco,
    "ssd512_coco": ssd512_coco,
    "ssd_mobilenet_v2_320": ssd_mobilenet_v2_320,
    "ssd_mobilenet_v2_fpnlite_320": ssd_mobilenet_v2_fpnlite_320,
    "ssd_mobilenet_v2_fpnlite_640": ssd_mobilenet_v2_fpnlite_640,
    "digits_convnet": digits_convnet_preset,
    "ssd_mobilenet_v2_320_digits": ssd_mobilenet_v2_320_digits,
    "centernet_resnet101_fpn_512": centernet_resnet101_fpn_512,
    "centernet_digits": centernet_digits,
}


def register(name: str, factory) -> None:
    """Add a preset (a zero-argument function returning a DetectorConfig)."""
    _PRESETS[name] = factory


def names():
    """Sorted preset names."""
    return sorted(_PRESETS)


def get(name: str, **overrides) -> DetectorConfig:
    """The preset ``name`` with optional field overrides.

    Raises:
        KeyError: naming the unknown preset and listing the known ones.
    """
    if name not in _PRESETS:
        raise KeyError(f"unknown preset {name!r}; known presets: {', '.join(names())}")
    config = _PRESETS[name]()
    return config.replace(**overrides) if overrides else config
