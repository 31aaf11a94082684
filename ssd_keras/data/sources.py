"""``--data PATH``: detect what a dataset path is and read it into records + class names.

One resolver for every command (``train``, ``check-data``, ``evaluate``).
``PATH`` may be:

* a folder of Pascal VOC XML files (labelImg, CVAT, Roboflow exports), images
  beside them or in ``images`` (:mod:`ssd_keras.data.voc_folder`); a folder
  holding such a folder as ``annotations/`` (labelImg's layout) also works;
* a ``.txt`` file listing XML files (a split without copying, see
  :mod:`ssd_keras.data.voc_folder`);
* a VOCdevkit year folder (``VOC2007/`` with ``Annotations/``,
  ``JPEGImages/``, ``ImageSets/Main/``), with an ``image_set``;
* a COCO JSON file, images in ``images`` (default: the JSON's folder, as
  Roboflow exports them, or an ``images/`` folder beside it or beside its
  folder); a folder holding exactly one COCO JSON also works.

Class names are discovered (sorted; COCO: category-id order) unless
``class_names`` fixes them; :func:`config_for_classes` puts them into a
detector config (``num_classes``, ``class_names``), :func:`map_labels`
renumbers records to another name order (a model's).

Every user mistake (missing path, unknown format, unknown image set) is a
:class:`~ssd_keras.usage.UsageError` naming the path and the valid choices.
"""
from __future__ import annotations

import dataclasses
import glob
import os
from typing import Optional, Sequence

import numpy as np

from ssd_keras.data.voc import ProblemCallback, raise_problem, report_or_raise
from ssd_keras.usage import UsageError, choices

FORMATS = ("a folder of Pascal VOC XML files", "a .txt list of XML files",
           "a VOCdevkit year folder (Annotations/, JPEGImages/)", "a COCO JSON file")


@dataclasses.dataclass
class DataSource:
    """A dataset read from ``--data``.

    Attributes:
        path: the path as given.
        kind: ``"voc_folder"``, ``"voc_list"``, ``"voc_devkit"`` or ``"coco_json"``.
        format: what was detected, in words (``"Pascal VOC XML folder (labelImg)"``).
        records: :class:`~ssd_keras.data.records.Record` list (VOC: convention
            ``"voc"``, COCO: ``"coco"``), labels ``1..K`` in ``class_names`` order.
        class_names: ``K`` names, ``class_names[label - 1]``.
        coco_json: the annotation file when ``kind == "coco_json"`` (COCO ground
            truth for evaluation), else ``None``.
        image_dir: the image folder used (``None``: found per XML file).
    """

    path: str
    kind: str
    format: str
    records: list
    class_names: tuple
    coco_json: Optional[str] = None
    image_dir: Optional[str] = None

    @property
    def num_boxes(self) -> int:
        return sum(r.num_objects for r in self.records)

    def describe(self) -> str:
        """One line: ``data: PATH — FORMAT, N images, K classes: a, b``."""
        k = len(self.class_names)
        return (f"data: {self.path} — {self.format}, {_count(len(self.records), 'image')}, "
                f"{_count(self.num_boxes, 'box', 'boxes')}, {_count(k, 'class', 'classes')}: "
                f"{choices(self.class_names) or '(none)'}")


def _count(n, one, many=None):
    return f"{n} {one if n == 1 else (many or one + 's')}"


def _xml_files(folder: str) -> list:
    return sorted(glob.glob(os.path.join(glob.escape(folder), "*.xml")))


def _image_sets(root: str) -> list:
    main = os.path.join(root, "ImageSets", "Main")
    names = [os.path.splitext(os.path.basename(p))[0]
             for p in glob.glob(os.path.join(glob.escape(main), "*.txt"))]
    # Class-specific lists (aeroplane_trainval.txt) are not image sets of their own.
    return sorted(n for n in names if "_" not in n)


def _is_coco_json(path: str) -> bool:
    try:
        with open(path, encoding="utf-8") as handle:
            head = handle.read(1 << 16)
    except OSError:
        return False
    return head.lstrip().startswith("{") and '"images"' in head


def detect_format(path: str) -> tuple:
    """``(kind, annotation path)`` of ``path`` (see the module docstring).

    Raises:
        UsageError: ``path`` does not exist or is none of the known formats.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise UsageError(f"{path}: no such file or folder")
    if os.path.isfile(path):
        if path.lower().endswith(".json"):
            return "coco_json", path
        if path.lower().endswith(".txt"):
            return "voc_list", path
        raise UsageError(f"{path}: not a dataset format I know; --data takes "
                         f"{choices(FORMATS)}")
    if os.path.isdir(os.path.join(path, "Annotations")) and os.path.isdir(
            os.path.join(path, "JPEGImages")):
        return "voc_devkit", path
    if _xml_files(path):
        return "voc_folder", path
    for name in ("annotations", "Annotations"):
        sub = os.path.join(path, name)
        if os.path.isdir(sub) and _xml_files(sub):
            return "voc_folder", sub
    jsons = [p for p in sorted(glob.glob(os.path.join(glob.escape(path), "*.json")))
             if _is_coco_json(p)]
    if len(jsons) == 1:
        return "coco_json", jsons[0]
    years = sorted(d for d in os.listdir(path) if d.startswith("VOC")
                   and os.path.isdir(os.path.join(path, d, "Annotations")))
    if years:
        raise UsageError(f"{path}: a VOCdevkit folder; give one year folder: "
                         f"{choices(os.path.join(path, y) for y in years)}")
    raise UsageError(f"{path}: no dataset found there; --data takes {choices(FORMATS)}")


def load_data(path, images: Optional[str] = None, class_names: Optional[Sequence[str]] = None,
              image_set: Optional[str] = None, *,
              on_problem: Optional[ProblemCallback] = None) -> DataSource:
    """Detect the format of ``path`` and read it.

    Args:
        path: see the module docstring.
        images: image folder (VOC folder: optional; COCO: default the JSON's folder).
        class_names: fixed label order; ``None``: discovered.
        image_set: VOCdevkit ``ImageSets/Main`` name (default ``trainval`` when
            present, or the only one).
        on_problem: ``on_problem(file, message)`` for annotation problems
            (malformed XML, unknown class name with fixed names, ...) instead of
            raising (the checker collects them).

    Raises:
        UsageError: missing path / images folder, unknown format or image set.
        ValueError / FileNotFoundError: annotation problems naming the file
            (without ``on_problem``).
    """
    from ssd_keras.data.voc_folder import guess_voc_tool, list_xml_files, read_voc_folder

    path = os.fspath(path)
    kind, source = detect_format(path)
    if images is not None and not os.path.isdir(images):
        raise UsageError(f"{images}: no such image folder")
    if kind == "coco_json":
        return _load_coco(path, source, images, class_names, on_problem)
    if image_set is not None and kind != "voc_devkit":
        raise UsageError(f"--image-set {image_set}: only for a VOCdevkit year folder "
                         f"(Annotations/, JPEGImages/, ImageSets/), not {path}")
    if kind == "voc_devkit":
        sets = _image_sets(source)
        annotations = os.path.join(source, "Annotations")
        if image_set is None and sets:
            if "trainval" in sets or len(sets) == 1:
                image_set = "trainval" if "trainval" in sets else sets[0]
            else:
                raise UsageError(f"{path}: give --image-set, one of {choices(sets)}")
        if image_set is not None and image_set not in sets:
            raise UsageError(f"--image-set {image_set}: not in {source}/ImageSets/Main; "
                             f"choose from {choices(sets) or '(none there)'}")
        if image_set is None:
            xml_files = _xml_files(annotations)
            what = "VOCdevkit folder (all of Annotations/)"
        else:
            from ssd_keras.data.voc import read_image_ids
            xml_files = [os.path.join(annotations, f"{i}.xml")
                         for i in read_image_ids(source, image_set)]
            what = f"VOCdevkit folder, image set {image_set}"
        images = images or os.path.join(source, "JPEGImages")
    else:
        xml_files = list_xml_files(source)
        what = ("Pascal VOC XML list" if kind == "voc_list" else "Pascal VOC XML folder")
        if not xml_files:
            raise UsageError(f"{path}: lists no XML files")
    tool = guess_voc_tool(xml_files[0]) if xml_files else None
    records, names = read_voc_folder(xml_files, images, class_names, on_problem=on_problem)
    return DataSource(path, kind, what + (f" ({tool})" if tool else ""), records, names,
                      image_dir=images)


def _coco_image_dir(json_file: str, data: dict) -> str:
    """Where a COCO file's images are when ``--images`` is not given.

    The JSON's folder (Roboflow), ``images/`` beside it, or ``../images``
    (``annotations/instances.json`` + ``images/``): the first holding the
    first image's ``file_name``; the JSON's folder when none does.
    """
    here = os.path.dirname(os.path.abspath(json_file))
    candidates = [here, os.path.join(here, "images"),
                  os.path.join(os.path.dirname(here), "images")]
    first = next(iter(data.get("images") or []), {}).get("file_name")
    if first:
        for folder in candidates:
            if os.path.isfile(os.path.join(folder, first)):
                return folder
    return here


def _load_coco(path, json_file, images, class_names, on_problem) -> DataSource:
    from ssd_keras.data.coco import coco_label_map, load_coco_json, read_coco

    report = on_problem or raise_problem
    try:
        data = load_coco_json(json_file)
    except (ValueError, FileNotFoundError) as error:
        report_or_raise(error, json_file, on_problem)
        return DataSource(path, "coco_json", "COCO JSON (unreadable)", [], (),
                          coco_json=json_file, image_dir=images)
    images = images or _coco_image_dir(json_file, data)
    records = read_coco(data, images, on_problem=on_problem)
    for record in records:
        record.extra["annotation_file"] = json_file
    names = coco_label_map(data).class_names
    if class_names is not None:
        records = map_labels(records, names, class_names, report)
        names = tuple(class_names)
    return DataSource(path, "coco_json", f"COCO JSON, images in {images}", records, names,
                      coco_json=json_file, image_dir=images)


def map_labels(records: Sequence, from_names: Sequence[str], to_names: Sequence[str],
               report: ProblemCallback = raise_problem) -> list:
    """Records renumbered from ``from_names`` order to ``to_names`` order (by name).

    An object whose class is not in ``to_names`` is dropped after
    ``report(annotation file, message)`` (default: raise ``ValueError``).
    Records are copied (``dataclasses.replace``), never changed in place.
    """
    from ssd_keras.data.voc import did_you_mean

    from_names, to_names = list(from_names), list(to_names)
    if from_names == to_names:
        return list(records)
    new_label = {i + 1: to_names.index(n) + 1 for i, n in enumerate(from_names) if n in to_names}
    out = []
    for record in records:
        keep = []
        for index, label in enumerate(record.labels.tolist()):
            if label in new_label:
                keep.append(index)
                continue
            name = from_names[label - 1] if 0 < label <= len(from_names) else f"label {label}"
            report(record.extra.get("annotation_file", record.image_path),
                   f"unknown class name {name!r} (object {index}; known: "
                   f"{choices(to_names)}){did_you_mean(name, to_names)}")
        out.append(dataclasses.replace(
            record, boxes=record.boxes[keep], difficult=record.difficult[keep],
            labels=np.array([new_label[int(record.labels[i])] for i in keep], np.int32)))
    return out


def parse_class_names(text: Optional[str]) -> Optional[tuple]:
    """``"a,b, c"`` -> ``("a", "b", "c")``; ``None`` stays ``None``.

    Raises:
        UsageError: empty or repeated names.
    """
    if text is None:
        return None
    names = tuple(n.strip() for n in text.split(","))
    if not all(names):
        raise UsageError(f"--class-names {text!r}: empty name; give names like a,b,c")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise UsageError(f"--class-names {text!r}: repeated {choices(repeated)}")
    return names


def config_for_classes(config, class_names: Sequence[str]):
    """``config`` with ``num_classes`` / ``class_names`` set from the data (unchanged if equal)."""
    names = tuple(class_names)
    if not names:
        raise UsageError("the data has no class names (no objects)")
    if config.num_classes == len(names) and tuple(config.class_names or ()) == names:
        return config
    return config.replace(num_classes=len(names), class_names=names)
