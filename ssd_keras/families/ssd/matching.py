"""Ground truth -> anchor targets (SSD matching), in TensorFlow graph ops for tf.data.

Matching as in the paper and Caffe's ``MultiBoxLoss`` (``match_type:
PER_PREDICTION``): first a greedy *bipartite* pass gives every ground-truth box
its own best anchor (the global best remaining pair first), then every other
anchor whose best IoU with some box is ``>= iou_threshold`` is positive too.
This is also the TF OD API's ``ArgMaxMatcher(force_match_for_each_row=True)``
at 0.5/0.5.  Optionally anchors with ``negative_threshold <= IoU <
iou_threshold`` are ignored (label -1), as RetinaNet does.
"""
from __future__ import annotations

import tensorflow as tf

from ssd_keras.boxes import DEFAULT_VARIANCES, center_to_corners, encode_boxes, pairwise_iou


def _greedy_assign(iou):
    """Greedy bipartite assignment on a small ``(m, c)`` matrix -> ``(c,)`` box index or -1."""
    m = tf.shape(iou)[0]
    n = tf.shape(iou)[1]

    def body(i, work, assigned):
        flat = tf.argmax(tf.reshape(work, [-1]), output_type=tf.int32)
        g, a = flat // n, flat % n
        ok = tf.reshape(work, [-1])[flat] > 0.0
        assigned = tf.cond(ok, lambda: tf.tensor_scatter_nd_update(assigned, [[a]], [g]),
                           lambda: assigned)
        taken = (tf.range(m) == g)[:, None] | (tf.range(n) == a)[None, :]
        work = tf.where(taken, -tf.ones_like(work), work)
        return i + 1, work, assigned

    # shape invariants: static input shapes (e.g. tf.constant boxes) must not pin the loop
    _, _, assigned = tf.while_loop(
        lambda i, *_: i < m, body,
        [tf.constant(0), iou, -tf.ones([n], tf.int32)],
        shape_invariants=[tf.TensorShape([]), tf.TensorShape([None, None]), tf.TensorShape([None])])
    return assigned


def _bipartite_match(iou):
    """Greedy bipartite assignment: ``(m, N)`` IoU -> ``(N,)`` int32 box index or -1.

    Repeats ``m`` times: take the largest remaining IoU, assign that anchor to
    that box, remove both.  Pairs with IoU 0 are never assigned (Caffe skips them).
    A box is assigned after at most ``m - 1`` columns were removed, so its anchor
    is among its ``m`` best: the loop runs on the union of every box's top-``m``
    anchors (at most ``m * m`` columns) instead of all ``N`` -- same result.
    """
    m = tf.shape(iou)[0]
    n = tf.shape(iou)[1]
    k = tf.minimum(m, n)
    _, top = tf.math.top_k(iou, k=k)                                  # (m, k)
    # ascending columns keep argmax tie-breaking identical to the full matrix
    cols = tf.sort(tf.unique(tf.reshape(top, [-1]))[0])               # (c,)
    small = tf.gather(iou, cols, axis=1)                              # (m, c)
    assigned_small = _greedy_assign(small)
    return tf.tensor_scatter_nd_update(-tf.ones([n], tf.int32), cols[:, None], assigned_small)


def match_anchors(gt_boxes, anchors_corners, iou_threshold=0.5, negative_threshold=None):
    """Match anchors to ground-truth boxes.

    Args:
        gt_boxes: ``(m, 4)`` float32 corners (normalised).
        anchors_corners: ``(N, 4)`` float32 anchor corners (normalised).
        iou_threshold: positive if best IoU ``>=`` this.
        negative_threshold: if set (< iou_threshold), anchors with best IoU in
            ``[negative_threshold, iou_threshold)`` are ignored.

    Returns:
        ``(match, state)``: ``(N,)`` int32 index of the matched box (0 where
        unmatched) and ``(N,)`` int32 state: 1 positive, 0 negative, -1 ignored.
    """
    gt_boxes = tf.convert_to_tensor(gt_boxes, tf.float32)
    n = tf.shape(anchors_corners)[0]

    def with_boxes():
        iou = pairwise_iou(gt_boxes, anchors_corners)                     # (m, N)
        best_iou = tf.reduce_max(iou, axis=0)                             # (N,)
        best_box = tf.argmax(iou, axis=0, output_type=tf.int32)           # (N,)
        forced = _bipartite_match(iou)                                    # (N,)
        is_forced = forced >= 0
        match = tf.where(is_forced, forced, best_box)
        positive = is_forced | (best_iou >= iou_threshold)
        state = tf.cast(positive, tf.int32)
        if negative_threshold is not None and negative_threshold < iou_threshold:
            ignore = (~positive) & (best_iou >= negative_threshold)
            state = tf.where(ignore, -1, state)
        return match, state

    def without_boxes():
        return tf.zeros([n], tf.int32), tf.zeros([n], tf.int32)

    return tf.cond(tf.shape(gt_boxes)[0] > 0, with_boxes, without_boxes)


def encode_targets(gt_boxes, gt_labels, anchors, variances=DEFAULT_VARIANCES,
                   iou_threshold=0.5, negative_threshold=None):
    """Training targets for one image.

    Args:
        gt_boxes: ``(m, 4)`` float32 normalised corners ``[xmin, ymin, xmax, ymax]``
            (``m`` may be 0: the image trains as all-negative).
        gt_labels: ``(m,)`` int32 labels ``1..K``.
        anchors: ``(N, 4)`` float32 normalised ``(cx, cy, w, h)`` (``config.anchors()``).
        variances: box-coder variances.
        iou_threshold, negative_threshold: see :func:`match_anchors`.

    Returns:
        ``{"labels": (N,) int32, "boxes": (N, 4) float32}``: labels 0 for
        background, -1 for ignored anchors, else the class; boxes hold the
        encoded offsets of positives (zeros elsewhere).
    """
    gt_boxes = tf.reshape(tf.convert_to_tensor(gt_boxes, tf.float32), [-1, 4])
    gt_labels = tf.reshape(tf.cast(gt_labels, tf.int32), [-1])
    anchors = tf.convert_to_tensor(anchors, tf.float32)
    tf.debugging.assert_all_finite(gt_boxes, "encode_targets: ground-truth box with NaN/inf coordinate")
    anchors_corners = center_to_corners(anchors)
    match, state = match_anchors(gt_boxes, anchors_corners, iou_threshold, negative_threshold)
    has_boxes = tf.shape(gt_boxes)[0] > 0
    safe_boxes = tf.cond(has_boxes, lambda: gt_boxes, lambda: tf.constant([[0.0, 0.0, 1.0, 1.0]]))
    safe_labels = tf.cond(has_boxes, lambda: gt_labels, lambda: tf.constant([0], tf.int32))
    matched_boxes = tf.gather(safe_boxes, match)
    matched_labels = tf.gather(safe_labels, match)
    labels = tf.where(state > 0, matched_labels, tf.where(state < 0, -1, 0))
    offsets = encode_boxes(matched_boxes, anchors, variances)
    offsets = tf.where((state > 0)[:, None], offsets, tf.zeros_like(offsets))
    return {"labels": labels, "boxes": offsets}


def ignore_near_boxes(labels, anchors, ignore_boxes, iou_threshold):
    """Background anchors near boxes to ignore -> label -1.

    Args:
        labels: ``(N,)`` int32 anchor labels from :func:`encode_targets`.
        anchors: ``(N, 4)`` float32 normalised ``(cx, cy, w, h)``.
        ignore_boxes: ``(q, 4)`` float32 normalised corners (may extend past
            ``[0, 1]``, e.g. the whole extent of an object cut by a crop).
        iou_threshold: an anchor with IoU ``>=`` this with some ignore box
            is ignored when it is background (positives stay positive).

    Returns:
        ``(N,)`` int32 labels.
    """
    iou = pairwise_iou(ignore_boxes, center_to_corners(anchors))           # (q, N)
    near = tf.reduce_any(iou >= iou_threshold, axis=0)
    return tf.where(near & tf.equal(labels, 0), -1, labels)


def encode_targets_for_config(gt_boxes, gt_labels, config, anchors=None):
    """:func:`encode_targets` with the anchors, variances and thresholds of ``config``."""
    if anchors is None:
        anchors = config.anchors()
    return encode_targets(gt_boxes, gt_labels, anchors, config.variances,
                          config.match_iou_threshold, config.negative_iou_threshold)
