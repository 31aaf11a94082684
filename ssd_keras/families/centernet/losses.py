"""CenterNet losses (``keras.ops``): penalty-reduced pixel-wise focal loss + L1 size / offset.

As TF OD API ``CenterNetMetaArch._compute_object_center_loss`` and
``_compute_box_scale_and_offset_loss`` (``PenaltyReducedLogisticFocalLoss``,
``L1LocalizationLoss``), each component summed over the batch and divided by
the number of objects ``N`` (at least 1):

* ``object_center = -1/N * sum_cells,classes w * ( [y == 1] (1 - p)^a log p
  + [y < 1] (1 - y)^b p^a log(1 - p) )`` with ``p = sigmoid(logit)``, ``y`` the
  Gaussian heatmap, ``w`` the ignore weight (0 inside ignored boxes); the logs
  are ``log_sigmoid`` of the logits (exact and stable where TF OD clips ``p``);
* ``box_scale = size_loss_weight / N * sum_objects |pred_wh - target_wh|_1`` with
  the size in output-stride pixels at the centre cell;
* ``box_offset = offset_loss_weight / N * sum_objects |pred_d - target_d|_1``.

``N`` is :func:`num_objects` (the filled size/offset slots); under
``tf.distribute`` the model all-reduces it and passes the global ``N``.
"""
from __future__ import annotations

from keras import ops


def num_objects(y_true):
    """float32 scalar: objects with a size/offset slot in the batch (``sum(mask)``)."""
    return ops.sum(ops.cast(y_true["mask"], "float32"))


def penalty_reduced_focal_loss(heatmap, logits, weight=None, alpha=2.0, beta=4.0):
    """Sum (not normalised) of the penalty-reduced focal loss.

    Args:
        heatmap: ``(B, h, w, K)`` Gaussian targets in ``[0, 1]`` (1 at centres).
        logits: ``(B, h, w, K)`` class-heatmap logits.
        weight: ``(B, h, w, 1)`` or broadcastable per-cell weight, or ``None``.
    """
    heatmap = ops.cast(heatmap, "float32")
    logits = ops.cast(logits, "float32")
    p = ops.sigmoid(logits)
    log_p = ops.log_sigmoid(logits)
    log_not_p = ops.log_sigmoid(-logits)
    positive = ops.cast(ops.equal(heatmap, 1.0), "float32")
    pos = positive * ops.power(1.0 - p, alpha) * log_p
    neg = (1.0 - positive) * ops.power(1.0 - heatmap, beta) * ops.power(p, alpha) * log_not_p
    loss = -(pos + neg)
    if weight is not None:
        loss = loss * ops.cast(weight, "float32")
    return ops.sum(loss)


def gather_at_indices(feature_map, indices):
    """``(B, h, w, C)`` values at flat cells ``indices`` ``(B, M)`` -> ``(B, M, C)``."""
    b = ops.shape(feature_map)[0]
    c = ops.shape(feature_map)[-1]
    flat = ops.reshape(feature_map, (b, -1, c))
    idx = ops.expand_dims(ops.cast(indices, "int32"), -1)
    return ops.take_along_axis(flat, ops.repeat(idx, c, axis=-1), axis=1)


def l1_at_centres(target, prediction_map, indices, mask):
    """Sum over objects of ``|prediction - target|_1`` at their centre cells (not normalised)."""
    pred = ops.cast(gather_at_indices(prediction_map, indices), "float32")
    diff = ops.sum(ops.abs(pred - ops.cast(target, "float32")), axis=-1)
    return ops.sum(diff * ops.cast(mask, "float32"))


def centernet_loss(y_true, y_pred, head, normalizer=None):
    """``{"object_center", "box_scale", "box_offset"}`` scalars (weights applied).

    Args:
        y_true: batched targets of :func:`~ssd_keras.families.centernet.targets.encode_centernet_targets`.
        y_pred: ``{"object_center": (B, h, w, K) logits, "box_scale": (B, h, w, 2),
            "box_offset": (B, h, w, 2)}``.
        head: :class:`~ssd_keras.families.centernet.config.CenterNetHead`.
        normalizer: the object count to divide by (default :func:`num_objects`
            of ``y_true``); clamped to at least 1.
    """
    n = num_objects(y_true) if normalizer is None else ops.cast(normalizer, "float32")
    n = ops.maximum(n, 1.0)
    center = penalty_reduced_focal_loss(y_true["heatmap"], y_pred["object_center"],
                                        y_true.get("heatmap_weight"), head.focal_alpha,
                                        head.focal_beta)
    scale = l1_at_centres(y_true["box_scale"], y_pred["box_scale"], y_true["indices"],
                          y_true["mask"])
    offset = l1_at_centres(y_true["box_offset"], y_pred["box_offset"], y_true["indices"],
                           y_true["mask"])
    return {"object_center": center / n,
            "box_scale": head.size_loss_weight * scale / n,
            "box_offset": head.offset_loss_weight * offset / n}
