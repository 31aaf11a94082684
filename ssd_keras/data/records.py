"""The record: one annotated image, as every reader returns it.

A record keeps boxes exactly as the source file wrote them, in pixels, and says
which pixel convention the source uses.  The conversion to the one internal
convention of the model -- normalised corners ``[xmin, ymin, xmax, ymax]`` in
``[0, 1]`` relative to the image width/height -- happens here and nowhere else
(:func:`normalized_boxes`), and its inverse for writing results back
(:func:`pixel_boxes`).

Pixel conventions
-----------------
``"voc"``
    Pascal VOC: 1-based inclusive pixel indices.  A box covering the whole
    image is ``[1, 1, W, H]``; its width in the devkit's sense is
    ``xmax - xmin + 1``.  Normalised: ``((xmin - 1) / W, (ymin - 1) / H,
    xmax / W, ymax / H)``.
``"coco"``
    COCO and our synthetic digits: 0-based continuous coordinates; ``bbox``
    ``[x, y, w, h]`` becomes corners ``[x, y, x + w, y + h]``.  Normalised:
    corners divided by ``W`` and ``H``.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

CONVENTIONS = ("voc", "coco")


@dataclasses.dataclass
class Record:
    """One image and its objects.

    Attributes:
        image_path: path of the image file.
        image_id: the dataset's id (VOC: file stem such as ``"000005"``; COCO: int id).
        width, height: image size in pixels as annotated.
        boxes: ``(m, 4)`` float32 ``[xmin, ymin, xmax, ymax]`` in source pixels.
        labels: ``(m,)`` int32 contiguous class labels ``1..K`` (0 is background).
        difficult: ``(m,)`` bool; VOC "difficult" flag (all False for COCO).
        convention: ``"voc"`` or ``"coco"`` (see module docstring).
        crowd_boxes: ``(c, 4)`` float32 COCO ``iscrowd`` boxes, kept out of the
            training targets (empty for VOC).
        extra: free-form source details (e.g. COCO category mapping id).

    Records also support ``record["boxes"]`` item access.
    """

    image_path: str
    image_id: Any
    width: int
    height: int
    boxes: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray
    convention: str = "voc"
    crowd_boxes: np.ndarray = dataclasses.field(
        default_factory=lambda: np.zeros((0, 4), np.float32))
    extra: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        self.boxes = np.asarray(self.boxes, np.float32).reshape(-1, 4)
        self.labels = np.asarray(self.labels, np.int32).reshape(-1)
        self.difficult = np.asarray(self.difficult, bool).reshape(-1)
        self.crowd_boxes = np.asarray(self.crowd_boxes, np.float32).reshape(-1, 4)
        if self.convention not in CONVENTIONS:
            raise ValueError(
                f"{self.image_path}: unknown box convention {self.convention!r}; "
                f"expected one of {CONVENTIONS}")
        m = len(self.boxes)
        if len(self.labels) != m or len(self.difficult) != m:
            raise ValueError(
                f"{self.image_path}: {m} boxes but {len(self.labels)} labels and "
                f"{len(self.difficult)} difficult flags")

    def __getitem__(self, key):
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None

    def keys(self):
        return [f.name for f in dataclasses.fields(self)]

    @property
    def num_objects(self) -> int:
        return len(self.boxes)


def normalized_boxes(record: Record) -> np.ndarray:
    """``(m, 4)`` float32 normalised ``[xmin, ymin, xmax, ymax]`` of a record's boxes."""
    return to_normalized(record.boxes, record.width, record.height, record.convention)


def to_normalized(boxes, width, height, convention) -> np.ndarray:
    """Source-pixel corners ``(m, 4)`` -> normalised corners ``(m, 4)`` (float32)."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    scale = np.array([width, height, width, height], np.float32)
    if convention == "voc":
        shift = np.array([1.0, 1.0, 0.0, 0.0], np.float32)
        return (boxes - shift) / scale
    if convention == "coco":
        return boxes / scale
    raise ValueError(f"unknown box convention {convention!r}; expected one of {CONVENTIONS}")


def pixel_boxes(boxes, width, height, convention) -> np.ndarray:
    """Inverse of :func:`to_normalized`: normalised corners -> source-pixel corners."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    scale = np.array([width, height, width, height], np.float32)
    if convention == "voc":
        shift = np.array([1.0, 1.0, 0.0, 0.0], np.float32)
        return boxes * scale + shift
    if convention == "coco":
        return boxes * scale
    raise ValueError(f"unknown box convention {convention!r}; expected one of {CONVENTIONS}")
