"""Decoding: offsets + anchors -> boxes, then per-class NMS (batched, TensorFlow).

Caffe ``DetectionOutput`` semantics: per class keep the ``max_detections_per_class``
(400) highest-scoring candidates, suppress overlaps ``> iou_threshold`` (0.45)
among them, drop scores below ``score_threshold`` (0.01), then keep the
``max_detections`` (200) best over all classes.

Implemented with ``tf.math.top_k`` (candidates per class) and ONE greedy
``NonMaxSuppressionV5`` per image over all classes at once, the classes kept
apart by shifting each class's boxes to its own region of the plane (the
torchvision ``batched_nms`` trick; IoU is translation-invariant, so this is
per-class NMS).  Unlike ``tf.image.combined_non_max_suppression`` that op is a
TFLite builtin and an ONNX ``NonMaxSuppression``, so the exported graphs
(:mod:`ssd_keras.export`) decode with this same code.  No Python loop over
classes; images of a static batch are unrolled, a dynamic batch goes through
``tf.map_fn``.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from ssd_keras.boxes import DEFAULT_VARIANCES, decode_boxes
from ssd_keras.families.base import detections_to_numpy  # noqa: F401  (re-exported)


def class_scores(logits, activation):
    """``(B, N, C)`` logits -> ``(B, N, K)`` foreground scores (softmax drops background)."""
    logits = tf.cast(logits, tf.float32)
    if activation == "softmax":
        return tf.nn.softmax(logits, axis=-1)[..., 1:]
    return tf.sigmoid(logits)


def decode_detections(classification, regression, anchors, activation="softmax",
                      variances=DEFAULT_VARIANCES, score_threshold=0.01, iou_threshold=0.45,
                      max_detections=200, max_detections_per_class=400, clip_boxes=True):
    """Batched SSD decoding.

    Args:
        classification: ``(B, N, C)`` class logits.
        regression: ``(B, N, 4)`` encoded offsets.
        anchors: ``(N, 4)`` normalised ``(cx, cy, w, h)``.
        activation: ``"softmax"`` (column 0 is background) or ``"sigmoid"``.

    Returns:
        dict of tensors: ``boxes`` ``(B, max_detections, 4)`` normalised corners
        ``[xmin, ymin, xmax, ymax]``, ``scores`` ``(B, max_detections)``,
        ``classes`` ``(B, max_detections)`` int32 labels ``1..K``,
        ``num_detections`` ``(B,)`` int32 valid entries (rest is zero padding).
    """
    boxes = decode_boxes(regression, anchors, variances)                     # (B, N, 4)
    scores = class_scores(classification, activation)                        # (B, N, K)
    num_anchors = tf.shape(scores)[1]
    num_classes = scores.shape[-1]
    k = tf.minimum(max_detections_per_class, num_anchors)
    top_scores, top_idx = tf.math.top_k(tf.transpose(scores, [0, 2, 1]), k=k)   # (B, K, k)
    cand = tf.gather(boxes, top_idx, batch_dims=1)                           # (B, K, k, 4)
    cand_classes = tf.repeat(tf.range(num_classes, dtype=tf.int32), k)       # (K * k,)

    def one_image(args):
        image_boxes, image_scores = args
        return _nms_over_classes(tf.reshape(image_boxes, [-1, 4]), tf.reshape(image_scores, [-1]),
                                 cand_classes, iou_threshold, score_threshold, max_detections)

    batch = cand.shape[0]
    if batch is not None:   # static batch (exported graphs): unrolled, no loop op to convert
        per_image = [one_image((cand[i], top_scores[i])) for i in range(batch)]
        out_boxes, out_scores, classes, valid = (tf.stack(t) for t in zip(*per_image))
    else:
        out_boxes, out_scores, classes, valid = tf.map_fn(
            one_image, (cand, top_scores), fn_output_signature=(
                tf.TensorSpec([max_detections, 4], tf.float32),
                tf.TensorSpec([max_detections], tf.float32),
                tf.TensorSpec([max_detections], tf.int32), tf.TensorSpec([], tf.int32)))
    if clip_boxes:
        out_boxes = tf.clip_by_value(out_boxes, 0.0, 1.0)
    return {"boxes": out_boxes, "scores": out_scores, "classes": classes,
            "num_detections": valid}


# NMS sees coordinates clamped to this window (normalised units) and each class
# shifted by its width, so the shift stays small next to float32 precision.
_NMS_WINDOW = (-1.0, 2.0)


def _nms_over_classes(boxes, scores, classes, iou_threshold, score_threshold, max_detections):
    """Per-class greedy NMS of one image's candidates, as one NMS op.

    Args:
        boxes: ``(M, 4)`` normalised corners ``[xmin, ymin, xmax, ymax]``.
        scores: ``(M,)``; only scores ``> score_threshold`` are kept.
        classes: ``(M,)`` int32 class index ``0..K-1`` of each candidate.

    Returns:
        ``boxes (D, 4)``, ``scores (D,)`` best first, ``classes (D,)`` int32
        ``1..K`` and ``num_detections`` (int32 scalar); entries past it are zero.
    """
    lo, hi = _NMS_WINDOW
    shift = tf.cast(classes, tf.float32)[:, None] * (hi - lo + 1.0)
    keep, kept_scores, count = tf.raw_ops.NonMaxSuppressionV5(
        boxes=tf.clip_by_value(boxes, lo, hi) + shift, scores=scores,
        max_output_size=max_detections, iou_threshold=iou_threshold,
        score_threshold=score_threshold, soft_nms_sigma=0.0, pad_to_max_output_size=True)
    valid = tf.range(max_detections) < count
    out_boxes = tf.where(valid[:, None], tf.gather(boxes, keep), 0.0)
    out_classes = tf.where(valid, tf.gather(classes, keep) + 1, 0)
    return out_boxes, tf.where(valid, kept_scores, 0.0), out_classes, tf.cast(count, tf.int32)


def decode_for_config(predictions, config, anchors=None, **overrides):
    """:func:`decode_detections` with a config's anchors and decoding defaults."""
    params = dict(activation="softmax" if config.classification_loss == "softmax" else "sigmoid",
                  variances=config.variances, score_threshold=config.score_threshold,
                  iou_threshold=config.nms_iou_threshold, max_detections=config.max_detections,
                  max_detections_per_class=config.max_detections_per_class)
    params.update(overrides)
    if anchors is None:
        anchors = config.anchors()
    return decode_detections(predictions["classification"], predictions["regression"],
                             anchors, **params)


@keras.saving.register_keras_serializable(package="ssd_keras")
class DecodeDetections(keras.layers.Layer):
    """Inference head: raw predictions -> padded detections in input-image pixels.

    Input: the detector's output dict ``{"classification": (B, N, C),
    "regression": (B, N, 4)}``.  Output dict: ``boxes`` ``(B, D, 4)``
    ``[xmin, ymin, xmax, ymax]`` in pixels of the model input, ``scores``
    ``(B, D)``, ``classes`` ``(B, D)`` int32 (1..K, 0 = padding),
    ``num_detections`` ``(B,)``.  Anchors are rebuilt from the stored detector
    config, so the layer serialises as a few numbers.  TensorFlow backend only
    (it uses TensorFlow's ``NonMaxSuppressionV5``).
    """

    def __init__(self, detector_config, score_threshold=None, iou_threshold=None,
                 max_detections=None, max_detections_per_class=None, **kwargs):
        super().__init__(**kwargs)
        from ssd_keras.config import DetectorConfig

        if isinstance(detector_config, dict):
            detector_config = DetectorConfig.from_dict(detector_config)
        self.detector_config = detector_config
        c = detector_config
        self.score_threshold = c.score_threshold if score_threshold is None else float(score_threshold)
        self.iou_threshold = c.nms_iou_threshold if iou_threshold is None else float(iou_threshold)
        self.max_detections = c.max_detections if max_detections is None else int(max_detections)
        self.max_detections_per_class = (c.max_detections_per_class if max_detections_per_class is None
                                         else int(max_detections_per_class))
        self._anchors = c.anchors()

    def call(self, predictions):
        c = self.detector_config
        out = decode_for_config(predictions, c, anchors=self._anchors,
                                score_threshold=self.score_threshold,
                                iou_threshold=self.iou_threshold,
                                max_detections=self.max_detections,
                                max_detections_per_class=self.max_detections_per_class)
        h, w = c.image_size
        out["boxes"] = out["boxes"] * tf.constant([w, h, w, h], tf.float32)
        return out

    def compute_output_spec(self, predictions):
        b = predictions["classification"].shape[0]
        d = self.max_detections
        return {"boxes": keras.KerasTensor((b, d, 4)), "scores": keras.KerasTensor((b, d)),
                "classes": keras.KerasTensor((b, d), dtype="int32"),
                "num_detections": keras.KerasTensor((b,), dtype="int32")}

    def get_config(self):
        return {**super().get_config(), "detector_config": self.detector_config.to_dict(),
                "score_threshold": self.score_threshold, "iou_threshold": self.iou_threshold,
                "max_detections": self.max_detections,
                "max_detections_per_class": self.max_detections_per_class}
