"""``python -m ssd_keras evaluate``: COCO metrics of a saved detector on any COCO-format set.

::

    python -m ssd_keras evaluate --model runs/digits/model.keras \\
        --coco-json data/digits/annotations/test.json --images data/digits/images/test \\
        [--out metrics.json] [--score-threshold 0.01] [--max-detections 100]

The images are resized (bilinear) to the model's input size, detections are
mapped back to each image's source pixels (COCO convention: 0-based
continuous corners) and scored by pycocotools; the 12-line summary is printed
and, with ``--out``, the twelve numbers (``AP`` ... ``ARl``) plus per-category
AP are written as JSON.  Labels ``1..K`` of the model are the annotation
file's categories in ascending id order (as :func:`ssd_keras.data.coco.read_coco`
assigns them).
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional

from ssd_keras.io_utils import write_json


def _register_builders() -> None:
    """Import ssd_keras: it registers the layers, SSDModel and every architecture."""
    import ssd_keras  # noqa: F401


def load_detector(path: str):
    """A saved :class:`~ssd_keras.models.base.SSDModel` (``.keras``)."""
    import keras

    _register_builders()
    model = keras.saving.load_model(path, compile=False)
    if not hasattr(model, "detector_config"):
        raise SystemExit(f"evaluate: {path} is not an ssd_keras detector (no detector_config)")
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
        raise SystemExit(f"evaluate: {coco_json} has labels up to {max(labels)} but the model "
                         f"predicts {k} classes")
    detections = predict_records(model, records, batch_size=batch_size, **decode_overrides)
    return evaluate_coco(detections, coco_json, image_ids=[r.image_id for r in records],
                         print_summary=print_summary)


def run_evaluate(args: argparse.Namespace) -> int:
    """The ``evaluate`` command."""
    from ssd_keras.evaluation.coco import STAT_NAMES

    model = load_detector(args.model)
    overrides = {"score_threshold": args.score_threshold, "iou_threshold": args.iou_threshold,
                 "max_detections": args.max_detections}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if "max_detections" in overrides:
        overrides["max_detections_per_class"] = overrides["max_detections"]
    print(f"evaluate: {args.model} ({model.detector_config.name}, input "
          f"{tuple(model.detector_config.image_size)}) on {args.coco_json}", flush=True)
    result = evaluate_coco_set(model, args.coco_json, args.images, batch_size=args.batch_size,
                               **overrides)
    if args.out:
        metrics = {name: result[name] for name in STAT_NAMES}
        metrics["per_category"] = result["per_category"]
        write_json(args.out, metrics)
        print(f"evaluate: metrics -> {args.out}")
    return 0


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``evaluate`` command."""
    p = subparsers.add_parser(
        "evaluate", help="COCO-evaluate a saved detector (.keras) on a COCO-format set",
        description="Run a saved SSD detector on the images of a COCO annotation file and print "
                    "the pycocotools summary.")
    p.add_argument("--model", required=True, help="saved detector (.keras)")
    p.add_argument("--coco-json", required=True, help="COCO annotation file (ground truth)")
    p.add_argument("--images", required=True, help="folder of the annotated images")
    p.add_argument("--out", help="write the metrics here (JSON)")
    p.add_argument("--score-threshold", type=float, help="decoding score threshold (model default)")
    p.add_argument("--iou-threshold", type=float, help="NMS IoU threshold (model default)")
    p.add_argument("--max-detections", type=int, help="detections kept per image (model default)")
    p.add_argument("--batch-size", type=int, default=8, help="images per forward pass")
    p.set_defaults(func=run_evaluate)
    return p


def main(argv: Optional[list] = None) -> int:
    """Run ``evaluate`` without the package-wide CLI."""
    from ssd_keras.__main__ import run_alone
    return run_alone(register, "evaluate", argv)


if __name__ == "__main__":
    sys.exit(main())
