"""CenterNet training targets: class-centre heatmaps, sizes and offsets (graph ops, ``tf.data``).

Conventions (TF OD API ``CenterNetCenterHeatmapTargetAssigner`` /
``CenterNetBoxTargetAssigner``, ``target_assigner_utils``):

* boxes come in as normalised corners ``[xmin, ymin, xmax, ymax]`` of the model
  input and are scaled to **output-stride pixels** (``H / s`` x ``W / s``);
  the centre ``(cx, cy)`` is the mean of the corners in those units;
* the heatmap peak of an object sits on the cell ``(floor(cy), floor(cx))``
  (``coordinates_to_heatmap``: ``exp(-((x - floor(cx))^2 + (y - floor(cy))^2)
  / (2 sigma^2))`` on the integer grid), so that cell is exactly 1;
* ``sigma = (2 * max(floor(r), 0) + 1) / 6`` with ``r`` the paper's IoU
  radius for ``min_overlap`` computed as ``max_distance_for_overlap``
  (the CenterNet ``gaussian_radius`` including its ``/ 2`` instead of
  ``/ (2a)`` in the root, kept for parity: see :func:`gaussian_radius`);
* overlapping objects of the same class: element-wise max;
* size target ``(w, h)`` and offset target ``(cx - floor(cx), cy - floor(cy))``
  in output-stride pixels, at the centre cell only (TF OD API regresses the
  size in output pixels too, not normalised and not log);
* labels ``-1`` (objects to ignore, e.g. cut by a training crop): not a
  positive and no size/offset target; every heatmap cell inside the ignored
  box gets weight 0 in the focal loss for all classes (TF OD API
  ``blackout_pixel_weights_by_box_regions``), so the detector is neither
  taught that half a digit is background nor that it is a digit.
"""
from __future__ import annotations


import tensorflow as tf


def gaussian_radius(height, width, min_overlap):
    """The CenterNet radius ``r`` (output pixels) for boxes ``height`` x ``width``.

    The smallest of the three quadratic roots (box displaced; detection inside
    the ground truth; ground truth inside the detection) with the root
    ``(-b + sqrt(b^2 - 4ac)) / 2`` exactly as TF OD API
    ``target_assigner._smallest_positive_root`` / ``max_distance_for_overlap``
    (and the original ``gaussian_radius``) compute it.

    Args:
        height, width: float32 tensors ``(m,)``.
        min_overlap: IoU (0.7).

    Returns:
        float32 ``(m,)``.
    """
    height = tf.cast(height, tf.float32)
    width = tf.cast(width, tf.float32)

    def root(a, b, c):
        return (-b + tf.sqrt(tf.maximum(b * b - 4.0 * a * c, 0.0))) / 2.0

    o = float(min_overlap)
    r1 = root(1.0, -(height + width), width * height * ((1.0 - o) / (1.0 + o)))
    r2 = root(4.0, -2.0 * (height + width), (1.0 - o) * width * height)
    r3 = root(4.0 * o, 2.0 * o * (width + height), (o - 1.0) * width * height)
    return tf.minimum(tf.minimum(r1, r2), r3)


def gaussian_sigma(height, width, min_overlap):
    """``(2 * max(floor(r), 0) + 1) / 6`` (TF OD API ``_compute_std_dev_from_box_size``)."""
    r = gaussian_radius(height, width, min_overlap)
    return (2.0 * tf.maximum(tf.floor(r), 0.0) + 1.0) / 6.0


def output_size(image_size, output_stride):
    """``(H // s, W // s)`` -- the heatmap size of an input of ``image_size``."""
    h, w = (int(v) for v in image_size)
    return h // int(output_stride), w // int(output_stride)


def encode_centernet_targets(boxes, labels, image_size, num_classes, head):
    """Targets of one image.

    Args:
        boxes: float32 ``(m, 4)`` normalised ``[xmin, ymin, xmax, ymax]``
            (clipped to ``[0, 1]`` here; degenerate boxes are skipped).
        labels: int ``(m,)`` in ``1..num_classes``, ``-1`` = ignore, ``0`` = padding.
        image_size: model input ``(H, W)`` (Python ints).
        num_classes: ``K``.
        head: :class:`~ssd_keras.families.centernet.config.CenterNetHead`
            (``output_stride``, ``min_overlap``, ``max_objects``).

    Returns:
        dict of fixed-shape tensors (``h, w = H // s, W // s``, ``M = max_objects``):
        ``heatmap`` float32 ``(h, w, K)``; ``heatmap_weight`` float32 ``(h, w, 1)``
        (0 inside ignored boxes); ``indices`` int32 ``(M,)`` flat centre cell
        ``y * w + x``; ``box_scale`` float32 ``(M, 2)`` ``(w, h)`` and
        ``box_offset`` float32 ``(M, 2)`` ``(dx, dy)`` in output pixels;
        ``mask`` float32 ``(M,)`` (1 for a real object slot).  The first ``M``
        positives (in input order) get slots; the rest are in the heatmap only.
    """
    out_h, out_w = output_size(image_size, head.output_stride)
    boxes = tf.clip_by_value(tf.reshape(tf.cast(boxes, tf.float32), (-1, 4)), 0.0, 1.0)
    labels = tf.reshape(tf.cast(labels, tf.int32), (-1,))
    scale = tf.constant([out_w, out_h, out_w, out_h], tf.float32)
    px = boxes * scale
    bw = px[:, 2] - px[:, 0]
    bh = px[:, 3] - px[:, 1]
    real = (bw > 0) & (bh > 0)
    positive = real & (labels >= 1) & (labels <= num_classes)
    ignored = real & tf.equal(labels, -1)

    cx = (px[:, 0] + px[:, 2]) / 2.0
    cy = (px[:, 1] + px[:, 3]) / 2.0
    # a centre on the far border (x = w) belongs to the last cell
    fx = tf.minimum(tf.floor(cx), out_w - 1.0)
    fy = tf.minimum(tf.floor(cy), out_h - 1.0)

    # ---- heatmap: Gaussians of the positives, max per class
    pos_fx, pos_fy = tf.boolean_mask(fx, positive), tf.boolean_mask(fy, positive)
    sigma = gaussian_sigma(tf.boolean_mask(bh, positive), tf.boolean_mask(bw, positive),
                           head.min_overlap)
    ys = tf.range(out_h, dtype=tf.float32)
    xs = tf.range(out_w, dtype=tf.float32)
    dy2 = tf.square(ys[None, :] - pos_fy[:, None])                      # (p, h)
    dx2 = tf.square(xs[None, :] - pos_fx[:, None])                      # (p, w)
    gauss = tf.exp(-(dy2[:, :, None] + dx2[:, None, :])
                   / (2.0 * tf.square(sigma)[:, None, None]))           # (p, h, w)
    pos_cls = tf.boolean_mask(labels, positive) - 1
    per_class = tf.math.unsorted_segment_max(tf.reshape(gauss, (-1, out_h * out_w)), pos_cls,
                                             num_segments=num_classes)  # (K, h*w); empty: -inf
    heatmap = tf.transpose(tf.reshape(tf.maximum(per_class, 0.0), (num_classes, out_h, out_w)),
                           (1, 2, 0))
    heatmap = tf.ensure_shape(heatmap, (out_h, out_w, num_classes))

    # ---- ignore regions: cells inside an ignored box (output pixels, inclusive)
    ign = tf.boolean_mask(px, ignored)                                  # (q, 4)
    inside_y = (ys[None, :] >= ign[:, 1:2]) & (ys[None, :] <= ign[:, 3:4])   # (q, h)
    inside_x = (xs[None, :] >= ign[:, 0:1]) & (xs[None, :] <= ign[:, 2:3])   # (q, w)
    blackout = tf.reduce_any(inside_y[:, :, None] & inside_x[:, None, :], axis=0)
    heatmap_weight = tf.where(blackout, 0.0, 1.0)[:, :, None]
    heatmap_weight = tf.ensure_shape(heatmap_weight, (out_h, out_w, 1))

    # ---- size / offset slots: the first max_objects positives
    m_max = int(head.max_objects)
    flat = tf.cast(pos_fy * out_w + pos_fx, tf.int32)
    size = tf.stack([tf.boolean_mask(bw, positive), tf.boolean_mask(bh, positive)], -1)
    offset = tf.stack([tf.boolean_mask(cx, positive) - pos_fx,
                       tf.boolean_mask(cy, positive) - pos_fy], -1)
    n = tf.minimum(tf.shape(flat)[0], m_max)
    pad = m_max - n
    indices = tf.pad(flat[:n], [[0, pad]])
    box_scale = tf.pad(size[:n], [[0, pad], [0, 0]])
    box_offset = tf.pad(offset[:n], [[0, pad], [0, 0]])
    mask = tf.pad(tf.ones((n,), tf.float32), [[0, pad]])
    return {
        "heatmap": heatmap,
        "heatmap_weight": heatmap_weight,
        "indices": tf.ensure_shape(indices, (m_max,)),
        "box_scale": tf.ensure_shape(box_scale, (m_max, 2)),
        "box_offset": tf.ensure_shape(box_offset, (m_max, 2)),
        "mask": tf.ensure_shape(mask, (m_max,)),
    }


def centernet_target_encoder(config, image_size=None):
    """``encode(boxes (m, 4), labels (m,)) -> targets`` for ``config`` at ``image_size``.

    Reads only ``config.num_classes``, ``config.image_size`` and ``config.head``.
    """
    size = tuple(int(v) for v in (image_size or config.image_size))
    s = int(config.head.output_stride)
    if size[0] % s or size[1] % s:
        raise ValueError(f"CenterNet targets: input size {size} is not a multiple of the "
                         f"output stride {s}")
    num_classes = int(config.num_classes)
    head = config.head

    def encode(boxes, labels):
        return encode_centernet_targets(boxes, labels, size, num_classes, head)

    return encode


__all__ = ["gaussian_radius", "gaussian_sigma", "output_size", "encode_centernet_targets",
           "centernet_target_encoder"]
