"""Run a detector over records and score it: records -> detections -> VOC / COCO metrics.

``predict_records`` reads and resizes the images with the evaluation pipeline
(:func:`ssd_keras.data.pipeline.make_eval_dataset`: record order, bilinear
resize to ``config.image_size``, RGB ``[0, 255]``), runs the model and decodes
with its family's decoder (``config.family.decode``: SSD's NMS, CenterNet's
peaks) and the config's settings, then maps the normalised boxes back to each
record's source pixels in the record's own convention (VOC 1-based, COCO
0-based; see :mod:`ssd_keras.data.records`), using the annotated
``width``/``height`` -- the same sizes the training targets were normalised with.
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence


METRICS = ("voc07", "voc", "coco")


def _predict_fn(model, config, overrides):
    import tensorflow as tf

    family = config.family

    @tf.function(reduce_retracing=True)
    def predict(images):
        return family.decode(model(images, training=False), config, **overrides)
    return predict


def predict_records(model, records: Sequence, batch_size: int = 8, **decode_overrides) -> list:
    """Detections for each record, in its source pixels.

    Args:
        model: a :class:`~ssd_keras.models.base.DetectorModel` (or any model
            whose ``detector_config`` describes its outputs).
        records: :class:`~ssd_keras.data.records.Record` list.
        batch_size: images per forward pass.
        decode_overrides: the family's decoding overrides (SSD:
            ``score_threshold``, ``iou_threshold``, ``max_detections``,
            ``max_detections_per_class``; CenterNet: ``score_threshold``,
            ``max_detections``, ``peak_pool``).

    Returns:
        One dict per record: ``boxes`` ``(k, 4)`` float32 ``[xmin, ymin, xmax,
        ymax]`` in the record's pixel convention, ``scores`` ``(k,)``,
        ``labels`` ``(k,)`` int32 ``1..K``.
    """
    from ssd_keras.data.pipeline import make_eval_dataset
    from ssd_keras.data.records import pixel_boxes
    from ssd_keras.families.base import detections_to_numpy

    records = list(records)
    if not records:
        return []
    config = model.detector_config
    predict = _predict_fn(model, config, decode_overrides)
    detections = []
    for images, meta in make_eval_dataset(records, config, batch_size):
        decoded = detections_to_numpy(predict(images))
        for index, det in zip(meta["image_index"].numpy().tolist(), decoded):
            record = records[index]
            det["boxes"] = pixel_boxes(det["boxes"], record.width, record.height,
                                       record.convention)
            detections.append(det)
    return detections


def class_names_of(model, class_names=None):
    """``class_names`` or the model config's names, else ``class_1 .. class_K``."""
    if class_names is not None:
        return list(class_names)
    config = getattr(model, "detector_config", None)
    if config is not None and config.class_names:
        return list(config.class_names)
    k = config.num_classes if config is not None else 0
    return [f"class_{i}" for i in range(1, k + 1)]


def evaluate_records(model, records: Sequence, metric: str = "voc07", coco_gt=None,
                     class_names: Optional[Sequence[str]] = None, batch_size: int = 8,
                     detections: Optional[Sequence[Mapping]] = None,
                     print_summary: bool = False) -> dict:
    """Score ``model`` on ``records``.

    Args:
        metric: ``"voc07"`` (VOC2007 11-point AP, IoU 0.5), ``"voc"`` (VOC2010+
            area AP) -- both with the devkit's rules and the records as ground
            truth, difficult flags included -- or ``"coco"`` (pycocotools on
            ``coco_gt``: the annotation JSON path or a ``COCO`` object, the
            records' ``image_id`` being its COCO ids; without ``coco_gt`` the
            records themselves, see :func:`~ssd_keras.evaluation.coco.coco_ground_truth`).
        class_names: names of labels ``1..K`` (default: the config's).
        detections: precomputed :func:`predict_records` output (skips inference).

    Returns:
        ``{"map": float, "per_class": {name: AP}, "metric": metric, ...}`` plus
        the underlying evaluator's output (VOC: ``ap``, ``recall``,
        ``precision``, ``num_positives``; COCO: ``AP``, ``AP50`` ... ``ARl``,
        ``per_category``, ``summary``).  For COCO ``map`` is ``AP`` (@[.5:.95]).
        Classes without ground truth are absent (VOC) or -1 (COCO).
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    records = list(records)
    if detections is None:
        detections = predict_records(model, records, batch_size)
    names = class_names_of(model, class_names)
    if metric in ("voc07", "voc"):
        from ssd_keras.evaluation.voc import evaluate_voc

        result = evaluate_voc(detections, records, use_07_metric=metric == "voc07")
        per_class = {(names[label - 1] if 0 < label <= len(names) else f"class_{label}"): ap
                     for label, ap in sorted(result["ap"].items())}
        return {**result, "metric": metric, "map": float(result["map"]), "per_class": per_class}
    from ssd_keras.evaluation.coco import coco_ground_truth, evaluate_coco, to_coco_pixels

    image_ids = [r.image_id for r in records]
    if coco_gt is None:  # e.g. a VOC XML folder: the records are the ground truth
        coco_gt, image_ids = coco_ground_truth(records, names)
        detections = [{**det, "boxes": to_coco_pixels(det["boxes"], record)}
                      for det, record in zip(detections, records)]
    result = evaluate_coco(detections, coco_gt, image_ids=image_ids,
                           print_summary=print_summary)
    return {**result, "metric": metric, "map": float(result["AP"]),
            "per_class": dict(result["per_category"])}
