"""Decoding: offsets + anchors -> boxes, then per-class NMS (batched, TensorFlow).

Caffe ``DetectionOutput`` semantics: per class keep the ``max_detections_per_class``
(400) highest-scoring candidates, suppress overlaps ``> iou_threshold`` (0.45)
among them, drop scores below ``score_threshold`` (0.01), then keep the
``max_detections`` (200) best over all classes.  Implemented with
``tf.math.top_k`` + ``tf.image.combined_non_max_suppression``: no Python loop
over images or classes.
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from ssd_keras.boxes import DEFAULT_VARIANCES, decode_boxes


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
    k = tf.minimum(max_detections_per_class, num_anchors)
    top_scores, top_idx = tf.math.top_k(tf.transpose(scores, [0, 2, 1]), k=k)   # (B, K, k)
    cand = tf.gather(boxes, top_idx, batch_dims=1)                           # (B, K, k, 4)
    nms = tf.image.combined_non_max_suppression(
        tf.transpose(cand, [0, 2, 1, 3]), tf.transpose(top_scores, [0, 2, 1]),
        max_output_size_per_class=max_detections_per_class, max_total_size=max_detections,
        iou_threshold=iou_threshold, score_threshold=score_threshold,
        pad_per_class=False, clip_boxes=False)
    out_boxes = nms.nmsed_boxes
    if clip_boxes:
        out_boxes = tf.clip_by_value(out_boxes, 0.0, 1.0)
    valid = tf.cast(nms.valid_detections, tf.int32)
    mask = tf.sequence_mask(valid, max_detections)
    classes = tf.where(mask, tf.cast(nms.nmsed_classes, tf.int32) + 1, 0)
    return {"boxes": out_boxes, "scores": nms.nmsed_scores, "classes": classes,
            "num_detections": valid}


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


def detections_to_numpy(decoded, image_sizes=None, convention="coco"):
    """Batched decoder output -> list (one per image) of numpy dicts.

    Each dict has ``boxes`` ``(k, 4)``, ``scores`` ``(k,)``, ``labels`` ``(k,)``.
    Boxes are normalised unless ``image_sizes`` (a list of ``(height, width)``)
    is given, then in that image's source pixels under ``convention``
    (``"voc"``: 1-based, ``"coco"``: 0-based; see :mod:`ssd_keras.data.records`).
    """
    from ssd_keras.data.records import pixel_boxes

    boxes = np.asarray(decoded["boxes"])
    scores = np.asarray(decoded["scores"])
    classes = np.asarray(decoded["classes"])
    counts = np.asarray(decoded["num_detections"])
    out = []
    for i in range(len(counts)):
        n = int(counts[i])
        b = boxes[i, :n]
        if image_sizes is not None:
            h, w = image_sizes[i]
            b = pixel_boxes(b, w, h, convention)
        out.append({"boxes": b.astype(np.float32), "scores": scores[i, :n].astype(np.float32),
                    "labels": classes[i, :n].astype(np.int32)})
    return out


@keras.saving.register_keras_serializable(package="ssd_keras")
class DecodeDetections(keras.layers.Layer):
    """Inference head: raw predictions -> padded detections in input-image pixels.

    Input: the detector's output dict ``{"classification": (B, N, C),
    "regression": (B, N, 4)}``.  Output dict: ``boxes`` ``(B, D, 4)``
    ``[xmin, ymin, xmax, ymax]`` in pixels of the model input, ``scores``
    ``(B, D)``, ``classes`` ``(B, D)`` int32 (1..K, 0 = padding),
    ``num_detections`` ``(B,)``.  Anchors are rebuilt from the stored detector
    config, so the layer serialises as a few numbers.  TensorFlow backend only
    (it uses ``tf.image.combined_non_max_suppression``).
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
