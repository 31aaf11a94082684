"""A folder of Pascal VOC XML files (labelImg, CVAT, Roboflow) -> :class:`Record` list.

What annotation tools export, unlike the VOCdevkit layout of
:mod:`ssd_keras.data.voc`: any number of ``*.xml`` files in one folder, no
``ImageSets/``, any class names, and the images either beside the XML files
or in another folder (labelImg's ``annotations/`` + ``images/``; Roboflow puts
both in one folder).  Instead of a folder, a text file listing XML files (one
per line, relative to the list file) selects a subset without copying, e.g. a
train / test split::

    LC_ALL=C ls raccoon/annotations/*.xml | head -n 160 > train.txt

Image lookup, in order (the first that exists wins):

1. ``<filename>`` in ``images_dir`` (the ``images`` argument), then its base name there;
2. ``<filename>`` beside the XML file, then in the sibling folders ``../images``,
   ``../JPEGImages`` and ``../<folder>`` (labelImg's layout);
3. ``<path>`` as written (labelImg stores the author's absolute path, which
   rarely exists on another machine, so it is only a late fallback);
4. the XML's (then ``<filename>``'s) stem with a common image extension in those folders.

When none exists the record keeps the first candidate, which the checker
reports as a missing image.

Boxes are returned as written: VOC 1-based inclusive pixel corners
``[xmin, ymin, xmax, ymax]`` (convention ``"voc"``), exactly like
:func:`ssd_keras.data.voc.read_voc` (the same XML parser and record builder).
A missing ``<size>`` (or 0 x 0) is read from the image header.

Labels: ``class_names`` given -> label ``i + 1`` is ``class_names[i]`` and an
unknown name is a problem naming the XML file; not given -> the sorted set of
names found in the files.
"""
from __future__ import annotations

import glob
import os
from typing import NamedTuple, Sequence

from ssd_keras.data.voc import (ProblemCallback, annotation_record, parse_voc_xml,
                                raise_problem, report_or_raise)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".JPG", ".JPEG", ".PNG", ".BMP")
_SIBLING_IMAGE_FOLDERS = ("images", "JPEGImages", "Images", "imgs")


class VocFolder(NamedTuple):
    """What :func:`read_voc_folder` returns; unpacks as ``records, class_names = ...``.

    Attributes:
        records: one :class:`~ssd_keras.data.records.Record` per readable XML
            file, in file-name order (convention ``"voc"``).
        class_names: names of labels ``1..K`` (``class_names[label - 1]``).
    """

    records: list
    class_names: tuple


def list_xml_files(source) -> list:
    """The XML files of ``source``: a folder (its ``*.xml``, sorted), a list file, or a list.

    A list file (``.txt``) holds one XML path per line, relative to the list
    file's folder unless absolute; blank lines and ``#`` comments are skipped.

    Raises:
        FileNotFoundError: ``source`` does not exist.
    """
    if isinstance(source, (list, tuple)):
        return [os.fspath(p) for p in source]
    source = os.fspath(source)
    if os.path.isdir(source):
        return sorted(glob.glob(os.path.join(glob.escape(source), "*.xml")))
    if not os.path.isfile(source):
        raise FileNotFoundError(f"{source}: no such folder or file")
    base = os.path.dirname(os.path.abspath(source))
    with open(source, encoding="utf-8") as handle:
        lines = [line.strip() for line in handle]
    return [os.path.join(base, line) for line in lines if line and not line.startswith("#")]


def _image_candidates(xml_path: str, annotation, images_dir: str | None) -> list:
    xml_dir = os.path.dirname(os.path.abspath(xml_path))
    parent = os.path.dirname(xml_dir)
    folders = [images_dir] if images_dir else []
    folders.append(xml_dir)
    siblings = list(_SIBLING_IMAGE_FOLDERS)
    if annotation.folder:
        siblings.append(annotation.folder)
    folders += [os.path.join(parent, name) for name in siblings]
    candidates = []
    filename = annotation.filename
    if filename:
        names = [filename, os.path.basename(filename)]
        candidates += [os.path.join(folder, name) for folder in folders for name in names]
    if annotation.path:
        candidates.append(annotation.path)
    stems = [os.path.splitext(os.path.basename(xml_path))[0]]
    if filename:
        stems.append(os.path.splitext(os.path.basename(filename))[0])
    candidates += [os.path.join(folder, stem + ext) for folder in folders for stem in stems
                   for ext in IMAGE_EXTENSIONS]
    return list(dict.fromkeys(candidates))


def find_image(xml_path: str, annotation, images_dir: str | None = None) -> str:
    """The image file of one parsed XML (see the module docstring for the order)."""
    candidates = _image_candidates(xml_path, annotation, images_dir)
    return next((c for c in candidates if os.path.isfile(c)), candidates[0])


def _image_size(path: str):
    """``(width, height)`` from the image header (no decoding); ``(0, 0)`` if unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, ValueError):
        return 0, 0


def read_voc_folder(source, images: str | None = None,
                    class_names: Sequence[str] | None = None, *,
                    on_problem: ProblemCallback | None = None) -> VocFolder:
    """Read a folder (or list file) of VOC XML files.

    Args:
        source: folder of ``*.xml``, a ``.txt`` list of XML files, or a list of paths.
        images: folder of the images (default: found next to the XML files,
            see the module docstring).
        class_names: fixed label order (label ``i + 1`` is ``class_names[i]``);
            ``None``: discovered, sorted.
        on_problem: when given, ``on_problem(file, message)`` for a missing or
            malformed XML file (skipped) or, with fixed names, an unknown class
            name (the object is dropped) instead of raising.

    Returns:
        :class:`VocFolder` ``(records, class_names)``.  Each record: ``image_id``
        the XML stem, boxes ``(m, 4)`` VOC 1-based pixel corners, labels ``(m,)``
        in ``1..K``, ``extra["annotation_file"]`` the XML path.

    Raises:
        FileNotFoundError / ValueError naming the file (without ``on_problem``).
    """
    report = on_problem or raise_problem
    parsed = []
    for xml_path in list_xml_files(source):
        try:
            parsed.append((xml_path, parse_voc_xml(xml_path, require_size=False)))
        except (ValueError, FileNotFoundError) as error:
            report_or_raise(error, xml_path, on_problem)
    if class_names is None:
        class_names = sorted({name for _, annotation in parsed for name in annotation.names})
    class_names = tuple(class_names)
    label_of = {name: label for label, name in enumerate(class_names, start=1)}
    records = []
    for xml_path, annotation in parsed:
        image_path = find_image(xml_path, annotation, images)
        if annotation.width <= 0 or annotation.height <= 0:
            annotation.width, annotation.height = _image_size(image_path)
        image_id = os.path.splitext(os.path.basename(xml_path))[0]
        records.append(annotation_record(annotation, xml_path, image_path, image_id,
                                         label_of, report))
    return VocFolder(records, class_names)


def guess_voc_tool(xml_path: str) -> str | None:
    """``"labelImg"``, ``"CVAT"`` or ``"Roboflow"`` from one XML file's tell-tale text, else None."""
    try:
        with open(xml_path, encoding="utf-8", errors="replace") as handle:
            text = handle.read(4096)
    except OSError:
        return None
    lower = text.lower()
    if "roboflow" in lower:
        return "Roboflow"
    if "cvat" in lower:
        return "CVAT"
    if "verified=" in text or "<path>" in text:
        return "labelImg"
    return None
