"""Small generated datasets in VOC and COCO layout (real JPEG files, real XML/JSON).

Used by the tests and by the notebooks' quick mode (``SSD_KERAS_QUICK=1``); a
real VOC tree comes from ``python -m ssd_keras download``.

Images are solid grey with each object's box filled in a class-dependent colour,
so a detector can in principle learn them.  Everything is deterministic in ``seed``.

VOC quirks written into the *first* image of a tree when ``quirks=True``
(``QUIRK_OBJECTS``, VOC 1-based pixels, for a 500x375 image):

* a ``person`` whose ``<part>`` (head) carries its own ``<bndbox>``,
* a ``dog`` with float coordinates (``"48.0"``),
* a ``car`` without a ``<difficult>`` element,
* a difficult ``bottle``.
"""
from __future__ import annotations

import json
import os

import cv2
import numpy as np

from ssd_keras.data.voc import VOC_CLASSES as VOC_NAMES

# name, [xmin, ymin, xmax, ymax] (as written), difficult (None: element omitted),
# part box (person layout) or None, write coordinates as floats
QUIRK_OBJECTS = (
    ("person", (100, 50, 220, 300), 0, (130, 60, 170, 110), False),
    ("dog", (273, 48, 400, 200), 0, None, True),
    ("car", (20, 220, 160, 360), None, None, False),
    ("bottle", (420, 250, 470, 370), 1, None, False),
)


def _colour(label: int) -> tuple:
    rng = np.random.default_rng(label)
    return tuple(int(v) for v in rng.integers(40, 255, size=3))


def _write_jpeg(path: str, width: int, height: int, boxes, labels, zero_based: bool) -> None:
    image = np.full((height, width, 3), 110, np.uint8)
    for (x0, y0, x1, y1), label in zip(boxes, labels):
        shift = 0 if zero_based else 1
        cv2.rectangle(image, (int(x0) - shift, int(y0) - shift),
                      (int(np.ceil(x1)) - 1, int(np.ceil(y1)) - 1), _colour(label), -1)
    if not cv2.imwrite(path, image, [cv2.IMWRITE_JPEG_QUALITY, 90]):
        raise OSError(f"could not write {path}")


def _coord(value, as_float: bool) -> str:
    return f"{float(value):.1f}" if as_float else str(int(value))


def _voc_xml(filename: str, width: int, height: int, objects) -> str:
    lines = ["<annotation>", "  <folder>VOC</folder>", f"  <filename>{filename}</filename>",
             "  <size>", f"    <width>{width}</width>", f"    <height>{height}</height>",
             "    <depth>3</depth>", "  </size>", "  <segmented>0</segmented>"]
    for name, box, difficult, part, as_float in objects:
        lines += ["  <object>", f"    <name>{name}</name>", "    <pose>Unspecified</pose>",
                  "    <truncated>0</truncated>"]
        if difficult is not None:
            lines.append(f"    <difficult>{int(difficult)}</difficult>")
        lines.append("    <bndbox>")
        lines += [f"      <{key}>{_coord(v, as_float)}</{key}>"
                  for key, v in zip(("xmin", "ymin", "xmax", "ymax"), box)]
        lines.append("    </bndbox>")
        if part is not None:
            lines += ["    <part>", "      <name>head</name>", "      <bndbox>"]
            lines += [f"        <{key}>{v}</{key}>"
                      for key, v in zip(("xmin", "ymin", "xmax", "ymax"), part)]
            lines += ["      </bndbox>", "    </part>"]
        lines.append("  </object>")
    lines.append("</annotation>")
    return "\n".join(lines) + "\n"


def _random_objects(rng, width: int, height: int, count: int, names=VOC_NAMES):
    objects = []
    for _ in range(count):
        w = int(rng.integers(width // 8, width // 2))
        h = int(rng.integers(height // 8, height // 2))
        x0 = int(rng.integers(1, width - w))
        y0 = int(rng.integers(1, height - h))
        objects.append((names[int(rng.integers(len(names)))], (x0, y0, x0 + w, y0 + h),
                        0, None, False))
    return objects


def voc_image_id(year: str, index: int) -> str:
    """Id style of the year: ``"000001"`` (2007) or ``"2012_000001"``."""
    return f"{index:06d}" if year == "2007" else f"{year}_{index:06d}"


def make_voc_tree(root, num_images: int = 6, image_set: str = "trainval",
                  size: tuple = (500, 375), seed: int = 0, quirks: bool = True,
                  year: str = "2007", start_index: int = 1) -> str:
    """Write ``root/VOC<year>/{Annotations,ImageSets/Main,JPEGImages}``; return that folder.

    Ids are ``start_index .. start_index + num_images - 1`` in the year's style
    (:func:`voc_image_id`).  ``size`` is ``(width, height)``.  With ``quirks`` the
    first image holds :data:`QUIRK_OBJECTS` (meant for the default 500x375 size);
    the others hold 1-3 random objects.  Calling again with another ``image_set``
    and ``start_index`` adds a second split to the same tree; the image-set
    file is appended to.
    """
    voc = os.path.join(os.fspath(root), f"VOC{year}")
    for sub in ("Annotations", os.path.join("ImageSets", "Main"), "JPEGImages"):
        os.makedirs(os.path.join(voc, sub), exist_ok=True)
    rng = np.random.default_rng(seed)
    width, height = size
    ids = []
    for n in range(num_images):
        image_id = voc_image_id(year, start_index + n)
        if quirks and n == 0:
            objects = list(QUIRK_OBJECTS)
        else:
            objects = _random_objects(rng, width, height, int(rng.integers(1, 4)))
        with open(os.path.join(voc, "Annotations", f"{image_id}.xml"), "w") as handle:
            handle.write(_voc_xml(f"{image_id}.jpg", width, height, objects))
        _write_jpeg(os.path.join(voc, "JPEGImages", f"{image_id}.jpg"), width, height,
                    [o[1] for o in objects], [VOC_NAMES.index(o[0]) + 1 for o in objects],
                    zero_based=False)
        ids.append(image_id)
    with open(os.path.join(voc, "ImageSets", "Main", f"{image_set}.txt"), "a") as handle:
        handle.write("".join(f"{i}\n" for i in ids))
    return voc


# Deliberately non-contiguous and listed out of order: labels follow sorted ids.
COCO_CATEGORIES = (
    {"id": 7, "name": "train", "supercategory": "vehicle"},
    {"id": 1, "name": "person", "supercategory": "person"},
    {"id": 90, "name": "toothbrush", "supercategory": "indoor"},
    {"id": 3, "name": "car", "supercategory": "vehicle"},
)


def make_coco_dataset(root, num_images: int = 4, size: tuple = (320, 240),
                      seed: int = 0) -> tuple:
    """Write ``root/images/*.jpg`` and ``root/annotations/instances.json``.

    Image ids are ``100 + n``; the first image's annotations are fixed:
    a car (category 3) ``bbox [10, 20, 50, 40]``, a toothbrush (90)
    ``bbox [100.5, 60.25, 30, 30]`` and an ``iscrowd`` person ``bbox [5, 5, 100, 80]``.
    The last image has no annotations.  Others get 1-2 random boxes.

    Returns:
        ``(json_path, image_dir)``.
    """
    root = os.fspath(root)
    image_dir = os.path.join(root, "images")
    os.makedirs(image_dir, exist_ok=True)
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    rng = np.random.default_rng(seed)
    width, height = size
    ids = sorted(c["id"] for c in COCO_CATEGORIES)
    images, annotations = [], []
    for n in range(num_images):
        image_id = 100 + n
        file_name = f"{image_id:012d}.jpg"
        if n == 0:
            anns = [(3, [10, 20, 50, 40], 0), (90, [100.5, 60.25, 30, 30], 0),
                    (1, [5, 5, 100, 80], 1)]
        elif n == num_images - 1 and num_images > 1:
            anns = []
        else:
            anns = []
            for _ in range(int(rng.integers(1, 3))):
                w = float(rng.integers(width // 8, width // 2))
                h = float(rng.integers(height // 8, height // 2))
                x = float(rng.integers(0, width - int(w)))
                y = float(rng.integers(0, height - int(h)))
                anns.append((ids[int(rng.integers(len(ids)))], [x, y, w, h], 0))
        for category, bbox, crowd in anns:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": category, "bbox": bbox, "iscrowd": crowd,
                                "area": bbox[2] * bbox[3]})
        corners = [(x, y, x + w, y + h) for _, (x, y, w, h), crowd in anns if not crowd]
        _write_jpeg(os.path.join(image_dir, file_name), width, height, corners,
                    [ids.index(c) + 1 for c, _, crowd in anns if not crowd], zero_based=True)
        images.append({"id": image_id, "file_name": file_name, "width": width,
                       "height": height})
    json_path = os.path.join(root, "annotations", "instances.json")
    with open(json_path, "w") as handle:
        json.dump({"images": images, "annotations": annotations,
                   "categories": list(COCO_CATEGORIES)}, handle)
    return json_path, image_dir
