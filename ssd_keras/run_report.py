"""What :func:`ssd_keras.training.train` leaves in the run folder at the end of a run.

With validation records, the end of every run writes::

    run_dir/metrics.json                 COCO numbers on the validation data (AP ... ARl,
                                         per_category, step, images, collapse)
    run_dir/plots/loss_history.{svg,png} training / validation loss, with and without weight decay
    run_dir/plots/Loss_*.{svg,png}       one figure per loss part
    run_dir/plots/detections.png         a gallery of detections on a few validation images

and warns when the predictions collapsed (:func:`prediction_collapse`).  It
only reads the model and the run's log, and calls the evaluation
(:func:`ssd_keras.evaluation.runner.evaluate_records`), the plots
(:mod:`ssd_keras.reporting`) and the gallery (:mod:`ssd_keras.visualize`);
``metrics.json`` has the keys the experiment tables
(:func:`ssd_keras.reporting.experiment_tables`) read.
"""
from __future__ import annotations

import os
import sys
import warnings
from typing import Optional, Sequence

import numpy as np

GALLERY_IMAGES = 6
GALLERY_MIN_SCORE = 0.3


class PredictionCollapseWarning(UserWarning):
    """The detector predicts nearly the same box and score on every image."""


def prediction_collapse(detections: Sequence[dict], box_tolerance: float = 0.02,
                        score_tolerance: float = 0.02, min_images: int = 3) -> dict:
    """Whether a detector's best detection is nearly the same on every image.

    A trained detector's best box follows the objects, which differ from image
    to image; a collapsed one (e.g. a head whose features batch norm squashed)
    returns one fixed box with one fixed score.  Numerically: over the images
    with at least one detection, take each image's highest-scoring box
    (normalised corners, so image sizes do not matter) and score; the
    predictions *collapsed* when the standard deviation over images of every
    box coordinate is below ``box_tolerance`` (a fraction of the image side)
    **and** that of the score is below ``score_tolerance``.  Fewer than
    ``min_images`` such images: not judged (``collapsed`` False).

    Args:
        detections: one dict per image with ``boxes`` ``(k, 4)`` normalised
            ``[xmin, ymin, xmax, ymax]`` and ``scores`` ``(k,)``.

    Returns:
        ``{"collapsed": bool, "images": n, "box_std": float, "score_std": float,
        "box": [4 floats] mean best box, "score": mean best score}``
        (NaN statistics when no image has a detection).
    """
    best_boxes, best_scores = [], []
    for det in detections:
        scores = np.asarray(det["scores"], np.float64).reshape(-1)
        if not len(scores):
            continue
        i = int(np.argmax(scores))
        best_boxes.append(np.asarray(det["boxes"], np.float64).reshape(-1, 4)[i])
        best_scores.append(scores[i])
    n = len(best_scores)
    if not n:
        return {"collapsed": False, "images": 0, "box_std": float("nan"),
                "score_std": float("nan"), "box": [float("nan")] * 4, "score": float("nan")}
    boxes, scores = np.stack(best_boxes), np.asarray(best_scores)
    box_std = float(boxes.std(axis=0).max())
    score_std = float(scores.std())
    collapsed = n >= min_images and box_std < box_tolerance and score_std < score_tolerance
    return {"collapsed": bool(collapsed), "images": n, "box_std": box_std,
            "score_std": score_std, "box": boxes.mean(axis=0).round(4).tolist(),
            "score": float(scores.mean())}


def _normalised(detections, records):
    from ssd_keras.data.records import to_normalized
    return [{**det, "boxes": to_normalized(det["boxes"], r.width, r.height, r.convention)}
            for det, r in zip(detections, records)]


def write_run_report(model, run_dir: str, records: Sequence, coco_gt=None,
                     class_names: Optional[Sequence[str]] = None, step: Optional[int] = None,
                     gallery_images: int = GALLERY_IMAGES, print_fn=print) -> dict:
    """Write ``metrics.json``, the loss plots and the detection gallery of a finished run.

    Args:
        model: the trained :class:`~ssd_keras.models.base.SSDModel`.
        run_dir: the run folder (its ``logs/train_log.csv`` is plotted when present).
        records: validation records (ground truth; the images are read from them).
        coco_gt: their COCO annotation file/object when they come from one (else the
            records themselves are the ground truth).
        step: the model's step (stored in ``metrics.json``).
        gallery_images: how many validation images the gallery shows (0: none).
        print_fn: one-line messages (``None``: silent); the collapse warning also
            goes through :mod:`warnings`.

    Returns:
        ``{"metrics": dict, "collapse": dict, "paths": {what: path(s)}}``.
    """
    from ssd_keras import reporting
    from ssd_keras.evaluation.coco import STAT_NAMES
    from ssd_keras.evaluation.runner import class_names_of, evaluate_records, predict_records
    from ssd_keras.io_utils import write_json
    from ssd_keras.training.run_folder import run_paths

    say = print_fn or (lambda *a, **k: None)
    records = list(records)
    paths = run_paths(run_dir)
    names = class_names_of(model, class_names)
    detections = predict_records(model, records)
    result = evaluate_records(model, records, metric="coco", coco_gt=coco_gt,
                              class_names=names, detections=detections)
    collapse = prediction_collapse(_normalised(detections, records))
    metrics = {name: float(result[name]) for name in STAT_NAMES}
    metrics.update(per_category=result["per_category"], step=step, images=len(records),
                   collapse=collapse)
    write_json(paths["metrics_json"], metrics)
    out = {"metrics": paths["metrics_json"]}
    say(f"metrics: COCO AP {metrics['AP']:.3f}, AP50 {metrics['AP50']:.3f} on "
        f"{len(records)} validation images -> {paths['metrics_json']}")
    if collapse["collapsed"]:
        message = (f"{run_dir}: the predictions collapsed -- the best box is nearly the same on "
                   f"all {collapse['images']} validation images (box {collapse['box']}, score "
                   f"{collapse['score']:.3f}; spread {collapse['box_std']:.3g} of the image side, "
                   f"score spread {collapse['score_std']:.3g}): the detector has not learnt "
                   f"the objects (too few steps, a learning rate too low or too high, or "
                   f"batch-norm statistics that do not match the features)")
        warnings.warn(message, PredictionCollapseWarning, stacklevel=2)
        if print_fn:
            print(f"WARNING: {message}", file=sys.stderr, flush=True)

    plots = paths["plots"]
    if os.path.exists(paths["train_log"]) and os.path.getsize(paths["train_log"]) > 0:
        import pandas as pd
        if len(pd.read_csv(paths["train_log"])):
            out["loss_history"] = reporting.plot_loss_history(
                run_dir, os.path.join(plots, "loss_history"))[1]
            out["loss_components"] = reporting.plot_loss_components(run_dir, plots)
    if gallery_images:
        out["gallery"] = _gallery(model, records[:gallery_images], names,
                                  os.path.join(plots, "detections"))
        say(f"plots: loss curves and a gallery of {min(gallery_images, len(records))} "
            f"validation images -> {plots}")
    return {"metrics": metrics, "collapse": collapse, "paths": out}


def _gallery(model, records, class_names, out_stem):
    """Detections (score >= :data:`GALLERY_MIN_SCORE`) and ground truth on ``records``."""
    from ssd_keras.data.pipeline import make_eval_dataset
    from ssd_keras.visualize import plot_detections

    cols = min(3, len(records))   # plot_detections fills a partial last row with blanks
    images = np.concatenate([batch.numpy() for batch, _ in
                             make_eval_dataset(records, model.detector_config, len(records))])
    detections = model.detect(images)
    return plot_detections(images, detections, records=records, class_names=class_names,
                           min_score=GALLERY_MIN_SCORE, out_path=out_stem, cols=cols)[1]
