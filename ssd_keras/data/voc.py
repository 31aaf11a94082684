"""Pascal VOC reader: a ``VOC2007``/``VOC2012`` folder -> :class:`Record` list.

Layout read (``root`` is the ``VOCxxxx`` folder)::

    root/ImageSets/Main/<image_set>.txt   one image id per line
    root/Annotations/<id>.xml             objects, sizes
    root/JPEGImages/<id>.jpg

Boxes are returned exactly as written in the XML: VOC 1-based inclusive pixel
corners ``[xmin, ymin, xmax, ymax]`` (convention ``"voc"``); normalising is
:func:`ssd_keras.data.records.normalized_boxes`' job, not the reader's.

Quirks handled: person-layout ``<part>`` elements carry their own ``<bndbox>``
inside an ``<object>`` (only the object's direct ``<bndbox>`` counts); a
missing ``<difficult>`` means 0; coordinates may be written as floats
(``273.0``).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Callable, Iterable, Sequence

import numpy as np
from defusedxml import DefusedXmlException
from defusedxml import ElementTree as SafeET

from ssd_keras.data.records import Record

# Label i + 1 is VOC_CLASSES[i]; label 0 is background.
VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)

# (file, message) -> None.  Readers given one report annotation problems through it
# and skip the bad object/file instead of raising (the dataset checker collects them).
# Shared with the COCO reader.
ProblemCallback = Callable[[str, str], None]


@dataclasses.dataclass
class VocAnnotation:
    """One parsed VOC XML file, before class names become labels.

    Attributes:
        width, height: ``<size>`` in pixels.
        names: ``m`` class names as written.
        boxes: ``(m, 4)`` float64 ``[xmin, ymin, xmax, ymax]``, VOC 1-based pixels.
        difficult: ``(m,)`` bool.
        filename: ``<filename>`` as written (``None`` when absent).
        path: ``<path>`` as written (``None`` when absent; labelImg writes the
            author's own absolute path, which rarely exists elsewhere).
        folder: ``<folder>`` as written (``None`` when absent).
    """

    width: int
    height: int
    names: list
    boxes: np.ndarray
    difficult: np.ndarray
    filename: str | None = None
    path: str | None = None
    folder: str | None = None


def _text(element, tag: str, xml_path: str, context: str) -> str:
    child = element.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise ValueError(f"{xml_path}: {context} has no <{tag}>")
    return child.text.strip()


def _number(text: str, xml_path: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{xml_path}: {what} is not a number: {text!r}") from None


def _optional_text(root, tag: str) -> str | None:
    child = root.find(tag)
    text = None if child is None or child.text is None else child.text.strip()
    return text or None


def parse_voc_xml(xml_path: str, require_size: bool = True) -> VocAnnotation:
    """Parse one VOC annotation file (with ``defusedxml``).

    Args:
        xml_path: the ``.xml`` file.
        require_size: a missing ``<size>`` is an error; with ``False`` it reads
            as ``0 x 0`` (the caller takes the size from the image).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: malformed XML or missing/non-numeric fields; the message
            starts with ``xml_path``.
    """
    xml_path = os.fspath(xml_path)
    try:
        root = SafeET.parse(xml_path).getroot()
    except SafeET.ParseError as error:
        raise ValueError(f"{xml_path}: malformed XML ({error})") from None
    except DefusedXmlException as error:
        raise ValueError(f"{xml_path}: refused unsafe XML ({error!r})") from None
    except FileNotFoundError:
        raise FileNotFoundError(f"{xml_path}: annotation file not found") from None
    size = root.find("size")
    if size is None and require_size:
        raise ValueError(f"{xml_path}: no <size> element")
    if size is None:
        width = height = 0
    else:
        width = int(_number(_text(size, "width", xml_path, "<size>"), xml_path, "width"))
        height = int(_number(_text(size, "height", xml_path, "<size>"), xml_path, "height"))

    names, boxes, difficult = [], [], []
    # findall("object") / find("bndbox") match direct children only, so the
    # <bndbox> of a person-layout <part> is never mistaken for the object's box.
    for index, obj in enumerate(root.findall("object")):
        context = f"object {index}"
        name = _text(obj, "name", xml_path, context)
        bndbox = obj.find("bndbox")
        if bndbox is None:
            raise ValueError(f"{xml_path}: {context} ({name}) has no <bndbox>")
        box = [_number(_text(bndbox, key, xml_path, f"{context} <bndbox>"), xml_path,
                       f"{context} {key}")
               for key in ("xmin", "ymin", "xmax", "ymax")]
        flag = obj.find("difficult")
        is_difficult = flag is not None and flag.text is not None and flag.text.strip() not in (
            "", "0", "0.0")
        names.append(name)
        boxes.append(box)
        difficult.append(is_difficult)
    return VocAnnotation(width, height, names,
                         np.asarray(boxes, np.float64).reshape(-1, 4),
                         np.asarray(difficult, bool),
                         filename=_optional_text(root, "filename"),
                         path=_optional_text(root, "path"),
                         folder=_optional_text(root, "folder"))


def read_image_ids(root: str, image_set: str) -> list:
    """Ids listed in ``root/ImageSets/Main/<image_set>.txt`` (first token per line)."""
    path = os.path.join(root, "ImageSets", "Main", f"{image_set}.txt")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: image set file not found")
    with open(path, encoding="utf-8") as handle:
        return [line.split()[0] for line in handle if line.strip()]


def report_or_raise(error: Exception, file: str, on_problem: ProblemCallback | None) -> None:
    """Hand a reader's ``"<file>: <message>"`` error to ``on_problem`` (prefix removed), or raise it."""
    if on_problem is None:
        raise error
    on_problem(file, str(error).removeprefix(f"{file}: "))


def raise_problem(file: str, message: str) -> None:
    """The default :data:`ProblemCallback`: ``ValueError("<file>: <message>")``."""
    raise ValueError(f"{file}: {message}")


def annotation_record(annotation: VocAnnotation, xml_path: str, image_path: str, image_id,
                      label_of: dict, report: ProblemCallback) -> Record:
    """One parsed XML file -> :class:`Record` (convention ``"voc"``), as every VOC reader builds it.

    Objects whose name is not in ``label_of`` (``{name: label}``) are dropped
    after ``report(xml_path, "unknown class name ...")`` (which may raise).
    """
    keep = []
    for index, name in enumerate(annotation.names):
        if name in label_of:
            keep.append(index)
        else:
            report(xml_path, f"unknown class name {name!r} (object {index})"
                             f"{did_you_mean(name, label_of)}")
    return Record(
        image_path=image_path,
        image_id=image_id,
        width=annotation.width,
        height=annotation.height,
        boxes=annotation.boxes[keep],
        labels=[label_of[annotation.names[i]] for i in keep],
        difficult=annotation.difficult[keep],
        convention="voc",
        extra={"annotation_file": xml_path},
    )


def one_edit_apart(a: str, b: str) -> bool:
    """``a`` and ``b`` differ by one insertion, deletion, substitution or swap of neighbours,
    or only by letter case."""
    if a == b:
        return False
    if a.lower() == b.lower():
        return True
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1
                                  and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]])
    short, long_ = sorted((a, b), key=len)
    i = next((k for k, (x, y) in enumerate(zip(short, long_)) if x != y), len(short))
    return short[i:] == long_[i + 1:]


def did_you_mean(name: str, known) -> str:
    """``" — did you mean 'x'?"`` for the first of ``known`` one edit from ``name``, else ``""``."""
    close = [k for k in known if one_edit_apart(name, k)]
    return f" — did you mean {close[0]!r}?" if close else ""


def read_voc(root: str, image_set: str, class_names: Sequence[str] = VOC_CLASSES, *,
             on_problem: ProblemCallback | None = None) -> list:
    """Read one VOC image set.

    Args:
        root: a ``VOC2007``/``VOC2012`` folder.
        image_set: name of a file in ``ImageSets/Main`` (``"trainval"``, ``"test"``...).
        class_names: label ``i + 1`` is ``class_names[i]``.
        on_problem: when given, called as ``on_problem(file, message)`` for a
            missing/malformed XML file (the image is skipped) or an unknown class
            name (the object is dropped) instead of raising.

    Returns:
        One :class:`Record` per id (convention ``"voc"``): boxes ``(m, 4)``
        1-based pixel corners as written, labels ``(m,)`` in ``1..len(class_names)``,
        ``difficult`` ``(m,)``, ``image_id`` the file stem, ``width``/``height``
        from ``<size>``, ``extra["annotation_file"]`` the XML path.

    Raises:
        FileNotFoundError: missing image-set or XML file (without ``on_problem``).
        ValueError: malformed XML or unknown class name, naming the file.
    """
    root = os.fspath(root)
    report = on_problem or raise_problem
    label_of = {name: label for label, name in enumerate(class_names, start=1)}
    records = []
    for image_id in read_image_ids(root, image_set):
        xml_path = os.path.join(root, "Annotations", f"{image_id}.xml")
        try:
            annotation = parse_voc_xml(xml_path)
        except (ValueError, FileNotFoundError) as error:
            report_or_raise(error, xml_path, on_problem)
            continue
        records.append(annotation_record(
            annotation, xml_path, os.path.join(root, "JPEGImages", f"{image_id}.jpg"),
            image_id, label_of, report))
    return records


def read_voc_union(specs: Iterable, class_names: Sequence[str] = VOC_CLASSES, *,
                   on_problem: ProblemCallback | None = None) -> list:
    """Concatenate several image sets: ``specs`` is ``[(root, image_set), ...]``."""
    records = []
    for root, image_set in specs:
        records.extend(read_voc(root, image_set, class_names, on_problem=on_problem))
    return records


def voc_07_12_specs(devkit_root: str) -> list:
    """The standard "07+12" training union: VOC2007 trainval + VOC2012 trainval."""
    return [(os.path.join(devkit_root, "VOC2007"), "trainval"),
            (os.path.join(devkit_root, "VOC2012"), "trainval")]


def read_voc_07_12(devkit_root: str, class_names: Sequence[str] = VOC_CLASSES, *,
                   on_problem: ProblemCallback | None = None) -> list:
    """Records of VOC2007 trainval + VOC2012 trainval under ``devkit_root`` (``VOCdevkit``)."""
    return read_voc_union(voc_07_12_specs(devkit_root), class_names, on_problem=on_problem)
