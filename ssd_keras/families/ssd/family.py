"""``SSDFamily``: the SSD detector family at the :mod:`ssd_keras.families.base` seam.

* head config: :class:`~ssd_keras.families.ssd.head.SSDHead` (``kind="ssd"``);
* head: :func:`ssd_keras.models.base.conv_heads` (a 3x3 class and box conv
  per source map) for architectures that return feature maps -- the SSD
  builders bring their own heads and return the raw outputs;
* raw outputs: ``{"classification": (B, N, C) logits, "regression": (B, N, 4)
  offsets}`` for the ``N = config.num_anchors()`` anchors;
* targets: :func:`~ssd_keras.families.ssd.matching.encode_targets` against the
  anchors at the input size, plus the ``-1 = ignore`` convention of the seam:
  a ground-truth box labelled ``-1`` is not matched, and the background
  anchors with IoU ``>= head.ignore_iou_threshold`` with it become ``-1``
  (neither positive nor negative);
* losses ``classification`` and ``localization``
  (:func:`~ssd_keras.families.ssd.losses.detection_loss`);
* decoder: :func:`~ssd_keras.families.ssd.postprocess.decode_for_config`
  (per-class NMS) and the :class:`~ssd_keras.families.ssd.postprocess.DecodeDetections` layer.
"""
from __future__ import annotations

import tensorflow as tf

from ssd_keras.families.base import DetectorFamily, register_family
from ssd_keras.families.ssd.anchors import cached_anchors
from ssd_keras.families.ssd.head import SSDHead


def ssd_target_encoder(config, image_size=None):
    """``encode(boxes (m, 4), labels (m,)) -> {"labels": (N,) int32, "boxes": (N, 4)}``.

    ``boxes``: float32 normalised corners of the input of ``image_size``
    (default ``config.image_size``); ``labels``: int ``1..K``, or ``-1`` for
    a box to ignore (see the module docstring).  Graph ops only (``tf.data``).
    """
    from ssd_keras.families.ssd.matching import encode_targets, ignore_near_boxes

    head = config.head
    anchors = tf.constant(cached_anchors(config, image_size), tf.float32)
    ignore_iou = float(head.ignore_iou_threshold)

    def encode(boxes, labels):
        boxes = tf.reshape(tf.cast(boxes, tf.float32), (-1, 4))
        labels = tf.reshape(tf.cast(labels, tf.int32), (-1,))
        ignored = tf.equal(labels, -1)
        targets = encode_targets(tf.boolean_mask(boxes, ~ignored), tf.boolean_mask(labels, ~ignored),
                                 anchors, head.variances, head.match_iou_threshold,
                                 head.negative_iou_threshold)
        if ignore_iou > 0:
            targets["labels"] = ignore_near_boxes(targets["labels"], anchors,
                                                  tf.boolean_mask(boxes, ignored), ignore_iou)
        return targets

    return encode


#: what the decoder layer takes (the saved inference model keeps exactly these)
_LAYER_KEYS = ("score_threshold", "iou_threshold", "max_detections", "max_detections_per_class")
#: the function also takes the box coder and activation (:func:`decode_for_config`)
_DECODE_KEYS = _LAYER_KEYS + ("activation", "variances", "clip_boxes")


def _check_overrides(overrides, known=_DECODE_KEYS):
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise ValueError(f"SSD decoding: unknown override(s) {unknown}; known: {list(known)}")


class SSDFamily(DetectorFamily):
    """Anchors + matching + (softmax with hard negatives | sigmoid focal) + smooth L1 + NMS."""

    kind = "ssd"
    loss_names = ("classification", "localization")
    output_names = ("classification", "regression")
    decode_options = _LAYER_KEYS

    def head_from_dict(self, d: dict) -> SSDHead:
        return SSDHead.from_dict(d)

    def build_head(self, features, config):
        from ssd_keras.models.base import conv_heads
        return dict(zip(self.output_names, conv_heads(list(features), config)))

    def check_outputs(self, outputs, config):
        """One line naming the mismatch when the graph's box count is not ``num_anchors()``."""
        expected = config.num_anchors()
        got = {k: outputs[k].shape[1] for k in ("classification", "regression")}
        if any(n != expected for n in got.values()):
            raise ValueError(
                f"{config.name}: the {config.architecture} graph predicts {got['classification']} "
                f"boxes but the config's anchors number {expected} (feature maps "
                f"{config.get_feature_map_sizes()}); fix feature_map_sizes/feature_strides")

    def target_encoder(self, config, image_size=None):
        return ssd_target_encoder(config, image_size)

    def loss_normalizer(self, y_true):
        from ssd_keras.families.ssd.losses import num_positives
        return num_positives(y_true)

    def loss(self, y_true, y_pred, config, normalizer=None):
        from ssd_keras.families.ssd.losses import detection_loss
        return detection_loss(y_true, y_pred, config, normalizer=normalizer)

    def decode(self, y_pred, config, **overrides):
        from ssd_keras.families.ssd.postprocess import decode_for_config
        _check_overrides(overrides)
        return decode_for_config(y_pred, config, cached_anchors(config), **overrides)

    def decoder_layer(self, config, **overrides):
        from ssd_keras.families.ssd.postprocess import DecodeDetections
        _check_overrides(overrides, _LAYER_KEYS)
        return DecodeDetections(config, name="detections", **overrides)


SSD = register_family(SSDFamily())
