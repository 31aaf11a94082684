"""CenterNet graphs (backbone -> stride-4 FPN map -> three heads) and the Keras model class.

Architectures (``config.architecture``):

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
from keras import ops

from ssd_keras.families.centernet.config import CenterNetConfig
from ssd_keras.families.centernet.family import CENTERNET
from ssd_keras.layers import InputScaling
from ssd_keras.models.base import regularizer
from ssd_keras.models.necks import top_down_fpn
from ssd_keras.models.options import backbone_options

#: ``centernet_convnet`` backbone options and defaults.
CONVNET_OPTIONS = {"widths": (16, 32, 64, 96), "blocks": (1, 2, 2, 2),
                   "fpn_channels": (64, 64, 96)}
RESNET_OPTIONS = {"imagenet_weights": False}


_options = backbone_options   # one strict-options check for every builder


def resnet101_fpn_features(x, config):
    """``(B, H, W, 3)`` preprocessed -> ``(B, H/4, W/4, 64)`` (TF OD API resnet_v1_101_fpn)."""
    from ssd_keras.models.resnet import resnet_v1_features

    opts = _options(config, RESNET_OPTIONS)
    weights = opts["imagenet_weights"]
    weights = "imagenet" if weights is True else (weights or None)
    c2, c3, c4, c5 = resnet_v1_features(x, depth=101, weights=weights)
    (p2,) = top_down_fpn([c2, c3, c4, c5], channels=(64, 64, 128, 256), outputs=(0,),
                         kernel_regularizer=regularizer(config), name="fpn")
    return p2


def convnet_features(x, config):
    """A plain conv net to stride ``2 ** len(widths)`` + top-down FPN -> ``(B, H/4, W/4, c)``."""
    from ssd_keras.models.digits import convnet_stages  # the digits SSD's stages

    opts = _options(config, CONVNET_OPTIONS)
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
    return p2


_FEATURES = {"resnet101_fpn": resnet101_fpn_features, "centernet_convnet": convnet_features}


def build_centernet_graph(config):
    """``(images, outputs)``: Keras input ``(B, H, W, 3)`` RGB ``[0, 255]`` and the raw outputs."""
    h, w = config.image_size
    images = keras.Input((h, w, 3), name="images")
    x = InputScaling(config.input_scaling, config.pixel_mean, config.channel_order,
                     name="input_scaling")(images)
    feature = _FEATURES[config.architecture](x, config)
    s = config.head.output_stride
    if feature.shape[1] != h // s or feature.shape[2] != w // s:
        raise ValueError(f"{config.name}: the {config.architecture} graph gives a "
                         f"{feature.shape[1]}x{feature.shape[2]} map, not {h // s}x{w // s} "
                         f"(output stride {s})")
    return images, CENTERNET.build_head([feature], config)


def _replicas_in_sync():
    from ssd_keras.models.base import _replicas_in_sync as replicas
    return replicas()


@keras.saving.register_keras_serializable(package="ssd_keras")
class CenterNetModel(keras.Model):
    """A CenterNet detector built from a :class:`CenterNetConfig` (rebuilt from it on load).

    Outputs ``{"object_center", "box_scale", "box_offset"}``; ``compute_loss``
    calls the family loss and tracks ``object_center_loss``, ``box_scale_loss``,
    ``box_offset_loss`` and ``regularization_loss``.
    """

    def __init__(self, detector_config, **kwargs):
        if isinstance(detector_config, dict):
            detector_config = CenterNetConfig.from_dict(detector_config)
        inputs, outputs = build_centernet_graph(detector_config)
        kwargs.setdefault("name", detector_config.name)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.detector_config = detector_config
        self.family = CENTERNET
        self.loss_trackers = [keras.metrics.Mean(name=f"{n}_loss")
                              for n in (*CENTERNET.loss_names, "regularization")]

    def get_config(self):
        return {"detector_config": self.detector_config.to_dict(), "name": self.name,
                "trainable": self.trainable}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return cls(**config)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """This replica's share of ``object_center + box_scale + box_offset + reg / R``.

        The object count is all-reduced over replicas (as ``SSDModel``), so the
        replicas' shares add up to the single-device loss of the global batch.
        """
        replicas = _replicas_in_sync()
        normalizer = None
        if replicas > 1:
            import tensorflow as tf
            normalizer = tf.distribute.get_replica_context().all_reduce(
                tf.distribute.ReduceOp.SUM, self.family.loss_normalizer(y))
        parts = self.family.loss(y, y_pred, self.detector_config, normalizer)
        reg = ops.zeros((), "float32")
        for loss in self.losses:
            reg = reg + ops.cast(ops.sum(loss), "float32")
        total = reg / replicas
        for name, tracker in zip(self.family.loss_names, self.loss_trackers):
            total = total + parts[name]
            tracker.update_state(parts[name] * replicas)
        self.loss_trackers[-1].update_state(reg)
        return total

    def detect(self, images, batch_size=8, **overrides):
        """Run and decode: per image ``{"boxes": (k, 4) normalised corners, "scores", "labels"}``."""
        import numpy as np

        images = np.asarray(images, np.float32)
        out = []
        for start in range(0, len(images), batch_size):
            pred = self(images[start:start + batch_size], training=False)
            det = {k: np.asarray(v) for k, v in
                   self.family.decode(pred, self.detector_config, **overrides).items()}
            for i in range(len(det["scores"])):
                n = int(det["num_detections"][i])
                out.append({"boxes": det["boxes"][i, :n], "scores": det["scores"][i, :n],
                            "labels": det["classes"][i, :n]})
        return out


def build_centernet_model(config) -> CenterNetModel:
    """A :class:`CenterNetModel` for ``config`` (a :class:`CenterNetConfig` or a preset name)."""
    if isinstance(config, str):
        from ssd_keras.families.centernet.config import centernet_preset
        config = centernet_preset(config)
    return CenterNetModel(config)


def build_centernet_inference_model(model: CenterNetModel, **overrides) -> keras.Model:
    """``images -> detections`` with boxes in input pixels (:class:`CenterNetDecoder`)."""
    layer = model.family.decoder_layer(model.detector_config, **overrides)
    return keras.Model(model.input, layer(model.output), name=f"{model.name}_inference")
