"""COCO reader: an ``instances_*.json`` file + image folder -> :class:`Record` list.

Boxes: COCO ``bbox`` ``[x, y, w, h]`` (0-based continuous pixels) become corners
``[x, y, x + w, y + h]`` (convention ``"coco"``); no normalising here.

Labels: category ids (non-contiguous, 1..90 in COCO 2017) map to contiguous
labels ``1..K`` in sorted category-id order; label 0 is background.  The mapping
is :func:`coco_label_map`'s :class:`CocoLabels`, which evaluation uses to write
detections back with the original category ids.

``iscrowd`` annotations go to ``record.crowd_boxes``, never into ``boxes``;
images without annotations are kept with empty boxes.
"""
from __future__ import annotations

import json
import os
from typing import NamedTuple

import numpy as np

from ssd_keras.data.records import Record
from ssd_keras.data.voc import ProblemCallback, raise_problem


class CocoLabels(NamedTuple):
    """Contiguous label <-> COCO category mapping.

    Unpacks as ``label_to_category_id, label_to_name = coco_label_map(path)``.

    Attributes:
        label_to_category_id: ``{1: 1, 2: 2, ..., 80: 90}`` for COCO 2017.
        label_to_name: ``{1: "person", ...}``.
    """

    label_to_category_id: dict
    label_to_name: dict

    @property
    def category_id_to_label(self) -> dict:
        return {cat: label for label, cat in self.label_to_category_id.items()}

    @property
    def class_names(self) -> tuple:
        """Names in label order: ``class_names[label - 1]``."""
        return tuple(self.label_to_name[label] for label in sorted(self.label_to_name))

    @property
    def num_classes(self) -> int:
        """``K``, not counting background."""
        return len(self.label_to_category_id)


def load_coco_json(annotation_file) -> dict:
    """Load an annotation file; a dict passes through unchanged.

    Raises:
        FileNotFoundError / ValueError naming the file (malformed JSON, no ``images``).
    """
    if isinstance(annotation_file, dict):
        return annotation_file
    path = os.fspath(annotation_file)
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: annotation file not found") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: malformed JSON ({error})") from None
    if not isinstance(data, dict) or "images" not in data:
        raise ValueError(f"{path}: not a COCO annotation file (no 'images' list)")
    return data


def coco_label_map(annotation_file) -> CocoLabels:
    """Label mapping of an annotation file (path or already-loaded dict)."""
    data = load_coco_json(annotation_file)
    categories = sorted(data.get("categories", []), key=lambda c: c["id"])
    return CocoLabels(
        label_to_category_id={label: c["id"] for label, c in enumerate(categories, start=1)},
        label_to_name={label: c["name"] for label, c in enumerate(categories, start=1)},
    )


def read_coco(annotation_file, image_dir: str, *,
              on_problem: ProblemCallback | None = None) -> list:
    """Read a COCO detection annotation file.

    Args:
        annotation_file: path of ``instances_*.json``, or the loaded dict (to
            avoid parsing a large file twice when :func:`coco_label_map` is also needed).
        image_dir: folder holding the images' ``file_name``.
        on_problem: when given, annotations naming an unknown image or category
            are reported as ``on_problem(file, message)`` and skipped instead of raising.

    Returns:
        One :class:`Record` per image, in file order (convention ``"coco"``):
        ``image_id`` the int COCO id, boxes ``(m, 4)`` pixel corners, labels
        ``(m,)`` in ``1..K``, ``difficult`` all False, ``crowd_boxes`` ``(c, 4)``,
        ``extra["annotation_file"]`` the JSON path (or ``"<dict>"``).
    """
    source = "<dict>" if isinstance(annotation_file, dict) else os.fspath(annotation_file)
    report = on_problem or raise_problem
    data = load_coco_json(annotation_file)
    labels = coco_label_map(data)
    label_of = labels.category_id_to_label

    by_image = {image["id"]: ([], [], []) for image in data["images"]}  # boxes, labels, crowd
    for ann in data.get("annotations", []):
        slot = by_image.get(ann.get("image_id"))
        if slot is None:
            report(source, f"annotation {ann.get('id')} refers to unknown image id "
                           f"{ann.get('image_id')!r}")
            continue
        x, y, w, h = (float(v) for v in ann["bbox"])
        corners = [x, y, x + w, y + h]
        if ann.get("iscrowd", 0):
            slot[2].append(corners)
            continue
        label = label_of.get(ann.get("category_id"))
        if label is None:
            report(source, f"annotation {ann.get('id')} (image {ann.get('image_id')}) has "
                           f"unknown category id {ann.get('category_id')!r}")
            continue
        slot[0].append(corners)
        slot[1].append(label)

    records = []
    for image in data["images"]:
        boxes, box_labels, crowd = by_image[image["id"]]
        records.append(Record(
            image_path=os.path.join(image_dir, image["file_name"]),
            image_id=image["id"],
            width=int(image["width"]),
            height=int(image["height"]),
            boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
            labels=box_labels,
            difficult=np.zeros(len(box_labels), bool),
            convention="coco",
            crowd_boxes=np.asarray(crowd, np.float32).reshape(-1, 4),
            extra={"annotation_file": source},
        ))
    return records
