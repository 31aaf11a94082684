"""``python -m ssd_keras predict``: a saved detector on your own images -> drawings + JSON.

::

    python -m ssd_keras predict --model R/model.keras --images my_photos/ --out predictions/ \\
        [--score-threshold 0.3]

Every image in ``--images`` (``.jpg``, ``.jpeg``, ``.png``, ``.bmp``; sorted by
name; not recursive) is resized (bilinear) to the model's input exactly as
``evaluate`` does (:func:`ssd_keras.evaluation.runner.predict_records`), and
its detections scoring above ``--score-threshold`` are

* drawn on the image at its own size: ``OUT/<name>.png`` (through
  :func:`ssd_keras.visualize.plot_detections`),
* listed in ``OUT/detections.json``: per image ``file``, ``width``, ``height``
  and ``detections`` (best first), each ``{"class", "label", "score", "box"}``
  with ``label`` 1-based in the order of the model's class names and ``box``
  ``[xmin, ymin, xmax, ymax]`` in source-image pixels, 0-based continuous
  (COCO convention: a box over the whole image is ``[0, 0, width, height]``).

Files that cannot be decoded (truncated, not an image) are skipped, one line each.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
DEFAULT_SCORE_THRESHOLD = 0.3
BOX_FORMAT = "[xmin, ymin, xmax, ymax] in source-image pixels, 0-based continuous (COCO)"


def image_records(folder: str, report=print) -> list:
    """One box-less :class:`~ssd_keras.data.records.Record` per readable image in ``folder``.

    Records use the COCO pixel convention and the decoded image size; bad files
    are skipped after ``report("<file>: <problem>")``.
    """
    from PIL import Image

    from ssd_keras.data.check import check_image_file
    from ssd_keras.data.records import Record
    from ssd_keras.usage import UsageError

    if not os.path.isdir(folder):
        raise UsageError(f"--images {folder}: no such folder")
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith(IMAGE_SUFFIXES))
    if not names:
        raise UsageError(f"--images {folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
    records = []
    for name in names:
        path = os.path.join(folder, name)
        problems = check_image_file(path)
        if problems:
            report(f"predict: skipped {problems[0]}")
            continue
        with Image.open(path) as image:
            width, height = image.size
        records.append(Record(image_path=path, image_id=name, width=width, height=height,
                              boxes=np.zeros((0, 4)), labels=[], difficult=[],
                              convention="coco"))
    return records


def detections_document(records: Sequence, detections: Sequence[dict],
                        class_names: Sequence[str]) -> list:
    """Per image ``{"file", "width", "height", "detections": [...]}`` (see module docstring)."""
    images = []
    for record, det in zip(records, detections):
        order = np.argsort(-det["scores"], kind="stable")
        images.append({
            "file": os.path.basename(record.image_path), "width": int(record.width),
            "height": int(record.height),
            "detections": [{"class": class_names[int(det["labels"][i]) - 1],
                            "label": int(det["labels"][i]),
                            "score": round(float(det["scores"][i]), 5),
                            "box": [round(float(v), 2) for v in det["boxes"][i]]}
                           for i in order]})
    return images


def draw_detections(record, det: dict, class_names: Sequence[str], out_path: str,
                    min_score: float) -> str:
    """Draw ``det`` (source pixels, COCO convention) on ``record``'s image; write ``<out_path>.png``."""
    from PIL import Image

    from ssd_keras.visualize import plot_detections

    with Image.open(record.image_path) as image:
        pixels = np.asarray(image.convert("RGB"), np.float32)
    h, w = pixels.shape[:2]
    normalised = dict(det, boxes=np.asarray(det["boxes"], np.float32).reshape(-1, 4)
                      / np.array([w, h, w, h], np.float32))
    # about the source resolution (reporting saves at 120 dpi), at most 12 inches
    inches = min(max(h, w) / 120.0, 12.0)
    _, paths = plot_detections(pixels[None], [normalised], class_names=class_names,
                               min_score=min_score, out_path=out_path, cols=1, scale=inches)
    return paths[0]


def predict_folder(model, images: str, out_dir: str,
                   score_threshold: float = DEFAULT_SCORE_THRESHOLD, batch_size: int = 8,
                   report=print) -> dict:
    """Detect on every image of ``images``; write drawings and ``detections.json`` to ``out_dir``.

    Returns:
        The JSON document written: ``{"model", "score_threshold", "box_format",
        "class_names", "images": [...]}``.
    """
    from ssd_keras.evaluation.runner import class_names_of, predict_records
    from ssd_keras.io_utils import write_json

    records = image_records(images, report)
    names = class_names_of(model)
    detections = predict_records(model, records, batch_size=batch_size,
                                 score_threshold=score_threshold)
    os.makedirs(out_dir, exist_ok=True)
    stems = [os.path.splitext(os.path.basename(r.image_path))[0] for r in records]
    for record, det, stem in zip(records, detections, stems):
        name = stem if stems.count(stem) == 1 else os.path.basename(record.image_path)
        draw_detections(record, det, names, os.path.join(out_dir, name), score_threshold)
    document = {"model": getattr(model, "name", None), "score_threshold": score_threshold,
                "box_format": BOX_FORMAT, "class_names": names,
                "images": detections_document(records, detections, names)}
    write_json(os.path.join(out_dir, "detections.json"), document)
    return document


def run_predict(args: argparse.Namespace) -> int:
    """The ``predict`` command."""
    from ssd_keras.evaluation.cli import load_detector

    model = load_detector(args.model)
    document = predict_folder(model, args.images, args.out, score_threshold=args.score_threshold,
                              batch_size=args.batch_size)
    found = sum(len(image["detections"]) for image in document["images"])
    print(f"predict: {len(document['images'])} images, {found} detections above "
          f"{args.score_threshold} -> {args.out}/ (drawings, detections.json)")
    return 0


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``predict`` command."""
    p = subparsers.add_parser(
        "predict", help="draw a detector's detections on your images and write them as JSON",
        description="Run a saved detector (.keras) on a folder of images; write one drawing "
                    "per image and detections.json (boxes in source-image pixels).")
    p.add_argument("--model", required=True, help="saved detector (.keras)")
    p.add_argument("--images", required=True, help="folder of images (.jpg, .png, .bmp)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--score-threshold", type=float, default=DEFAULT_SCORE_THRESHOLD,
                   help=f"keep detections with at least this score [{DEFAULT_SCORE_THRESHOLD}]")
    p.add_argument("--batch-size", type=int, default=8, help="images per forward pass")
    p.set_defaults(func=run_predict)
    return p


def main(argv: Optional[list] = None) -> int:
    """Run ``predict`` without the package-wide CLI."""
    from ssd_keras.__main__ import run_alone
    return run_alone(register, "predict", argv)


if __name__ == "__main__":
    sys.exit(main())
