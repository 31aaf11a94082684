"""Pictures and tables of images, ground truth and detections (what the notebooks show).

Boundaries: images are ``(B, H, W, 3)`` RGB ``[0, 255]`` (e.g. the first batch of
:func:`ssd_keras.data.pipeline.make_eval_dataset`, already at the model's
input size); boxes are normalised corners ``[xmin, ymin, xmax, ymax]`` --
what :meth:`ssd_keras.models.base.SSDModel.detect` returns and what
:func:`ssd_keras.data.records.normalized_boxes` makes of a record's pixels --
so the same boxes draw on an image of any size.  Labels are ``1..K``; drawing
goes through ``keras.visualization.plot_bounding_box_gallery``.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import pandas as pd


def padded_boxes(boxes: Sequence, labels: Sequence, scores: Optional[Sequence] = None) -> dict:
    """Per-image box lists -> the dense dict ``keras.visualization`` draws.

    Args:
        boxes: one ``(k_i, 4)`` array per image.
        labels: one ``(k_i,)`` array per image.
        scores: optional ``(k_i,)`` per image (drawn as ``label | 0.87``).

    Returns:
        ``{"boxes": (B, M, 4) float32, "labels": (B, M) int32}`` (+ ``"confidences"``),
        padded with label ``-1`` (not drawn).
    """
    width = max([len(np.reshape(b, (-1, 4))) for b in boxes] + [1])
    out_boxes = np.zeros((len(boxes), width, 4), np.float32)
    out_labels = np.full((len(boxes), width), -1, np.int32)
    out_scores = np.zeros((len(boxes), width), np.float32)
    for i, (b, lab) in enumerate(zip(boxes, labels)):
        b = np.reshape(np.asarray(b, np.float32), (-1, 4))
        out_boxes[i, :len(b)] = b
        out_labels[i, :len(b)] = np.asarray(lab, np.int32).reshape(-1)
        if scores is not None:
            out_scores[i, :len(b)] = np.asarray(scores[i], np.float32).reshape(-1)
    result = {"boxes": out_boxes, "labels": out_labels}
    if scores is not None:
        result["confidences"] = out_scores
    return result


def _confident(detections: Sequence[dict], min_score: float) -> list:
    return [{key: np.asarray(d[key])[np.asarray(d["scores"]) >= min_score]
             for key in ("boxes", "scores", "labels")} for d in detections]


def plot_detections(images, detections: Optional[Sequence[dict]] = None,
                    records: Optional[Sequence] = None, class_names: Optional[Sequence[str]] = None,
                    min_score: float = 0.5, out_path: Optional[str] = None, cols: Optional[int] = None,
                    scale: float = 4.0, **kwargs):
    """A gallery: ground truth of ``records`` and ``detections`` with score >= ``min_score``.

    Args:
        images: ``(B, H, W, 3)`` RGB ``[0, 255]``.
        detections: ``model.detect(images)`` output (normalised corners).
        records: the images' records (ground truth, drawn in the "true" colour).
        class_names: names of labels ``1..K``.
        out_path: file stem; ``<stem>.png`` written when given.
        cols: gallery columns (default: up to 4).
        scale: inches per gallery cell.
        kwargs: passed to ``keras.visualization.plot_bounding_box_gallery``.

    Returns:
        ``(figure, paths)``.
    """
    import keras

    from ssd_keras.data.records import normalized_boxes
    from ssd_keras.reporting import _pyplot, _save

    images = np.asarray(images, np.float32)
    n = len(images)
    cols = cols or min(n, 4)
    rows = -(-n // cols)
    mapping = {i + 1: name for i, name in enumerate(class_names or [])}
    # keras' gallery draws every grid cell: fill the last row with blank (white) cells
    blank = rows * cols - n
    images = np.concatenate([images, np.full((blank,) + images.shape[1:], 255.0, np.float32)])
    empty = [np.zeros((0, 4), np.float32)] * blank
    y_true = y_pred = None
    if records is not None:
        y_true = padded_boxes([normalized_boxes(r) for r in records] + empty,
                              [r.labels for r in records] + [[]] * blank)
    if detections is not None:
        kept = _confident(detections, min_score)
        y_pred = padded_boxes([d["boxes"] for d in kept] + empty,
                              [d["labels"] for d in kept] + [[]] * blank,
                              [d["scores"] for d in kept] + [[]] * blank)
    kwargs.setdefault("font_scale", max(images.shape[1] / 600.0, 0.35))
    kwargs.setdefault("line_thickness", 1 if images.shape[1] < 400 else 2)
    plt = _pyplot()
    keras.visualization.plot_bounding_box_gallery(
        images, "rel_xyxy", y_true=y_true, y_pred=y_pred, value_range=(0, 255),
        class_mapping=mapping, rows=rows, cols=cols, scale=scale, show=False,
        legend=records is not None and detections is not None, **kwargs)
    fig = plt.gcf()  # the gallery draws into a new current figure and leaves it open
    paths = _save(fig, out_path, formats=("png",)) if out_path else []
    plt.close(fig)
    return fig, paths


def detections_table(detections: Sequence[dict], image_ids: Optional[Sequence] = None,
                     class_names: Optional[Sequence[str]] = None, min_score: float = 0.5,
                     image_size: Optional[Sequence[int]] = None) -> pd.DataFrame:
    """One row per detection with score >= ``min_score``, best first within each image.

    Columns: ``image, label, class, score, xmin, ymin, xmax, ymax`` -- boxes
    normalised, or in pixels of an ``image_size = (height, width)`` image.
    """
    ids = list(image_ids) if image_ids is not None else list(range(len(detections)))
    scale = (np.ones(4, np.float32) if image_size is None else
             np.array([image_size[1], image_size[0], image_size[1], image_size[0]], np.float32))
    rows = []
    for image_id, det in zip(ids, _confident(detections, min_score)):
        for i in np.argsort(-det["scores"], kind="stable"):
            label = int(det["labels"][i])
            name = (class_names[label - 1] if class_names and 0 < label <= len(class_names)
                    else str(label))
            box = det["boxes"][i] * scale
            rows.append({"image": image_id, "label": label, "class": name,
                         "score": float(det["scores"][i]), "xmin": float(box[0]),
                         "ymin": float(box[1]), "xmax": float(box[2]), "ymax": float(box[3])})
    columns = ["image", "label", "class", "score", "xmin", "ymin", "xmax", "ymax"]
    return pd.DataFrame(rows, columns=columns)


def detection_counts(detections: Sequence[dict], image_ids: Optional[Sequence] = None,
                     records: Optional[Sequence] = None, min_score: float = 0.5) -> pd.DataFrame:
    """Per image: ground-truth objects (if ``records``), detections >= ``min_score``, best score."""
    ids = list(image_ids) if image_ids is not None else list(range(len(detections)))
    rows = []
    for k, (image_id, det) in enumerate(zip(ids, _confident(detections, min_score))):
        row = {"image": image_id}
        if records is not None:
            row["objects"] = len(records[k].labels)
        row["detections"] = len(det["scores"])
        row["best score"] = float(np.max(detections[k]["scores"], initial=0.0))
        rows.append(row)
    return pd.DataFrame(rows)


