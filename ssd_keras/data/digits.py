"""Synthetic seven-segment digits: renderer, COCO JSON writer, cached generator.

The reference experiment ("Experiment 01") trains on 800 synthetic 512x512
images of seven-segment digits at random places and sizes.  This module is our
renderer of that dataset; :class:`DigitsSpec` holds every number of it.

Image (RGB uint8, ``size x size``)
    Background: a random base colour + a linear gradient (random direction,
    amplitude up to 40 grey levels end to end) + Gaussian noise (sigma in
    ``[0, 6]``).  Then 1..10 digits, each 0..9, alpha-blended with their
    anti-aliased coverage.
Glyph
    Seven hexagonal (pointed-end) segments ``a..g`` with small gaps; height
    ``h ~ U[10, 28]`` px, width ``h * U(0.5, 0.6)``, thickness
    ``h * U(0.12, 0.2)``, italic slant ``U(0, 12)`` degrees (top leans right).
    Coverage is rasterised at ``supersample`` x on a small local patch and
    box-filtered down to fractions in ``[0, 1]``.
Colour
    Random RGB whose luminance ``0.299 R + 0.587 G + 0.114 B`` differs by at
    least 60 from the coverage-weighted mean background luminance under the glyph.
Placement
    Uniform, the whole patch (every touched pixel) inside the image; boxes
    expanded by 2 px do not intersect.  A digit that finds no place in
    ``max_placement_tries`` positions is dropped (never happens at 512x512).
Box
    The tight box of the pixels covered at least 50 % by the glyph, in COCO
    pixel corners: pixel ``(col, row)`` covers ``[col, col + 1) x [row, row + 1)``,
    so ``[xmin, ymin, xmax, ymax] = [min col, min row, max col + 1, max row + 1]``
    and the JSON ``bbox`` is ``[x, y, w, h]`` with ``w = max col - min col + 1``.
    Labels are ``digit + 1`` (``1..10``; 0 is background), which are also the
    COCO category ids (names ``"0".."9"``).

Files (under ``root``)
    ``images/<split>/<index:05d>.png`` (lossless, byte-identical on regeneration)
    and ``annotations/<split>.json`` (COCO; image id = index + 1, annotation
    ids from 1).  Image ``i`` of a split comes from its own
    ``numpy.random.default_rng([split_seed(seed, split), i])``, so it does not
    depend on the other images.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
import types
import zlib
from typing import Mapping

import cv2
import numpy as np

from ssd_keras.data.records import Record
from ssd_keras.io_utils import write_json

DIGIT_CLASSES = tuple("0123456789")

# lit segments per digit; a top, b top right, c bottom right, d bottom,
# e bottom left, f top left, g middle
SEGMENTS_BY_DIGIT = {
    0: "abcdef", 1: "bc", 2: "abdeg", 3: "abcdg", 4: "bcfg",
    5: "acdfg", 6: "acdefg", 7: "abc", 8: "abcdefg", 9: "abcdfg",
}

LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], np.float32)

DEFAULT_SEED = 2020
DEFAULT_SPLITS = types.MappingProxyType({"train": 800, "test": 200})
# bump when the rendering changes, so cached datasets are regenerated
GENERATOR_VERSION = 1
# zlib level of the PNGs, pinned so files stay byte-identical; the noise makes
# higher levels ~5 % smaller at 2-7x the encoding time
PNG_COMPRESSION = 1


@dataclasses.dataclass(frozen=True)
class DigitsSpec:
    """Every number of the synthetic digits dataset (lengths in pixels).

    Use ``dataclasses.replace(DigitsSpec(), image_size=128, max_digits=3)`` for
    quick variants; the spec is recorded in the annotation JSON's ``info``.
    """

    image_size: int = 512
    min_digits: int = 1
    max_digits: int = 10
    min_height: float = 10.0
    max_height: float = 28.0
    width_ratio: tuple = (0.5, 0.6)          # width = height * U(width_ratio)
    thickness_ratio: tuple = (0.12, 0.2)     # segment thickness = height * U(...)
    max_slant_deg: float = 12.0              # italic slant U(0, max), top leans right
    segment_gap: float = 0.15                # each segment end pulled back by gap * thickness
    max_gradient: float = 40.0               # background gradient amplitude, grey levels
    max_noise_sigma: float = 6.0             # background Gaussian noise sigma ~ U(0, max)
    min_contrast: float = 60.0               # |luma(colour) - luma(background under glyph)|
    min_box_gap: int = 2                     # boxes expanded by this do not intersect
    coverage_threshold: float = 0.5          # a pixel is in the box if covered this much
    supersample: int = 8                     # anti-aliasing factor per axis
    max_placement_tries: int = 100           # then the digit is dropped


DEFAULT_SPEC = DigitsSpec()


@dataclasses.dataclass
class PlacedDigit:
    """One rendered digit, with what is needed to re-check it.

    ``coverage`` is ``(ph, pw)`` float32 in ``[0, 1]`` whose top-left pixel is
    image pixel ``(origin[1], origin[0])`` (origin is ``(x, y)``); ``box`` is
    ``[xmin, ymin, xmax, ymax]`` in image pixel corners.
    """

    digit: int
    height: float
    width: float
    thickness: float
    slant_deg: float
    offset: tuple          # sub-pixel (fx, fy) of the glyph inside its patch
    origin: tuple          # (x, y) of the patch in the image
    coverage: np.ndarray
    box: np.ndarray
    colour: np.ndarray     # (3,) RGB float32
    background_luma: float


@dataclasses.dataclass
class DigitSample:
    """A rendered image: ``image`` (H, W, 3) uint8 RGB, ``boxes`` (m, 4) float32
    pixel corners, ``labels`` (m,) int32 in 1..10, the ``background`` before any
    digit (float32, already clipped to [0, 255]) and the placed ``digits``."""

    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    background: np.ndarray
    digits: list


# --------------------------------------------------------------------------- glyphs

def _bar(p0, p1, half_thickness, gap):
    """Hexagon of a segment from joint ``p0`` to joint ``p1`` (pointed ends)."""
    p0, p1 = np.asarray(p0, np.float64), np.asarray(p1, np.float64)
    length = float(np.hypot(*(p1 - p0)))
    along = (p1 - p0) / length
    across = np.array([-along[1], along[0]])
    tip0 = p0 + along * gap
    tip1 = p1 - along * gap
    # the bevel needs `half_thickness` of length at each end; short bars become diamonds
    bevel = min(half_thickness, max(length - 2 * gap, 0.0) / 2)
    return np.array([
        tip0,
        tip0 + (along + across) * bevel,
        tip1 + (across - along) * bevel,
        tip1,
        tip1 - (along + across) * bevel,
        tip0 + (along - across) * bevel,
    ])


def glyph_polygons(digit, height, width, thickness, slant_deg=0.0,
                   gap_ratio=DEFAULT_SPEC.segment_gap):
    """Polygons of a seven-segment ``digit``, each ``(6, 2)`` float64 ``(x, y)``.

    Unsheared, an "8" spans ``[0, width] x [0, height]`` (y down).  The slant
    shears x by ``-tan(slant) * (y - height / 2)``, so the top moves right and
    x may then range over ``[-tan * h / 2, width + tan * h / 2]``.
    """
    r = thickness / 2
    gap = gap_ratio * thickness
    xl, xr = r, width - r
    ya, yg, yd = r, height / 2, height - r
    joints = {
        "a": ((xl, ya), (xr, ya)), "b": ((xr, ya), (xr, yg)),
        "c": ((xr, yg), (xr, yd)), "d": ((xl, yd), (xr, yd)),
        "e": ((xl, yg), (xl, yd)), "f": ((xl, ya), (xl, yg)),
        "g": ((xl, yg), (xr, yg)),
    }
    shear = math.tan(math.radians(slant_deg))
    polygons = []
    for name in SEGMENTS_BY_DIGIT[int(digit)]:
        poly = _bar(*joints[name], r, gap)
        poly[:, 0] -= shear * (poly[:, 1] - height / 2)
        polygons.append(poly)
    return polygons


def _inset_convex(poly, distance):
    """Move every edge of the convex polygon ``poly`` ``(n, 2)`` inwards by ``distance``."""
    poly = poly[np.any(poly != np.roll(poly, 1, axis=0), axis=1)]  # drop repeated vertices
    edges = np.roll(poly, -1, axis=0) - poly
    normals = np.stack([-edges[:, 1], edges[:, 0]], axis=1)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    x, y = poly[:, 0], poly[:, 1]
    if np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y) < 0:  # clockwise: flip the normals
        normals = -normals
    before = np.roll(normals, 1, axis=0)  # normal of the edge ending at each vertex
    # miter offset: the vertex moves to where both shifted edges meet
    return poly + distance * (before + normals) / (1 + np.sum(before * normals, axis=1))[:, None]


def glyph_coverage(polygons, height, width, slant_deg, offset=(0.0, 0.0),
                   supersample=DEFAULT_SPEC.supersample):
    """Anti-aliased coverage of ``polygons`` on a small patch.

    The glyph's unsheared top-left corner lands at patch position
    ``(shear * height / 2 + 1 + fx, 1 + fy)`` for ``offset = (fx, fy)``, so a
    one-pixel margin stays empty.  Returns ``(coverage, (x, y))``: the
    ``(ph, pw)`` float32 coverage cropped to its non-zero pixels and the crop's
    top-left in the uncropped patch.
    """
    shear = math.tan(math.radians(slant_deg))
    fx, fy = offset
    shift_x = shear * height / 2 + 1 + fx
    shift_y = 1 + fy
    pw = int(math.ceil(width + shear * height + 3))
    ph = int(math.ceil(height + 3))
    s = int(supersample)
    fraction_bits = 8
    canvas = np.zeros((ph * s, pw * s), np.uint8)
    # cv2 fills every raster pixel an edge touches, which grows a polygon by about
    # half a raster pixel all round: inset by that much so coverage sums to the area.
    # cv2 also puts integer coordinates at pixel centres: continuous u -> u - 0.5.
    pts = [np.round((_inset_convex((poly + (shift_x, shift_y)) * s, 0.5) - 0.5)
                    * (1 << fraction_bits)).astype(np.int32)
           for poly in polygons]
    cv2.fillPoly(canvas, pts, 1, lineType=cv2.LINE_8, shift=fraction_bits)
    coverage = canvas.reshape(ph, s, pw, s).sum(axis=(1, 3), dtype=np.int32)
    coverage = coverage.astype(np.float32) / (s * s)
    rows = np.flatnonzero(coverage.any(axis=1))
    cols = np.flatnonzero(coverage.any(axis=0))
    if len(rows) == 0:
        return np.zeros((0, 0), np.float32), (0, 0)
    coverage = coverage[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    return coverage, (int(cols[0]), int(rows[0]))


def coverage_box(coverage, threshold=DEFAULT_SPEC.coverage_threshold):
    """Tight ``[xmin, ymin, xmax, ymax]`` (pixel corners, float32) of the pixels
    with ``coverage >= threshold``, or ``None`` if there are none."""
    mask = coverage >= threshold
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if len(rows) == 0:
        return None
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], np.float32)


# --------------------------------------------------------------------------- images

def _background(rng, size, spec):
    base = rng.integers(0, 256, size=3).astype(np.float32)
    angle = rng.uniform(0.0, 2 * math.pi)
    amplitude = rng.uniform(0.0, spec.max_gradient)
    sigma = rng.uniform(0.0, spec.max_noise_sigma)
    c, s = math.cos(angle), math.sin(angle)
    coords = np.arange(size, dtype=np.float32)
    projection = (coords * c)[None, :] + (coords * s)[:, None]
    corners = [0.0, (size - 1) * c, (size - 1) * s, (size - 1) * (c + s)]
    low, high = min(corners), max(corners)
    # gradient spans `amplitude` grey levels end to end, centred on the base colour
    gradient = amplitude * (projection - (low + high) / 2) / max(high - low, 1e-6)
    image = rng.standard_normal((size, size, 3), dtype=np.float32)
    image *= np.float32(sigma)
    image += base
    image += gradient[..., None]
    return np.clip(image, 0, 255, out=image)


def _digit_colour(rng, background_luma, spec):
    for _ in range(1000):
        colour = rng.integers(0, 256, size=3).astype(np.float32)
        if abs(float(colour @ LUMA_WEIGHTS) - background_luma) >= spec.min_contrast:
            return colour
    # practically unreachable: fall back to the farther of black and white
    return np.full(3, 0.0 if background_luma > 127.5 else 255.0, np.float32)


def _boxes_clear(box, placed_boxes, gap):
    """True if ``box`` expanded by ``gap`` does not intersect any placed box."""
    for other in placed_boxes:
        if (box[0] - gap < other[2] and other[0] < box[2] + gap
                and box[1] - gap < other[3] and other[1] < box[3] + gap):
            return False
    return True


def render_digit_sample(rng, spec=DEFAULT_SPEC) -> DigitSample:
    """Render one image of ``spec`` with ``rng`` (a ``numpy.random.Generator``).

    Draw order (fixed, part of the dataset's identity): digit count;
    background (base colour, gradient angle and amplitude, noise sigma, noise);
    then per digit its class, height, width and thickness ratios, slant,
    sub-pixel offset, integer positions until one is clear, and colours until
    one has enough contrast.
    """
    size = int(spec.image_size)
    count = int(rng.integers(spec.min_digits, spec.max_digits + 1))
    background = _background(rng, size, spec)
    background_luma = background @ LUMA_WEIGHTS
    image = background.copy()
    placed = []
    for _ in range(count):
        digit = int(rng.integers(0, 10))
        height = float(rng.uniform(spec.min_height, spec.max_height))
        width = height * float(rng.uniform(*spec.width_ratio))
        thickness = height * float(rng.uniform(*spec.thickness_ratio))
        slant = float(rng.uniform(0.0, spec.max_slant_deg))
        offset = (float(rng.uniform()), float(rng.uniform()))
        polygons = glyph_polygons(digit, height, width, thickness, slant, spec.segment_gap)
        coverage, _ = glyph_coverage(polygons, height, width, slant, offset, spec.supersample)
        local_box = coverage_box(coverage, spec.coverage_threshold)
        ph, pw = coverage.shape
        if local_box is None or ph > size or pw > size:
            continue
        for _ in range(spec.max_placement_tries):
            x0 = int(rng.integers(0, size - pw + 1))
            y0 = int(rng.integers(0, size - ph + 1))
            box = local_box + np.array([x0, y0, x0, y0], np.float32)
            if _boxes_clear(box, [p.box for p in placed], spec.min_box_gap):
                break
        else:
            continue  # no room for this digit
        region = (slice(y0, y0 + ph), slice(x0, x0 + pw))
        luma = float((background_luma[region] * coverage).sum() / coverage.sum())
        colour = _digit_colour(rng, luma, spec)
        alpha = coverage[..., None]
        image[region] += alpha * (colour - image[region])
        placed.append(PlacedDigit(digit, height, width, thickness, slant, offset,
                                  (x0, y0), coverage, box, colour, luma))
    image = np.rint(image).astype(np.uint8)
    boxes = np.array([p.box for p in placed], np.float32).reshape(-1, 4)
    labels = np.array([p.digit + 1 for p in placed], np.int32)
    return DigitSample(image, boxes, labels, background, placed)


def render_digit_image(rng, size=None, spec=DEFAULT_SPEC):
    """One synthetic digits image.

    Args:
        rng: ``numpy.random.Generator``.
        size: image side in pixels; overrides ``spec.image_size`` when given.
        spec: :class:`DigitsSpec`.

    Returns:
        ``(image, boxes, labels)``: ``(size, size, 3)`` uint8 RGB; ``(m, 4)``
        float32 ``[xmin, ymin, xmax, ymax]`` COCO pixel corners; ``(m,)`` int32
        labels ``digit + 1`` in ``1..10``.
    """
    if size is not None:
        spec = dataclasses.replace(spec, image_size=int(size))
    sample = render_digit_sample(rng, spec)
    return sample.image, sample.boxes, sample.labels


# --------------------------------------------------------------------------- dataset

def split_seed(seed, split) -> int:
    """The seed of one split, derived from the base ``seed`` and the split name."""
    state = np.random.SeedSequence([int(seed), zlib.crc32(split.encode("utf-8"))])
    return int(state.generate_state(1, np.uint32)[0])


def image_rng(seed, split, index):
    """The generator of image ``index`` of ``split`` (independent of the others)."""
    return np.random.default_rng([split_seed(seed, split), int(index)])


def _paths(root, split):
    return (os.path.join(root, "annotations", f"{split}.json"),
            os.path.join(root, "images", split))


def _info(spec, seed, split, count):
    return {
        "description": "synthetic seven-segment digits (ssd_keras.data.digits)",
        "generator_version": GENERATOR_VERSION,
        "seed": int(seed),
        "split": split,
        "split_seed": split_seed(seed, split),
        "num_images": int(count),
        "spec": dataclasses.asdict(spec),
    }


def _cached(annotation_path, info):
    if not os.path.exists(annotation_path):
        return False
    try:
        with open(annotation_path) as f:
            stored = json.load(f).get("info")
    except (OSError, ValueError):
        return False
    # compare through JSON so tuples and lists agree
    return stored == json.loads(json.dumps(info))


def _write_split(root, split, count, seed, spec, progress):
    annotation_path, image_dir = _paths(root, split)
    os.makedirs(image_dir, exist_ok=True)
    os.makedirs(os.path.dirname(annotation_path), exist_ok=True)
    images, annotations = [], []
    start = time.perf_counter()
    for index in range(count):
        sample = render_digit_sample(image_rng(seed, split, index), spec)
        file_name = f"{index:05d}.png"
        path = os.path.join(image_dir, file_name)
        bgr = cv2.cvtColor(sample.image, cv2.COLOR_RGB2BGR)
        if not cv2.imwrite(path, bgr, [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION]):
            raise OSError(f"could not write {path}")
        image_id = index + 1
        images.append({"id": image_id, "file_name": file_name,
                       "width": spec.image_size, "height": spec.image_size})
        for box, label in zip(sample.boxes.astype(int).tolist(), sample.labels.tolist()):
            w, h = box[2] - box[0], box[3] - box[1]
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": int(label), "bbox": [box[0], box[1], w, h],
                                "area": w * h, "iscrowd": 0})
        done = index + 1
        if progress and (done % 100 == 0 or done == count):
            elapsed = time.perf_counter() - start
            print(f"digits {split}: {done}/{count} images ({elapsed:.1f} s)", flush=True)
    # drop images of an earlier, larger generation
    expected = {im["file_name"] for im in images}
    for name in os.listdir(image_dir):
        if name.endswith(".png") and name not in expected:
            os.remove(os.path.join(image_dir, name))
    coco = {
        "info": _info(spec, seed, split, count),
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": name, "supercategory": "digit"}
                       for i, name in enumerate(DIGIT_CLASSES)],
    }
    # JSON last and atomically: its presence marks a complete split
    write_json(annotation_path, coco, indent=1)


def generate_digits_dataset(root, splits: Mapping[str, int] = DEFAULT_SPLITS, seed=DEFAULT_SEED,
                            overwrite=False, progress=True, spec=DEFAULT_SPEC):
    """Write the synthetic digits dataset under ``root`` (cached).

    A split whose ``annotations/<split>.json`` records the same spec, seed and
    image count is left alone unless ``overwrite``.

    Returns:
        ``{split: (annotation_json_path, image_dir)}``.
    """
    result = {}
    for split, count in splits.items():
        annotation_path, image_dir = _paths(root, split)
        if overwrite or not _cached(annotation_path, _info(spec, seed, split, count)):
            _write_split(root, split, int(count), seed, spec, progress)
        elif progress:
            print(f"digits {split}: cached in {annotation_path}", flush=True)
        result[split] = (annotation_path, image_dir)
    return result


def read_digits(root, split) -> list:
    """The ``Record``s of one generated split (convention ``"coco"``, labels =
    category ids 1..10)."""
    annotation_path, image_dir = _paths(root, split)
    if not os.path.exists(annotation_path):
        raise FileNotFoundError(
            f"{annotation_path} not found; generate it with generate_digits_dataset({root!r})")
    with open(annotation_path) as f:
        coco = json.load(f)
    by_image = {im["id"]: [] for im in coco["images"]}
    for ann in coco["annotations"]:
        by_image[ann["image_id"]].append(ann)
    records = []
    for im in coco["images"]:
        anns = by_image[im["id"]]
        boxes = [[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2],
                  a["bbox"][1] + a["bbox"][3]] for a in anns]
        records.append(Record(
            image_path=os.path.join(image_dir, im["file_name"]), image_id=im["id"],
            width=im["width"], height=im["height"], boxes=boxes,
            labels=[a["category_id"] for a in anns], difficult=[False] * len(anns),
            convention="coco"))
    return records
