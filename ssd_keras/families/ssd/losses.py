"""SSD losses in ``keras.ops`` (backend-agnostic).

Targets (from :func:`ssd_keras.families.ssd.matching.encode_targets`, batched)::

    y_true = {"labels": (B, N) int32  0 background, -1 ignored, 1..K class,
              "boxes":  (B, N, 4) float32 encoded offsets}

Predictions (from :func:`ssd_keras.build_model`)::

    y_pred = {"classification": (B, N, C) logits  (C = K + 1 softmax, K sigmoid),
              "regression":     (B, N, 4) offsets}

Both losses return a dict ``{"classification": scalar, "localization": scalar}``
normalised by the number of positive anchors in the batch (at least 1, so an
all-background batch gives a finite loss), as Caffe's ``MultiBoxLoss`` with
``normalization: VALID`` and the TF OD API with ``normalize_loss_by_num_matches``.
``normalizer`` replaces that count, for a batch split over replicas: each
replica divides its own sum by the positives of the *global* batch (see
:meth:`ssd_keras.models.base.SSDModel.loss_components`), so the replicas'
losses add up to the loss of the whole batch.
"""
from __future__ import annotations

from keras import ops


def smooth_l1(diff, delta=1.0):
    """Elementwise Huber / smooth-L1 with transition at ``delta`` (Caffe: 1)."""
    a = ops.abs(diff)
    return ops.where(a < delta, 0.5 * a * a / delta, a - 0.5 * delta)


def _localization(y_true_boxes, y_pred_boxes, positive):
    per_anchor = ops.sum(smooth_l1(y_pred_boxes - y_true_boxes), axis=-1)   # (B, N)
    return ops.sum(per_anchor * ops.cast(positive, per_anchor.dtype))


def hard_negative_mask(neg_loss, negative, num_positive, neg_pos_ratio=3.0, min_negatives=0):
    """Select the hardest negatives per image.

    Args:
        neg_loss: ``(B, N)`` loss of each anchor if it were background.
        negative: ``(B, N)`` bool, anchors eligible as negatives.
        num_positive: ``(B,)`` positives per image.
        neg_pos_ratio: negatives kept per positive (3).
        min_negatives: negatives kept per image even without positives (0 as in
            Caffe: an image with no objects then adds nothing to the class loss).

    Returns:
        ``(B, N)`` bool mask with exactly ``min(max(ratio * pos, min_neg), #neg)``
        True entries per image, the anchors with the largest ``neg_loss``.
    """
    neg_loss = ops.where(negative, neg_loss, ops.full_like(neg_loss, -1e30))
    order = ops.argsort(-neg_loss, axis=-1)
    rank = ops.argsort(order, axis=-1)
    num_negative = ops.sum(ops.cast(negative, "int32"), axis=-1)
    keep = ops.cast(ops.cast(num_positive, "float32") * neg_pos_ratio, "int32")
    keep = ops.minimum(ops.maximum(keep, min_negatives), num_negative)
    return (rank < ops.expand_dims(keep, -1)) & negative


def num_positives(y_true):
    """Positive anchors of a batch of targets (labels ``(B, N)`` > 0), a float32 scalar."""
    return ops.sum(ops.cast(ops.cast(y_true["labels"], "int32") > 0, "float32"))


def _normalizer(y_true, normalizer):
    count = num_positives(y_true) if normalizer is None else ops.cast(normalizer, "float32")
    return ops.maximum(count, 1.0)


def ssd_softmax_loss(y_true, y_pred, neg_pos_ratio=3.0, localization_weight=1.0, min_negatives=0,
                     normalizer=None):
    """SSD MultiBox loss: softmax cross-entropy with hard negative mining + smooth L1.

    ``normalizer``: the positive count to divide by (default: this batch's).
    """
    labels = ops.cast(y_true["labels"], "int32")
    logits = ops.cast(y_pred["classification"], "float32")
    positive = labels > 0
    negative = ops.equal(labels, 0)
    safe_labels = ops.maximum(labels, 0)
    log_probs = ops.log_softmax(logits, axis=-1)
    ce = -ops.take_along_axis(log_probs, ops.expand_dims(safe_labels, -1), axis=-1)[..., 0]
    num_pos_img = ops.sum(ops.cast(positive, "int32"), axis=-1)
    chosen_neg = hard_negative_mask(ops.stop_gradient(ce), negative, num_pos_img,
                                    neg_pos_ratio, min_negatives)
    weight = ops.cast(positive | chosen_neg, "float32")
    norm = _normalizer(y_true, normalizer)
    cls = ops.sum(ce * weight) / norm
    loc = _localization(ops.cast(y_true["boxes"], "float32"),
                        ops.cast(y_pred["regression"], "float32"), positive) / norm
    return {"classification": cls, "localization": localization_weight * loc}


def sigmoid_focal(logits, targets, alpha=0.25, gamma=2.0):
    """Elementwise sigmoid focal loss (Lin et al. 2017), numerically stable.

    ``FL = -alpha_t (1 - p_t)^gamma log(p_t)`` with ``p_t = p`` for target 1 and
    ``1 - p`` for target 0, ``alpha_t = alpha`` / ``1 - alpha``.
    """
    ce = ops.maximum(logits, 0.0) - logits * targets + ops.log1p(ops.exp(-ops.abs(logits)))
    p = ops.sigmoid(logits)
    p_t = targets * p + (1.0 - targets) * (1.0 - p)
    alpha_t = targets * alpha + (1.0 - targets) * (1.0 - alpha)
    return alpha_t * ops.power(1.0 - p_t, gamma) * ce


def sigmoid_focal_loss(y_true, y_pred, alpha=0.25, gamma=2.0, localization_weight=1.0,
                       normalizer=None):
    """Focal loss over all non-ignored anchors and classes + smooth L1 (RetinaNet / FPNLite).

    ``normalizer``: the positive count to divide by (default: this batch's).
    """
    labels = ops.cast(y_true["labels"], "int32")
    logits = ops.cast(y_pred["classification"], "float32")
    num_classes = ops.shape(logits)[-1]
    positive = labels > 0
    valid = labels >= 0
    targets = ops.one_hot(ops.maximum(labels - 1, 0), num_classes) * ops.cast(
        ops.expand_dims(positive, -1), "float32")
    fl = ops.sum(sigmoid_focal(logits, targets, alpha, gamma), axis=-1)       # (B, N)
    norm = _normalizer(y_true, normalizer)
    cls = ops.sum(fl * ops.cast(valid, "float32")) / norm
    loc = _localization(ops.cast(y_true["boxes"], "float32"),
                        ops.cast(y_pred["regression"], "float32"), positive) / norm
    return {"classification": cls, "localization": localization_weight * loc}


def detection_loss(y_true, y_pred, config, normalizer=None):
    """The loss a :class:`~ssd_keras.config.DetectorConfig` asks for, as components."""
    if config.classification_loss == "softmax":
        return ssd_softmax_loss(y_true, y_pred, config.neg_pos_ratio, config.localization_weight,
                                normalizer=normalizer)
    return sigmoid_focal_loss(y_true, y_pred, config.focal_alpha, config.focal_gamma,
                              config.localization_weight, normalizer=normalizer)
