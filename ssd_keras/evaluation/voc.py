"""Pascal VOC detection mAP, exactly as the official devkit computes it.

This is a vectorised numpy port of ``VOCevaldet.m`` and ``VOCap.m`` from the
VOC2012 devkit (and the 11-point variant of the VOC2007 devkit), not of the
common Python ports.  The rules it follows, for each class:

1. All detections of the class over all images are sorted by score,
   descending, with a *stable* sort (MATLAB's ``sort`` is stable): ties keep
   the order of the results file, i.e. image order, then the order within the
   image.
2. Overlaps use the devkit's +1 pixel convention for 1-based inclusive boxes:
   ``iw = min(xmax) - max(xmin) + 1``, ``ih`` likewise; a ground-truth box
   overlaps only if ``iw > 0 and ih > 0``; ``union = area_det + area_gt - iw*ih``
   with ``area = (xmax - xmin + 1) * (ymax - ymin + 1)``.
3. Each detection takes the ground-truth box of its class in its image with
   the largest overlap (the first one on ties).  If that overlap is
   ``>= iou_threshold`` (the devkit uses ``>=``; most Python ports wrongly use
   ``>``): a *difficult* box makes the detection neither TP nor FP; an
   unmatched box makes it a TP (and marks the box); an already-matched box makes
   it a FP (the devkit does not fall back to the next-best box).  Otherwise the
   detection is a FP.
4. ``npos`` = number of non-difficult ground-truth boxes; ``recall =
   cumsum(tp) / npos``, ``precision = cumsum(tp) / (cumsum(tp) + cumsum(fp))``.
5. AP: VOC2007's 11-point mean of ``max(precision[recall >= t])`` over
   ``t = 0:0.1:1`` (0 where no recall reaches ``t``), or VOC2010+'s area under
   the monotone precision envelope (``VOCap.m``).

Because the choice of the best ground-truth box never depends on earlier
matches (rule 3 has no fall-back), the greedy matching reduces to "is this the
first detection, in sorted order, that picks this ground-truth box?", which is
computed for all detections at once with :func:`numpy.unique`.  The only
Python loop is over images, to compute each image's overlap matrix.

Degenerate cases follow the devkit's floating-point arithmetic literally:

* A class whose ground-truth boxes are all difficult (``npos == 0``) has
  ``recall = 0/0 = NaN``.  Its 11-point AP is 0 (``NaN >= t`` is false); its
  VOC2010 AP is NaN if it has any detection and 0 if it has none.
* With ``npos > 0`` but every detection ignored (all hit difficult boxes),
  precision is ``0/0 = NaN`` everywhere; the 11-point AP is then NaN (MATLAB's
  ``max`` of all-NaN is NaN), the VOC2010 AP is 0.

The devkit reports per-class APs only; :func:`evaluate_voc`'s ``"map"`` is the
mean of the per-class APs ignoring NaN ones (an undefined AP is left out rather
than poisoning the mean; NaN only if every class is NaN).
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

# MATLAB's ``0:0.1:1``.  MATLAB builds a colon range from both ends
# (``a + k*d`` for the first half, ``b - k*d`` for the second), so its fourth
# element is ``3 * 0.1 = 0.30000000000000004`` while its seventh and eighth are
# ``1 - 0.4 == 0.6`` and ``1 - 3 * 0.1 == 0.7`` exactly.  ``np.arange(0, 1.1,
# 0.1)`` differs at 0.6 and 0.7 (it gives 0.6000000000000001 and
# 0.7000000000000001), which changes the AP whenever a recall is exactly 0.6 or
# 0.7 (e.g. 7 of 10 positives found).
VOC07_RECALL_THRESHOLDS = np.array(
    [0.0, 0.1, 0.2, 3 * 0.1, 0.4, 0.5, 1 - 0.4, 1 - 3 * 0.1, 1 - 0.2, 1 - 0.1, 1.0])


def voc_ap(recall, precision, use_07_metric=True) -> float:
    """Average precision from a precision/recall curve, as the devkit computes it.

    Args:
        recall: ``(n,)`` cumulative recall, one value per detection in
            descending-score order (``cumsum(tp) / npos``; may hold NaN).
        precision: ``(n,)`` cumulative precision (may hold NaN where no
            detection counted yet).
        use_07_metric: True for VOC2007's 11-point interpolated AP (mean over
            ``t = 0:0.1:1`` of the largest precision at recall ``>= t``, 0 where
            none), False for VOC2010+'s ``VOCap`` (area under the monotone
            precision envelope, sampled where recall changes).

    Returns:
        The AP as a Python float (NaN in the degenerate cases described in
        the module docstring).  NaNs are handled like MATLAB's ``max``, which
        ignores NaN unless all its inputs are NaN.
    """
    recall = np.asarray(recall, np.float64).reshape(-1)
    precision = np.asarray(precision, np.float64).reshape(-1)
    if recall.shape != precision.shape:
        raise ValueError(
            f"recall and precision differ in length: {recall.shape} vs {precision.shape}")
    if use_07_metric:
        ap = 0.0
        for t in VOC07_RECALL_THRESHOLDS:
            selected = precision[recall >= t]
            # MATLAB: max([]) is empty -> 0; max ignores NaN unless all are NaN.
            if selected.size == 0:
                p = 0.0
            elif np.all(np.isnan(selected)):
                p = np.nan
            else:
                p = np.nanmax(selected)
            ap += p / 11
        return float(ap)
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    # Backward running max; fmax ignores NaN like MATLAB's max, and the final 0
    # means the envelope itself is never NaN.
    mpre = np.fmax.accumulate(mpre[::-1])[::-1]
    # ``find(mrec(2:end) ~= mrec(1:end-1)) + 1``: NaN ~= x is true in MATLAB and
    # in numpy alike.
    i = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[i] - mrec[i - 1]) * mpre[i]))


def _as_array(value, dtype, shape):
    return np.asarray(value, dtype).reshape(shape)


def _gt_fields(gt):
    """``(boxes (m,4) float64, labels (m,) int64, difficult (m,) bool)`` of one image."""
    boxes = _as_array(gt["boxes"], np.float64, (-1, 4))
    labels = _as_array(gt["labels"], np.int64, (-1,))
    try:
        difficult = gt["difficult"]
    except (KeyError, IndexError):
        difficult = None
    if difficult is None:
        difficult = np.zeros(len(labels), bool)
    difficult = _as_array(difficult, bool, (-1,))
    if not len(boxes) == len(labels) == len(difficult):
        raise ValueError(
            f"ground truth has {len(boxes)} boxes, {len(labels)} labels and "
            f"{len(difficult)} difficult flags")
    return boxes, labels, difficult


def _det_fields(det):
    """``(boxes (k,4) float64, scores (k,) float64, labels (k,) int64)`` of one image."""
    boxes = _as_array(det["boxes"], np.float64, (-1, 4))
    scores = _as_array(det["scores"], np.float64, (-1,))
    labels = _as_array(det["labels"], np.int64, (-1,))
    if not len(boxes) == len(scores) == len(labels):
        raise ValueError(
            f"detections have {len(boxes)} boxes, {len(scores)} scores and "
            f"{len(labels)} labels")
    return boxes, scores, labels


def _best_overlaps(det_boxes, det_labels, gt_boxes, gt_labels):
    """Each detection's best same-class overlap in one image, devkit style.

    Args:
        det_boxes: ``(k, 4)`` VOC pixel ``[xmin, ymin, xmax, ymax]``.
        det_labels: ``(k,)``.
        gt_boxes: ``(m, 4)``, gt_labels: ``(m,)``.

    Returns:
        ``(ovmax (k,) float64, jmax (k,) int64)``: the largest overlap with a
        ground-truth box of the same label (``-inf`` if none intersects) and
        that box's index (the first on ties; meaningless where ``-inf``).
    """
    k, m = len(det_boxes), len(gt_boxes)
    if k == 0 or m == 0:
        return np.full(k, -np.inf), np.zeros(k, np.int64)
    d = det_boxes[:, None, :]
    g = gt_boxes[None, :, :]
    iw = np.minimum(d[..., 2], g[..., 2]) - np.maximum(d[..., 0], g[..., 0]) + 1
    ih = np.minimum(d[..., 3], g[..., 3]) - np.maximum(d[..., 1], g[..., 1]) + 1
    inter = iw * ih
    det_area = (d[..., 2] - d[..., 0] + 1) * (d[..., 3] - d[..., 1] + 1)
    gt_area = (g[..., 2] - g[..., 0] + 1) * (g[..., 3] - g[..., 1] + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        overlap = inter / (det_area + gt_area - inter)
    valid = (iw > 0) & (ih > 0) & (det_labels[:, None] == gt_labels[None, :])
    # The devkit updates its maximum only on ``ov > ovmax`` from -inf, so a NaN
    # overlap (degenerate boxes) never wins; argmax keeps the first maximum.
    overlap = np.where(valid & ~np.isnan(overlap), overlap, -np.inf)
    jmax = np.argmax(overlap, axis=1)
    return overlap[np.arange(k), jmax], jmax


def evaluate_voc(detections: Sequence[Mapping], ground_truths: Sequence[Mapping],
                 use_07_metric: bool = True, iou_threshold: float = 0.5) -> dict:
    """Pascal VOC mAP with the official devkit's rules (see module docstring).

    Args:
        detections: one mapping per image with ``boxes`` ``(k, 4)``
            ``[xmin, ymin, xmax, ymax]`` in VOC pixel coordinates (1-based
            inclusive, as in the annotation XML), ``scores`` ``(k,)`` and
            ``labels`` ``(k,)`` ints (contiguous ``1..K``).
        ground_truths: the same images in the same order, mappings (or
            :class:`~ssd_keras.data.records.Record`) with ``boxes`` ``(m, 4)``
            in the same convention, ``labels`` ``(m,)`` and ``difficult``
            ``(m,)`` bool (missing -> all False).
        use_07_metric: VOC2007 11-point AP (True) or VOC2010+ area AP (False).
        iou_threshold: minimum overlap for a match (``>=``, as the devkit).

    Returns:
        A dict with

        * ``"map"``: mean AP over the evaluated classes, NaN APs ignored;
        * ``"ap"``: ``{label: AP}`` for every label present in the ground
          truth (difficult-only classes included);
        * ``"recall"``, ``"precision"``: ``{label: (n_c,) float64}`` cumulative
          curves over that class's detections in sorted order;
        * ``"num_positives"``: ``{label: npos}`` (non-difficult boxes).

        Detections whose label is not in the ground truth are not evaluated.
    """
    if len(detections) != len(ground_truths):
        raise ValueError(
            f"{len(detections)} detection entries for {len(ground_truths)} images")

    # Per detection, concatenated in image order then within-image order (the
    # order of a devkit results file): label, score, best overlap and the
    # global index of the ground-truth box that gave it.
    det_labels, det_scores, det_ovmax, det_gt = [], [], [], []
    gt_labels_all, gt_difficult_all = [], []
    gt_offset = 0
    for det, gt in zip(detections, ground_truths):
        gt_boxes, gt_labels, gt_difficult = _gt_fields(gt)
        boxes, scores, labels = _det_fields(det)
        ovmax, jmax = _best_overlaps(boxes, labels, gt_boxes, gt_labels)
        det_labels.append(labels)
        det_scores.append(scores)
        det_ovmax.append(ovmax)
        det_gt.append(jmax + gt_offset)
        gt_labels_all.append(gt_labels)
        gt_difficult_all.append(gt_difficult)
        gt_offset += len(gt_labels)

    def cat(parts, dtype):
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

    det_labels = cat(det_labels, np.int64)
    det_scores = cat(det_scores, np.float64)
    det_ovmax = cat(det_ovmax, np.float64)
    det_gt = cat(det_gt, np.int64)
    gt_labels = cat(gt_labels_all, np.int64)
    gt_difficult = cat(gt_difficult_all, bool)

    classes = np.unique(gt_labels)
    aps, recalls, precisions, npositives = {}, {}, {}, {}
    for label in classes.tolist():
        npos = int(np.sum((gt_labels == label) & ~gt_difficult))
        idx = np.flatnonzero(det_labels == label)
        # Stable sort of -score: ties keep image order, then within-image order.
        idx = idx[np.argsort(-det_scores[idx], kind="stable")]
        ovmax, gt_index = det_ovmax[idx], det_gt[idx]
        hit = ovmax >= iou_threshold
        hit_difficult = hit & gt_difficult[np.where(hit, gt_index, 0)]
        candidate = np.flatnonzero(hit & ~hit_difficult)
        # A hit on a non-difficult box is a TP only for the first detection (in
        # sorted order) choosing that box; np.unique returns first occurrences.
        _, first = np.unique(gt_index[candidate], return_index=True)
        tp = np.zeros(len(idx))
        tp[candidate[first]] = 1
        fp = (~hit_difficult).astype(np.float64) - tp
        tp, fp = np.cumsum(tp), np.cumsum(fp)
        with np.errstate(divide="ignore", invalid="ignore"):
            recall = tp / npos
            precision = tp / (fp + tp)
        aps[label] = voc_ap(recall, precision, use_07_metric)
        recalls[label], precisions[label] = recall, precision
        npositives[label] = npos

    values = np.array(list(aps.values()), np.float64)
    finite = values[~np.isnan(values)]
    mean_ap = float(np.mean(finite)) if finite.size else float("nan")
    return {"map": mean_ap, "ap": aps, "recall": recalls, "precision": precisions,
            "num_positives": npositives}


def write_voc_results(detections: Sequence[Mapping], image_ids: Sequence, class_names:
                      Sequence[str], out_dir: str, prefix: str = "comp4_det_test_") -> list:
    """Write detections in the devkit / evaluation-server results format.

    One file ``<out_dir>/<prefix><class_name>.txt`` per class (written even
    when empty), one line per detection::

        <image_id> <score> <xmin> <ymin> <xmax> <ymax>

    with the boxes in VOC pixel coordinates (1-based inclusive), the score
    with 6 decimals and coordinates with 2.  Lines keep image order, then the
    order within each image, so the devkit's stable sort sees the same ties as
    :func:`evaluate_voc`.

    Args:
        detections: one mapping per image, as for :func:`evaluate_voc`.
        image_ids: ``(n,)`` VOC image ids (e.g. ``"000005"``), same order.
        class_names: class names; label ``l`` (1-based) is ``class_names[l - 1]``.
        out_dir: directory to write into (created if missing).
        prefix: file name prefix (``comp3`` / ``comp4`` per the devkit).

    Returns:
        The list of written paths, in ``class_names`` order.
    """
    if len(detections) != len(image_ids):
        raise ValueError(f"{len(detections)} detection entries for {len(image_ids)} image ids")
    os.makedirs(out_dir, exist_ok=True)
    lines = [[] for _ in class_names]
    for image_id, det in zip(image_ids, detections):
        boxes, scores, labels = _det_fields(det)
        for box, score, label in zip(boxes.tolist(), scores.tolist(), labels.tolist()):
            if not 1 <= label <= len(class_names):
                raise ValueError(
                    f"image {image_id}: label {label} outside 1..{len(class_names)}")
            lines[label - 1].append(
                f"{image_id} {score:.6f} {box[0]:.2f} {box[1]:.2f} {box[2]:.2f} {box[3]:.2f}\n")
    paths = []
    for name, class_lines in zip(class_names, lines):
        path = os.path.join(out_dir, f"{prefix}{name}.txt")
        with open(path, "w") as f:
            f.writelines(class_lines)
        paths.append(path)
    return paths
