"""``python -m ssd_keras evaluate``: COCO metrics of a saved detector on any COCO-format set.

::

    python -m ssd_keras evaluate --model runs/digits/model.keras \\
        --coco-json data/digits/annotations/test.json --images data/digits/images/test \\
        [--out metrics.json] [--score-threshold 0.01] [--max-detections 100]
    python -m ssd_keras evaluate --model runs/raccoon/model.keras --data raccoon/test.txt

The images are resized (bilinear) to the model's input size, detections are
mapped back to each image's source pixels (COCO convention: 0-based
continuous corners) and scored by pycocotools; the 12-line summary is printed
and, with ``--out``, the twelve numbers (``AP`` ... ``ARl``) plus per-category
AP are written as JSON.  With ``--coco-json``, labels ``1..K`` of the model
are the annotation file's categories in ascending id order (as
:func:`ssd_keras.data.coco.read_coco` assigns them).  With ``--data`` (any
format of :mod:`ssd_keras.data.sources`) the data's classes are matched to
the model's ``class_names`` by name (a data class the model lacks is a usage
error); a VOC XML folder is scored with COCO metrics against its own records
(:func:`ssd_keras.evaluation.coco.coco_ground_truth`).
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional

from ssd_keras.io_utils import write_json
from ssd_keras.usage import UsageError, choices


def _register_builders() -> None:
    """Import ssd_keras: it registers the layers, the model classes and every architecture."""
    import ssd_keras  # noqa: F401


def load_detector(path: str):
    """A saved :class:`~ssd_keras.models.base.DetectorModel` of any family (``.keras``)."""
    import keras

    if not os.path.isfile(path):
        raise UsageError(f"--model {path}: no such file")
    _register_builders()
    model = keras.saving.load_model(path, compile=False)
    if not hasattr(model, "detector_config"):
        raise UsageError(f"{path} is not an ssd_keras detector (no detector_config)")
    return model


def evaluate_coco_set(model, coco_json: str, image_dir: str, batch_size: int = 8,
                      print_summary: bool = True, **decode_overrides) -> dict:
    """COCO metrics of ``model`` on the set ``coco_json`` + ``image_dir``.

    Args:
        model: an SSD detector.
        coco_json: COCO annotation file.
        image_dir: folder of the images' ``file_name``.
        decode_overrides: ``score_threshold``, ``iou_threshold``,
            ``max_detections``, ``max_detections_per_class``.

    Returns:
        :func:`ssd_keras.evaluation.coco.evaluate_coco`'s dict (``AP`` ... ``ARl``,
        ``per_category``, ``summary``).
    """
    from ssd_keras.data.coco import read_coco
    from ssd_keras.evaluation.coco import evaluate_coco
    from ssd_keras.evaluation.runner import predict_records

    records = read_coco(coco_json, image_dir)
    k = model.detector_config.num_classes
    labels = {int(label) for r in records for label in r.labels}
    if labels and max(labels) > k:
        raise UsageError(f"{coco_json} has labels up to {max(labels)} but the model "
                         f"predicts {k} classes")
    detections = predict_records(model, records, batch_size=batch_size, **decode_overrides)
    return evaluate_coco(detections, coco_json, image_ids=[r.image_id for r in records],
                         print_summary=print_summary)


def evaluate_data(model, source, batch_size: int = 8, print_summary: bool = True,
                  **decode_overrides) -> dict:
    """COCO metrics of ``model`` on a :class:`~ssd_keras.data.sources.DataSource` (``--data``).

    The data's class names are mapped to the model's ``class_names`` by name
    (a model without names is taken to use the data's label order).  A COCO
    JSON source is scored against its file; other sources against their
    records (:func:`ssd_keras.evaluation.coco.coco_ground_truth`).

    Returns:
        :func:`ssd_keras.evaluation.coco.evaluate_coco`'s dict (``AP`` ... ``ARl``,
        ``per_category``, ``summary``).

    Raises:
        UsageError: a class of the data is not one of the model's, or the
            model has fewer classes than the data.
    """
    import numpy as np

    from ssd_keras.data.coco import coco_label_map
    from ssd_keras.data.sources import map_labels
    from ssd_keras.evaluation.coco import evaluate_coco
    from ssd_keras.evaluation.runner import evaluate_records, predict_records

    config = model.detector_config
    names = tuple(config.class_names or ())
    if not names:
        if len(source.class_names) > config.num_classes:
            raise UsageError(f"{source.path} has {len(source.class_names)} classes but the "
                             f"model predicts {config.num_classes}")
        names = tuple(source.class_names) + tuple(
            f"class_{i}" for i in range(len(source.class_names) + 1, config.num_classes + 1))
    missing = [n for n in source.class_names if n not in names]
    if missing:
        raise UsageError(f"class {missing[0]!r} of {source.path} is not one of the model's "
                         f"classes: {choices(names)}")
    records = map_labels(source.records, source.class_names, names)
    detections = predict_records(model, records, batch_size=batch_size, **decode_overrides)
    if source.coco_json is None:
        return evaluate_records(model, records, "coco", class_names=names,
                                detections=detections, print_summary=print_summary)
    labels = coco_label_map(source.coco_json)
    category_of = {labels.label_to_name[i]: c for i, c in labels.label_to_category_id.items()}
    label_to_category_id = {i: category_of[n] for i, n in enumerate(names, 1) if n in category_of}
    kept = []  # detections of model classes the file has no category for cannot be scored
    for det in detections:
        keep = np.isin(det["labels"], list(label_to_category_id))
        kept.append({**det, "boxes": det["boxes"][keep], "scores": det["scores"][keep],
                     "labels": det["labels"][keep]})
    return evaluate_coco(kept, source.coco_json, image_ids=[r.image_id for r in records],
                         label_to_category_id=label_to_category_id, print_summary=print_summary)


def run_evaluate(args: argparse.Namespace) -> int:
    """The ``evaluate`` command."""
    from ssd_keras.evaluation.coco import STAT_NAMES

    model = load_detector(args.model)
    overrides = decode_overrides(args, model.detector_config)
    if ("max_detections" in overrides
            and "max_detections_per_class" in model.detector_config.family.decode_options):
        overrides["max_detections_per_class"] = overrides["max_detections"]
    if args.data:
        from ssd_keras.data.sources import load_data, parse_class_names

        source = load_data(args.data, args.images, parse_class_names(args.class_names),
                           args.image_set)
        print(source.describe(), flush=True)
    elif not (args.coco_json and args.images):
        raise UsageError("give --data PATH, or --coco-json FILE with --images DIR")
    print(f"evaluate: {args.model} ({model.detector_config.name}, input "
          f"{tuple(model.detector_config.image_size)}) on {args.data or args.coco_json}",
          flush=True)
    if args.data:
        result = evaluate_data(model, source, batch_size=args.batch_size, **overrides)
    else:
        result = evaluate_coco_set(model, args.coco_json, args.images,
                                   batch_size=args.batch_size, **overrides)
    if args.out:
        metrics = {name: result[name] for name in STAT_NAMES}
        metrics["per_category"] = result["per_category"]
        write_json(args.out, metrics)
        print(f"evaluate: metrics -> {args.out}")
    return 0



def add_decode_arguments(parser) -> None:
    """``--score-threshold``, ``--iou-threshold``, ``--max-detections`` (default: the model's)."""
    parser.add_argument("--score-threshold", type=float,
                        help="decoding score threshold (model default)")
    parser.add_argument("--iou-threshold", type=float, help="NMS IoU threshold (model default)")
    parser.add_argument("--max-detections", type=int,
                        help="detections kept per image (model default)")


def decode_overrides(args, config=None) -> dict:
    """The decoding overrides the user gave (flags of :func:`add_decode_arguments`).

    With the model's ``config``, a flag its family's decoder has no setting for
    (``--iou-threshold`` for CenterNet, which has no NMS) is a :class:`UsageError`.
    """
    given = {"score_threshold": args.score_threshold, "iou_threshold": args.iou_threshold,
             "max_detections": args.max_detections}
    given = {k: v for k, v in given.items() if v is not None}
    if config is not None:
        known = config.family.decode_options
        for key in given:
            if key not in known:
                raise UsageError(f"--{key.replace('_', '-')}: a {config.head.kind} detector's "
                                 f"decoder has no such setting (it takes {choices(known)})")
    return given

def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``evaluate`` command."""
    p = subparsers.add_parser(
        "evaluate", help="COCO-evaluate a saved detector (.keras) on a labelled set",
        description="Run a saved SSD detector on the images of a labelled set (--data: VOC XML "
                    "folder, VOCdevkit or COCO JSON; or --coco-json) and print the pycocotools "
                    "summary.")
    p.add_argument("--model", required=True, help="saved detector (.keras)")
    p.add_argument("--data", metavar="PATH",
                   help="ground truth in any format: a folder (or .txt list) of VOC XML files, "
                        "a VOCdevkit year folder or a COCO JSON (detected)")
    p.add_argument("--class-names", metavar="A,B,C",
                   help="fix the data's class names (default: discovered)")
    p.add_argument("--image-set", help="ImageSets/Main name for a VOCdevkit --data folder")
    p.add_argument("--coco-json", help="COCO annotation file (ground truth)")
    p.add_argument("--images", help="folder of the annotated images (--coco-json; optional "
                                    "for --data)")
    p.add_argument("--out", help="write the metrics here (JSON)")
    add_decode_arguments(p)
    p.add_argument("--batch-size", type=int, default=8, help="images per forward pass")
    p.set_defaults(func=run_evaluate)
    return p


def main(argv: Optional[list] = None) -> int:
    """Run ``evaluate`` without the package-wide CLI."""
    from ssd_keras.__main__ import run_alone
    return run_alone(register, "evaluate", argv)


if __name__ == "__main__":
    sys.exit(main())
