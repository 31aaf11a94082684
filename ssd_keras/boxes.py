"""Box formats, IoU and the SSD offset coder, in TensorFlow ops (graph-safe, usable in tf.data).

Formats:
    corners: ``[xmin, ymin, xmax, ymax]``
    centre:  ``[cx, cy, w, h]``
All functions work on any leading batch shape ``(..., 4)`` unless stated, and
on normalised or pixel coordinates alike (they never assume a unit).

Offset coder (Caffe ``CENTER_SIZE`` with ``variance_encoded_in_target: false``;
TF OD API ``FasterRcnnBoxCoder`` with scale factors ``1 / variances``)::

    t_cx = (g_cx - a_cx) / a_w / v_0      t_w = log(g_w / a_w) / v_2
    t_cy = (g_cy - a_cy) / a_h / v_1      t_h = log(g_h / a_h) / v_3
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

DEFAULT_VARIANCES = (0.1, 0.1, 0.2, 0.2)


def corners_to_center(boxes):
    """``(..., 4)`` corners -> ``(..., 4)`` centre format."""
    boxes = tf.convert_to_tensor(boxes)
    xy_min, xy_max = boxes[..., :2], boxes[..., 2:]
    return tf.concat([(xy_min + xy_max) / 2.0, xy_max - xy_min], axis=-1)


def center_to_corners(boxes):
    """``(..., 4)`` centre format -> ``(..., 4)`` corners."""
    boxes = tf.convert_to_tensor(boxes)
    c, wh = boxes[..., :2], boxes[..., 2:]
    return tf.concat([c - wh / 2.0, c + wh / 2.0], axis=-1)


def box_area(boxes):
    """``(..., 4)`` corners -> ``(...)`` area (0 for inverted boxes)."""
    wh = tf.maximum(boxes[..., 2:] - boxes[..., :2], 0.0)
    return wh[..., 0] * wh[..., 1]


def pairwise_iou(boxes1, boxes2):
    """IoU of every pair: ``(m, 4)`` x ``(n, 4)`` corners -> ``(m, n)``.

    Continuous coordinates (no +1 pixel term; the VOC evaluator applies the
    devkit's +1 convention itself).  Empty inputs give an empty matrix.
    """
    boxes1 = tf.convert_to_tensor(boxes1, tf.float32)
    boxes2 = tf.convert_to_tensor(boxes2, tf.float32)
    lt = tf.maximum(boxes1[:, None, :2], boxes2[None, :, :2])
    rb = tf.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = tf.maximum(rb - lt, 0.0)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(boxes1)[:, None] + box_area(boxes2)[None, :] - inter
    return tf.math.divide_no_nan(inter, union)


def encode_boxes(boxes, anchors, variances=DEFAULT_VARIANCES):
    """Corners ``(..., N, 4)`` matched to anchors ``(N, 4)`` (centre) -> offsets ``(..., N, 4)``."""
    boxes = corners_to_center(tf.convert_to_tensor(boxes, tf.float32))
    anchors = tf.convert_to_tensor(anchors, tf.float32)
    v = tf.constant(variances, tf.float32)
    # Guard log(0) for zero-size boxes; real boxes are validated upstream.
    wh = tf.maximum(boxes[..., 2:], 1e-8)
    t_xy = (boxes[..., :2] - anchors[..., :2]) / anchors[..., 2:] / v[:2]
    t_wh = tf.math.log(wh / anchors[..., 2:]) / v[2:]
    return tf.concat([t_xy, t_wh], axis=-1)


def decode_boxes(offsets, anchors, variances=DEFAULT_VARIANCES):
    """Offsets ``(..., N, 4)`` + anchors ``(N, 4)`` (centre) -> corners ``(..., N, 4)``."""
    offsets = tf.convert_to_tensor(offsets, tf.float32)
    anchors = tf.convert_to_tensor(anchors, tf.float32)
    v = tf.constant(variances, tf.float32)
    xy = offsets[..., :2] * v[:2] * anchors[..., 2:] + anchors[..., :2]
    # Clamp the exponent: an untrained model can emit huge w/h offsets.
    wh = tf.exp(tf.minimum(offsets[..., 2:] * v[2:], 10.0)) * anchors[..., 2:]
    return center_to_corners(tf.concat([xy, wh], axis=-1))


def validate_boxes(boxes, where="boxes", allow_outside=True):
    """Check numpy corners ``(m, 4)``; raise ``ValueError`` naming ``where`` and the box.

    Rejects NaN/inf coordinates and degenerate boxes (``xmax <= xmin`` or
    ``ymax <= ymin``).  With ``allow_outside=False`` also boxes outside ``[0, 1]``
    (for normalised boxes).  Images without objects (``m == 0``) are valid: they
    train as all-negative.
    """
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    for i, box in enumerate(b):
        if not np.all(np.isfinite(box)):
            raise ValueError(f"{where}: box {i} has a non-finite coordinate: {box.tolist()}")
        if box[2] <= box[0] or box[3] <= box[1]:
            raise ValueError(f"{where}: box {i} is degenerate or inverted "
                             f"(xmax <= xmin or ymax <= ymin): {box.tolist()}")
        if not allow_outside and (box.min() < -1e-6 or box.max() > 1 + 1e-6):
            raise ValueError(f"{where}: box {i} lies outside the image: {box.tolist()}")
    return b
