"""COCO box detection metrics through pycocotools' ``COCOeval``.

Detections come in as one dict per image with corner boxes in COCO pixel
coordinates (0-based continuous ``[xmin, ymin, xmax, ymax]``) and contiguous
labels ``1..K``; they go to pycocotools as results ``[x, y, w, h]`` with the
dataset's own category ids.  The twelve ``COCOeval.stats`` numbers come back
under names (``AP``, ``AP50``, ... ``ARl``), with per-category AP@[.5:.95] and
the summary text block exactly as pycocotools prints it.

``COCO.loadRes`` crashes on an empty results list, so a model with no
detection at all is evaluated against an empty results object built directly;
``COCOeval`` then reports 0 where the ground truth has objects and -1 where an
area range has none, as it would for any other miss.
"""
from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Mapping, Sequence

import numpy as np

# COCOeval.stats order, and for each entry what ``summarize()`` prints:
# (name, is_ap, IoU label, area range, maxDets).
STATS = (
    ("AP", True, "0.50:0.95", "all", 100),
    ("AP50", True, "0.50", "all", 100),
    ("AP75", True, "0.75", "all", 100),
    ("APs", True, "0.50:0.95", "small", 100),
    ("APm", True, "0.50:0.95", "medium", 100),
    ("APl", True, "0.50:0.95", "large", 100),
    ("AR1", False, "0.50:0.95", "all", 1),
    ("AR10", False, "0.50:0.95", "all", 10),
    ("AR100", False, "0.50:0.95", "all", 100),
    ("ARs", False, "0.50:0.95", "small", 100),
    ("ARm", False, "0.50:0.95", "medium", 100),
    ("ARl", False, "0.50:0.95", "large", 100),
)
STAT_NAMES = tuple(entry[0] for entry in STATS)


def format_summary(stats) -> str:
    """The 12-line block ``COCOeval.summarize()`` prints, from its 12 numbers.

    Args:
        stats: the 12 values in ``COCOeval.stats`` order, as a sequence or as
            a mapping with the keys of :data:`STAT_NAMES` (e.g. the dict
            :func:`evaluate_coco` returns, or one reloaded from metrics.json).

    Returns:
        The text, lines joined by ``"\\n"`` without a trailing newline, e.g.
        `` Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.653``.
    """
    if isinstance(stats, Mapping):
        values = [stats[name] for name in STAT_NAMES]
    else:
        values = list(stats)
    if len(values) != len(STATS):
        raise ValueError(f"expected {len(STATS)} COCO stats, got {len(values)}")
    # Same template as pycocotools' COCOeval.summarize._summarize.
    template = " {:<18} {} @[ IoU={:<9} | area={:>6s} | maxDets={:>3d} ] = {:0.3f}"
    lines = []
    for (_, is_ap, iou, area, max_dets), value in zip(STATS, values):
        title = "Average Precision" if is_ap else "Average Recall"
        kind = "(AP)" if is_ap else "(AR)"
        lines.append(template.format(title, kind, iou, area, max_dets, float(value)))
    return "\n".join(lines)


def _load_coco(coco_gt):
    """A ``pycocotools.coco.COCO`` from a path or an existing object (quietly)."""
    from pycocotools.coco import COCO

    if isinstance(coco_gt, COCO):
        return coco_gt
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(coco_gt))


def coco_category_mapping(coco_gt) -> tuple[dict, dict]:
    """Contiguous labels of a COCO annotation file, as our COCO reader assigns them.

    Label ``i`` (1-based) is the ``i``-th category id in ascending order.

    Args:
        coco_gt: path of a COCO annotation JSON or a ``pycocotools.coco.COCO``.

    Returns:
        ``(label_to_category_id, label_to_name)``, both ``{int label: ...}``.
    """
    coco = _load_coco(coco_gt)
    cat_ids = sorted(coco.getCatIds())
    cats = coco.loadCats(cat_ids)
    label_to_category_id = {i + 1: int(c) for i, c in enumerate(cat_ids)}
    label_to_name = {i + 1: cat["name"] for i, cat in enumerate(cats)}
    return label_to_category_id, label_to_name


def detections_to_coco_results(detections: Sequence[Mapping], image_ids: Sequence,
                               label_to_category_id: Mapping) -> list:
    """Per-image detections -> COCO results list (``[x, y, w, h]`` boxes).

    Args:
        detections: one mapping per image with ``boxes`` ``(k, 4)`` COCO pixel
            ``[xmin, ymin, xmax, ymax]``, ``scores`` ``(k,)`` and ``labels``
            ``(k,)`` contiguous ``1..K``.
        image_ids: ``(n,)`` COCO image ids in the same order.
        label_to_category_id: ``{label: category_id}``.

    Returns:
        ``[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}, ...]``
        with plain Python numbers (JSON-serialisable).
    """
    if len(detections) != len(image_ids):
        raise ValueError(f"{len(detections)} detection entries for {len(image_ids)} image ids")
    results = []
    for image_id, det in zip(image_ids, detections):
        boxes = np.asarray(det["boxes"], np.float64).reshape(-1, 4)
        scores = np.asarray(det["scores"], np.float64).reshape(-1)
        labels = np.asarray(det["labels"], np.int64).reshape(-1)
        xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
        image_id = int(image_id) if isinstance(image_id, (int, np.integer)) else image_id
        for box, score, label in zip(xywh.tolist(), scores.tolist(), labels.tolist()):
            try:
                category_id = label_to_category_id[label]
            except KeyError:
                raise ValueError(
                    f"image {image_id}: label {label} has no COCO category id") from None
            results.append({"image_id": image_id, "category_id": int(category_id),
                            "bbox": box, "score": score})
    return results


def _empty_results(coco):
    """A results ``COCO`` with no annotation (``COCO.loadRes([])`` would crash)."""
    from pycocotools.coco import COCO

    res = COCO()
    res.dataset["images"] = list(coco.dataset["images"])
    res.dataset["categories"] = copy.deepcopy(coco.dataset.get("categories", []))
    res.dataset["annotations"] = []
    with contextlib.redirect_stdout(io.StringIO()):
        res.createIndex()
    return res


def to_coco_pixels(boxes, record) -> np.ndarray:
    """``(m, 4)`` corners in ``record``'s pixel convention -> COCO 0-based continuous corners."""
    from ssd_keras.data.records import pixel_boxes, to_normalized

    if record.convention == "coco":
        return np.asarray(boxes, np.float32).reshape(-1, 4)
    normalized = to_normalized(boxes, record.width, record.height, record.convention)
    return pixel_boxes(normalized, record.width, record.height, "coco")


def coco_ground_truth(records: Sequence, class_names: Sequence[str]):
    """A ``pycocotools.coco.COCO`` ground truth built from records (any reader, any convention).

    For data without a COCO file (a VOC XML folder): image ``i`` gets id
    ``i + 1``; boxes go to COCO pixels with :func:`to_coco_pixels` (VOC's
    1-based inclusive ``[1, W]`` becomes ``[0, W]``), ``area`` is the box area
    (COCO's own files use the mask area); VOC ``difficult`` objects become
    ``iscrowd`` regions, which COCOeval neither rewards nor penalises.
    ``crowd_boxes`` carry no class and are left out: for records read from a
    COCO file, evaluate against that file.  Category ``k`` is label ``k``,
    named ``class_names[k - 1]``.

    Returns:
        ``(coco, image_ids)``: the ``COCO`` object and the ids in record order.
    """
    from pycocotools.coco import COCO

    images, annotations = [], []
    for index, record in enumerate(records):
        image_id = index + 1
        images.append({"id": image_id, "width": int(record.width), "height": int(record.height),
                       "file_name": str(record.image_path)})
        boxes = to_coco_pixels(record.boxes, record)
        for box, label, hard in zip(boxes, record.labels, record.difficult):
            x0, y0, x1, y1 = (float(v) for v in box)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": int(label), "bbox": [x0, y0, x1 - x0, y1 - y0],
                                "area": (x1 - x0) * (y1 - y0), "iscrowd": int(hard)})
    coco = COCO()
    coco.dataset = {"images": images, "annotations": annotations,
                    "categories": [{"id": k, "name": name}
                                   for k, name in enumerate(class_names, start=1)]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco, [image["id"] for image in images]


def evaluate_coco(detections: Sequence[Mapping], coco_gt, image_ids=None,
                  label_to_category_id: Mapping | None = None, print_summary: bool = True,
                  iou_type: str = "bbox") -> dict:
    """COCO detection metrics (pycocotools ``COCOeval``) for per-image detections.

    Args:
        detections: one mapping per image, in ``image_ids`` order, with
            ``boxes`` ``(k, 4)`` ``[xmin, ymin, xmax, ymax]`` in COCO pixel
            coordinates (0-based continuous), ``scores`` ``(k,)`` and
            ``labels`` ``(k,)`` contiguous ``1..K``.
        coco_gt: path of the COCO annotation JSON, or a ``pycocotools.coco.COCO``.
        image_ids: the evaluated COCO image ids; only these images are scored.
            Default: all of ``coco_gt``'s image ids, sorted.
        label_to_category_id: ``{label: category_id}``; default: label ``i`` ->
            the ``i``-th sorted category id (see :func:`coco_category_mapping`).
        print_summary: print the 12-line pycocotools summary.
        iou_type: only ``"bbox"`` is supported.

    Returns:
        ``{"AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100",
        "ARs", "ARm", "ARl"}`` as floats (``COCOeval.stats``; -1 where no
        ground truth), ``"per_category"`` ``{category name: AP@[.5:.95]}``
        (area all, 100 detections; -1 where the category has no ground
        truth) and ``"summary"``: the text ``summarize()`` prints.
    """
    from pycocotools.cocoeval import COCOeval

    if iou_type != "bbox":
        raise ValueError(f"only iou_type='bbox' is supported, got {iou_type!r}")
    coco = _load_coco(coco_gt)
    if image_ids is None:
        image_ids = sorted(coco.getImgIds())
    image_ids = list(image_ids)
    if label_to_category_id is None:
        label_to_category_id, _ = coco_category_mapping(coco)

    results = detections_to_coco_results(detections, image_ids, label_to_category_id)
    quiet = io.StringIO()  # loadRes/evaluate/accumulate chatter
    with contextlib.redirect_stdout(quiet):
        coco_dt = coco.loadRes(results) if results else _empty_results(coco)
        coco_eval = COCOeval(coco, coco_dt, iou_type)
        coco_eval.params.imgIds = image_ids
        coco_eval.evaluate()
        coco_eval.accumulate()
    summary_out = io.StringIO()
    with contextlib.redirect_stdout(summary_out):
        coco_eval.summarize()
    summary = summary_out.getvalue().rstrip("\n")
    if print_summary:
        print(summary)

    metrics = {name: float(value) for name, value in zip(STAT_NAMES, coco_eval.stats)}
    # Detectron's per-class AP: precision[T, R, K, area=all, maxDets=100].
    precision = coco_eval.eval["precision"][:, :, :, 0, -1]
    per_category = {}
    for k, cat_id in enumerate(coco_eval.params.catIds):
        values = precision[:, :, k]
        values = values[values > -1]
        name = coco.loadCats([cat_id])[0]["name"]
        per_category[name] = float(np.mean(values)) if values.size else -1.0
    metrics["per_category"] = per_category
    metrics["summary"] = summary
    return metrics
