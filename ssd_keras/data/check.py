"""Dataset checker: find what would break or silently spoil training, file by file.

Problems found (each one :class:`Problem`, printed as ``<file>: <message>``):

* missing image; unreadable image (cannot decode); truncated JPEG (no
  end-of-image marker ``FFD9``) or PNG (no ``IEND`` chunk) -- OpenCV happily
  decodes the top part of a truncated JPEG, so decoding alone misses these;
* malformed or incomplete XML / JSON, unknown class name or category id;
* inverted or empty box (``xmax <= xmin`` or ``ymax <= ymin``), box outside
  the image (VOC: below 0 -- 1-based, but some exporters write the edge as
  0 -- or beyond width/height; COCO: below 0 or beyond
  width/height), non-finite coordinates;
* image size in the annotation different from the decoded image's size.

* a class with very few boxes whose name is one edit from another class
  (``'racoon' (1 box) — did you mean 'raccoon'?``), named in its XML file(s).

CLI::

    python -m ssd_keras check-data --data raccoon/annotations     # any --data format
    python -m ssd_keras check-data --voc data/VOCdevkit/VOC2007 --image-set trainval \\
        --voc data/VOCdevkit/VOC2012 --image-set trainval
    python -m ssd_keras check-data --coco-json instances_val2017.json --images val2017/

Exit status 0 only when no problem is found.

Training calls :func:`filter_bad_records`, which decodes every image too: on
the 200 raccoon photos (JPEGs of 178x154 to 2000x1333 px) that takes 0.3 s of
CPU time (1.4 ms per image, OpenCV in threads) and 1 s wall-clock on the
shared 2 cores -- about 1 % of one training epoch of those images.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import os
from typing import TYPE_CHECKING, Callable, Optional, Sequence

import cv2
import numpy as np

from ssd_keras.data.coco import read_coco
from ssd_keras.data.voc import VOC_CLASSES, one_edit_apart, read_image_ids, read_voc
from ssd_keras.usage import CommandError, UsageError, choices

if TYPE_CHECKING:
    from ssd_keras.data.sources import DataSource

# COCO boxes are floats; x + w often overshoots the width by a rounding error.
COCO_EDGE_TOLERANCE = 1.0  # pixels
# Bytes some writers pad after the last marker; they do not make a file truncated.
_TRAILING_PADDING = b"\x00\r\n\x1a "
# Some cameras append a short trailer after a JPEG's end-of-image marker, so the
# marker is looked for near the end rather than exactly at it.  Entropy-coded data
# never contains FF D9, so a file cut inside the scan has no marker there.
JPEG_EOI_WINDOW = 1024
_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MAX_LISTED_PROBLEMS = 20
# A class with at most this many boxes, one edit from a class with RARE_CLASS_RATIO times
# more, is most likely a typo of that class.
RARE_CLASS_MAX_BOXES = 3
RARE_CLASS_RATIO = 5


@dataclasses.dataclass(frozen=True)
class Problem:
    """One problem in one file."""

    file: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.message}"


@dataclasses.dataclass
class CheckReport:
    """Problems of a dataset and how many images were examined."""

    num_images: int
    problems: list

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def num_files(self) -> int:
        return len({problem.file for problem in self.problems})

    def summary(self) -> str:
        return (f"{_count(self.num_images, 'image')}, "
                f"{_count(len(self.problems), 'problem')} in {_count(self.num_files, 'file')}")

    def __add__(self, other: "CheckReport") -> "CheckReport":
        return CheckReport(self.num_images + other.num_images, self.problems + other.problems)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


# --------------------------------------------------------------------------- images

def check_image_file(path: str, width: int | None = None, height: int | None = None) -> list:
    """Problems of one image file: missing, truncated, undecodable, size != ``width x height``."""
    if not os.path.isfile(path):
        return [Problem(path, "missing image")]
    with open(path, "rb") as handle:
        data = handle.read()
    if not data:
        return [Problem(path, "unreadable image (empty file)")]
    tail = data.rstrip(_TRAILING_PADDING)
    if data.startswith(_JPEG_MAGIC) and b"\xff\xd9" not in tail[-JPEG_EOI_WINDOW:]:
        return [Problem(path, "truncated JPEG (no end-of-image marker FFD9)")]
    if data.startswith(_PNG_MAGIC) and b"IEND" not in tail[-16:]:
        return [Problem(path, "truncated PNG (no IEND chunk)")]
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        return [Problem(path, "unreadable image (cannot decode)")]
    actual_h, actual_w = image.shape[:2]
    if width is not None and height is not None and (actual_w, actual_h) != (width, height):
        return [Problem(path, f"image is {actual_w}x{actual_h} but the annotation says "
                              f"{width}x{height}")]
    return []


# --------------------------------------------------------------------------- records

def _annotation_location(record) -> tuple:
    """(file to name, message prefix) for annotation problems of a record."""
    source = record.extra.get("annotation_file", record.image_path)
    if record.convention == "coco":
        return source, f"image {record.image_id} ({os.path.basename(record.image_path)}) "
    return source, ""


def check_annotations(record) -> list:
    """Box, label and size sanity of one record (no file access)."""
    file, prefix = _annotation_location(record)
    problems = []
    if record.width <= 0 or record.height <= 0:
        problems.append(Problem(file, f"{prefix}size {record.width}x{record.height} "
                                      "is not positive"))
    # VOC is 1-based, but exporters that write 0-based pixels put an object at the image
    # edge at 0: accepted (one pixel off at most), as the input pipeline accepts it.
    low = 0.0
    slack = 0.0 if record.convention == "voc" else COCO_EDGE_TOLERANCE
    for index, (box, label) in enumerate(zip(record.boxes, record.labels)):
        what = f"{prefix}object {index} (label {label}) box {np.round(box, 2).tolist()}"
        xmin, ymin, xmax, ymax = (float(v) for v in box)
        if not np.all(np.isfinite(box)):
            problems.append(Problem(file, f"{what}: non-finite coordinates"))
            continue
        if label < 1:
            problems.append(Problem(file, f"{what}: label must be >= 1 (0 is background)"))
        if xmax <= xmin or ymax <= ymin:
            problems.append(Problem(file, f"{what}: inverted or empty box "
                                          "(xmax <= xmin or ymax <= ymin)"))
        if (min(xmin, ymin) < low - slack or xmax > record.width + slack
                or ymax > record.height + slack):
            problems.append(Problem(file, f"{what}: outside the {record.width}x"
                                          f"{record.height} image"))
    return problems


def check_record(record, check_images: bool = True) -> list:
    """Problems of one record; with ``check_images`` the image is decoded, else only stat'ed."""
    problems = check_annotations(record)
    if check_images:
        problems += check_image_file(record.image_path, record.width, record.height)
    elif not os.path.isfile(record.image_path):
        problems.append(Problem(record.image_path, "missing image"))
    return problems


def _check_each(records: Sequence, check_images: bool, workers: int | None) -> list:
    """``[problems of record i]`` in record order; images decoded in threads (cv2 frees the GIL)."""
    if not check_images or len(records) < 2:
        return [check_record(r, check_images) for r in records]
    workers = workers or min(8, os.cpu_count() or 1)
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda r: check_record(r, True), records))


def check_records(records: Sequence, check_images: bool = True,
                  workers: int | None = None) -> list:
    """All problems of ``records`` (see the module docstring), in record order."""
    return [p for found in _check_each(records, check_images, workers) for p in found]


def check_voc(root: str, image_set: str, class_names: Sequence[str] = VOC_CLASSES,
              check_images: bool = True) -> CheckReport:
    """Read every annotation and (with ``check_images``) decode every image of a VOC image set."""
    try:
        num_images = len(read_image_ids(root, image_set))
    except FileNotFoundError as error:
        return CheckReport(0, [_problem_from_error(error, root)])
    problems = []
    collect = lambda file, message: problems.append(Problem(file, message))  # noqa: E731
    records = read_voc(root, image_set, class_names, on_problem=collect)
    problems += check_records(records, check_images)
    return CheckReport(num_images, problems)


def check_coco(annotation_file: str, image_dir: str,
               check_images: bool = True) -> CheckReport:
    """Read a COCO annotation file and (with ``check_images``) decode every image."""
    problems = []
    collect = lambda file, message: problems.append(Problem(file, message))  # noqa: E731
    try:
        records = read_coco(annotation_file, image_dir, on_problem=collect)
    except (FileNotFoundError, ValueError, KeyError, TypeError) as error:
        return CheckReport(0, [_problem_from_error(error, annotation_file)])
    problems += check_records(records, check_images)
    return CheckReport(len(records), problems)


def misspelt_class_problems(records: Sequence, class_names: Sequence[str]) -> list:
    """Classes that look like typos: few boxes, one edit from a much larger class.

    A class with at most :data:`RARE_CLASS_MAX_BOXES` boxes whose name is one
    edit (insertion, deletion, substitution, swap, or case) from a class with
    :data:`RARE_CLASS_RATIO` times as many boxes gives one problem per file
    holding it: ``'racoon' (1 box) — did you mean 'raccoon'?``.
    """
    counts = np.zeros(len(class_names) + 1, np.int64)
    files = {}
    for record in records:
        for label in record.labels.tolist():
            counts[label] += 1
            files.setdefault(label, []).append(_annotation_location(record)[0])
    problems = []
    for label, name in enumerate(class_names, start=1):
        n = int(counts[label])
        if not 0 < n <= RARE_CLASS_MAX_BOXES:
            continue
        close = [(int(counts[other]), other_name)
                 for other, other_name in enumerate(class_names, start=1)
                 if counts[other] >= RARE_CLASS_RATIO * n and one_edit_apart(name, other_name)]
        if close:
            target = max(close)[1]
            for file in dict.fromkeys(files[label]):
                problems.append(Problem(file, f"{name!r} ({n} box{'' if n == 1 else 'es'}) — "
                                              f"did you mean {target!r}?"))
    return problems


def check_data_source(path, images=None, class_names=None, image_set=None,
                      check_images: bool = True):
    """Check any ``--data`` dataset (see :mod:`ssd_keras.data.sources`).

    Returns:
        ``(source, report)``: the :class:`~ssd_keras.data.sources.DataSource`
        (its records as read, bad objects dropped) and the :class:`CheckReport`
        (reader problems, record problems, likely misspelt class names).

    Raises:
        UsageError: missing path, unknown format or image set.
    """
    from ssd_keras.data.sources import load_data

    problems = []
    collect = lambda file, message: problems.append(Problem(file, message))  # noqa: E731
    source = load_data(path, images, class_names, image_set, on_problem=collect)
    problems += check_records(source.records, check_images)
    problems += misspelt_class_problems(source.records, source.class_names)
    return source, CheckReport(len(source.records), problems)


def _problem_from_error(error: Exception, file) -> Problem:
    """A reader's ``"<file>: <message>"`` error as a Problem; other errors blamed on ``file``."""
    if isinstance(error, KeyError):
        return Problem(os.fspath(file), f"cannot read annotations: missing field {error}")
    head, sep, rest = str(error).partition(": ")
    if sep and (os.path.exists(head) or head.startswith(os.fspath(file))):
        return Problem(head, rest)
    return Problem(os.fspath(file), f"cannot read annotations: {error}")


# --------------------------------------------------------------------------- training

def _listing(items: list, limit: int = MAX_LISTED_PROBLEMS) -> str:
    lines = [f"  {item}" for item in items[:limit]]
    if len(items) > limit:
        lines.append(f"  ... and {len(items) - limit} more")
    return "\n".join(lines)


class BadRecordsError(CommandError, ValueError):
    """Records with problems (missing, truncated or non-image files, bad boxes), listed by file."""


def load_training_data(path, images: Optional[str] = None,
                       class_names: Optional[Sequence[str]] = None,
                       image_set: Optional[str] = None, *, skip_bad: bool = False,
                       flag: str = "--data", log=print) -> DataSource:
    """:func:`~ssd_keras.data.sources.load_data` for training: annotation problems stop the run (or are skipped).

    The first-level check before :func:`filter_bad_records`
    (which then decodes the images): malformed XML files and, with fixed
    ``class_names``, objects of other classes.  ``skip_bad`` drops them (the
    file or object) with one ``skipping <file>: <problem>`` line each.

    Raises:
        UsageError: a name of ``class_names`` has no box in the data (``flag``
            names the option in the message), besides :func:`~ssd_keras.data.sources.load_data`'s.
        BadRecordsError: annotation problems without ``skip_bad``.
    """
    from ssd_keras.data.sources import load_data

    problems = []
    source = load_data(path, images, class_names, image_set,
                       on_problem=lambda file, message: problems.append(Problem(file, message)))
    if class_names is not None:
        present = {int(label) for r in source.records for label in r.labels}
        absent = [n for i, n in enumerate(source.class_names, 1) if i not in present]
        if absent:
            raise UsageError(f"--class-names: {choices(repr(n) for n in absent)} not in "
                             f"{flag} {path} (it has boxes of {len(present)} of the names)")
    if problems and not skip_bad:
        raise BadRecordsError(f"{len(problems)} annotation problems in {flag} {path}:\n"
                              f"{_listing(problems)}\nFix them (python -m ssd_keras check-data "
                              f"--data {path} lists all) or skip them (--skip-bad-records).")
    for problem in problems:
        log(f"skipping {problem}")
    return source


def filter_bad_records(records: Sequence, skip_bad: bool = False, *,
                       check_images: bool = True,
                       log: Callable[[str], None] = print) -> list:
    """Records fit for training: the pre-training check.

    Every image is decoded (``check_images``), so truncated JPEG/PNG files
    and files that are no image are caught here, by name, rather than by the
    input pipeline mid-run.  Cost: about 1.4 ms of CPU per image for
    photos of a few hundred pixels (0.3 s CPU, 1 s wall for the 200 raccoon photos).

    Args:
        records: reader output.
        skip_bad: drop records with problems, one ``skipping <file>: <problem>``
            line each, instead of raising.
        check_images: decode every image (``False``: only check that it exists
            and the annotations, for huge sets checked with ``check-data`` before).
        log: where the "skipping" lines go.

    Returns:
        ``records`` without those that have problems.

    Raises:
        BadRecordsError: (a ``ValueError``) some record has a problem and
            ``skip_bad`` is False; lists the first 20 problems and the count.
    """
    found = _check_each(records, check_images, workers=None)
    good = [r for r, problems in zip(records, found) if not problems]
    if len(good) == len(records):
        return list(records)
    problems = [p for ps in found for p in ps]
    if not skip_bad:
        raise BadRecordsError(
            f"{len(problems)} problems in {len(records) - len(good)} of {len(records)} "
            f"records:\n{_listing(problems)}\n"
            "Fix them (python -m ssd_keras check-data lists all) or skip these records "
            "(skip_bad=True / --skip-bad-records).")
    log(f"skipping {len(records) - len(good)} of {len(records)} records with problems:")
    for ps in found:
        if ps:
            log(f"  skipping {ps[0]}" + (f" (and {len(ps) - 1} more)" if len(ps) > 1 else ""))
    return good


# --------------------------------------------------------------------------- CLI

def _pairs(firsts: list, seconds: list | None, default, what: str) -> list:
    seconds = seconds or [default]
    if len(seconds) == 1:
        seconds = seconds * len(firsts)
    if len(seconds) != len(firsts):
        raise UsageError(f"give one {what} per dataset or a single one for all")
    return list(zip(firsts, seconds))


def run_check_data(args: argparse.Namespace) -> int:
    """``check-data`` command: print each problem, then a summary; 0 only when clean."""
    from ssd_keras.data.sources import parse_class_names

    if not args.voc and not args.coco_json and not args.data:
        raise UsageError("give --data PATH, --voc ROOT or --coco-json FILE --images DIR")
    report = CheckReport(0, [])
    if args.data:
        if len(args.images or []) > 1:
            raise UsageError("--data takes one --images DIR")
        source, report = check_data_source(
            args.data, (args.images or [None])[0], parse_class_names(args.class_names),
            (args.image_set or [None])[0], check_images=not args.no_images)
        print(source.describe(), flush=True)
    for root, image_set in _pairs(args.voc or [], args.image_set, "trainval", "--image-set"):
        report += check_voc(root, image_set, check_images=not args.no_images)
    if args.coco_json:
        if not args.images:
            raise UsageError("--coco-json needs --images DIR")
        for json_file, images in _pairs(args.coco_json, args.images, None, "--images"):
            report += check_coco(json_file, images, check_images=not args.no_images)
    for problem in report.problems:
        print(problem)
    print(("OK: " if report.ok else "FAILED: ") + report.summary())
    return 0 if report.ok else 1


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``check-data`` command."""
    parser = subparsers.add_parser(
        "check-data", help="check a VOC or COCO dataset for broken images and annotations",
        description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", metavar="PATH",
                        help="a folder (or .txt list) of VOC XML files, a VOCdevkit year "
                             "folder or a COCO JSON; the format is detected")
    parser.add_argument("--class-names", metavar="A,B,C",
                        help="fix the class names (default: discovered from --data); other "
                             "names are problems")
    parser.add_argument("--voc", action="append", metavar="ROOT",
                        help="a VOC2007/VOC2012 folder (repeatable)")
    parser.add_argument("--image-set", action="append", metavar="NAME",
                        help="ImageSets/Main name per --voc (or for a --data VOCdevkit folder), "
                             "or one for all (default trainval)")
    parser.add_argument("--coco-json", action="append", metavar="FILE",
                        help="COCO instances json (repeatable)")
    parser.add_argument("--images", action="append", metavar="DIR",
                        help="image folder per --coco-json (or of --data)")
    parser.add_argument("--no-images", action="store_true",
                        help="check annotations and image existence only (no decoding)")
    parser.set_defaults(func=run_check_data)
    return parser


def main(argv=None) -> int:
    """Run ``check-data`` without the package-wide CLI: ``main(["--voc", root])``."""
    from ssd_keras.__main__ import run_alone
    return run_alone(register, "check-data", argv)
