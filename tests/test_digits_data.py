"""Synthetic seven-segment digits: glyph boxes, placement rules, files, cache."""
import dataclasses
import itertools
import json
import math
import os

import numpy as np
import pytest

from ssd_keras.data import digits
from ssd_keras.data.digits import DigitsSpec

SPEC = digits.DEFAULT_SPEC
FLAT = DigitsSpec(image_size=160, max_gradient=0.0, max_noise_sigma=0.0)


def _samples(count, spec=SPEC, seed=7):
    return [digits.render_digit_sample(np.random.default_rng([seed, i]), spec)
            for i in range(count)]


def _polygon_area(poly):
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def test_coverage_is_antialiased_and_has_the_polygon_area():
    polygons = digits.glyph_polygons(8, 20.0, 11.0, 3.0, slant_deg=7.0)
    coverage, _ = digits.glyph_coverage(polygons, 20.0, 11.0, 7.0, offset=(0.3, 0.6))
    area = sum(_polygon_area(p) for p in polygons)
    assert coverage.sum() == pytest.approx(area, rel=0.02)
    fractional = (coverage > 0) & (coverage < 1)
    assert fractional.sum() > 20  # edges are blended, not hard


def test_upright_eight_box_is_its_width_and_height():
    polygons = digits.glyph_polygons(8, 20.0, 11.0, 3.0)
    coverage, _ = digits.glyph_coverage(polygons, 20.0, 11.0, 0.0, offset=(0.0, 0.0))
    box = digits.coverage_box(coverage)
    assert box[2] - box[0] == 11 and box[3] - box[1] == 20


def test_one_is_narrower_than_eight_of_the_same_height():
    widths = {}
    for digit in (1, 8):
        polygons = digits.glyph_polygons(digit, 24.0, 13.0, 4.0, slant_deg=5.0)
        coverage, _ = digits.glyph_coverage(polygons, 24.0, 13.0, 5.0, offset=(0.5, 0.5))
        box = digits.coverage_box(coverage)
        widths[digit] = box[2] - box[0]
    assert widths[1] <= 4.0 + 24.0 * math.tan(math.radians(5.0)) + 1
    assert widths[8] >= 13 - 1
    assert widths[1] < widths[8] / 2


def test_boxes_are_the_tight_half_coverage_extent_of_each_glyph():
    for sample in _samples(4, FLAT):
        assert len(sample.digits) == len(sample.boxes) == len(sample.labels)
        for placed, box, label in zip(sample.digits, sample.boxes, sample.labels):
            assert label == placed.digit + 1
            # re-render the glyph from its parameters, independently of the image
            polygons = digits.glyph_polygons(placed.digit, placed.height, placed.width,
                                             placed.thickness, placed.slant_deg, SPEC.segment_gap)
            coverage, _ = digits.glyph_coverage(polygons, placed.height, placed.width,
                                                placed.slant_deg, placed.offset)
            np.testing.assert_array_equal(coverage, placed.coverage)
            rows, cols = np.nonzero(coverage >= 0.5)
            x0, y0 = placed.origin
            expected = [x0 + cols.min(), y0 + rows.min(), x0 + cols.max() + 1, y0 + rows.max() + 1]
            np.testing.assert_array_equal(box, expected)
            # the image holds the colour blended with exactly this coverage
            ph, pw = coverage.shape
            got = sample.image[y0:y0 + ph, x0:x0 + pw].astype(np.float32)
            background = sample.background[y0:y0 + ph, x0:x0 + pw]
            want = background + coverage[..., None] * (placed.colour - background)
            assert np.abs(got - want).max() <= 0.5 + 1e-3


def test_generated_digits_follow_the_size_placement_and_contrast_rules():
    samples = _samples(25)
    counts = [len(s.boxes) for s in samples]
    assert min(counts) >= SPEC.min_digits and max(counts) <= SPEC.max_digits
    assert len(set(counts)) > 3  # the count varies
    size = SPEC.image_size
    for sample in samples:
        assert sample.image.shape == (size, size, 3) and sample.image.dtype == np.uint8
        boxes = sample.boxes
        assert boxes.dtype == np.float32 and sample.labels.dtype == np.int32
        assert np.all(boxes[:, :2] >= 0) and np.all(boxes[:, 2:] <= size)
        assert np.all((sample.labels >= 1) & (sample.labels <= 10))
        for a, b in itertools.combinations(boxes, 2):
            dx = max(b[0] - a[2], a[0] - b[2])
            dy = max(b[1] - a[3], a[1] - b[3])
            assert max(dx, dy) >= SPEC.min_box_gap, (a, b)
        luma = sample.background @ digits.LUMA_WEIGHTS
        for placed, box in zip(sample.digits, boxes):
            h = placed.height
            assert SPEC.min_height <= h <= SPEC.max_height
            assert 0.5 * h <= placed.width <= 0.6 * h
            assert 0.12 * h <= placed.thickness <= 0.2 * h
            box_w, box_h = box[2] - box[0], box[3] - box[1]
            lean = h * math.tan(math.radians(placed.slant_deg))
            # a box edge is within half a pixel (+ 1/16 of supersampling) of the glyph's
            tolerance = 1 + 2 / (2 * SPEC.supersample)
            assert box_h <= h + tolerance and box_w <= placed.width + lean + tolerance
            if set("ad") <= set(digits.SEGMENTS_BY_DIGIT[placed.digit]):
                assert abs(box_h - h) <= tolerance
            if placed.digit == 8:
                assert box_w >= placed.width - tolerance
            if placed.digit == 1:
                assert box_w <= placed.thickness + lean + tolerance
            # colour contrast against the background under the glyph
            x0, y0 = placed.origin
            ph, pw = placed.coverage.shape
            under = luma[y0:y0 + ph, x0:x0 + pw]
            mean = (under * placed.coverage).sum() / placed.coverage.sum()
            assert abs(float(placed.colour @ digits.LUMA_WEIGHTS) - mean) >= SPEC.min_contrast


def test_render_digit_image_size_override_and_determinism():
    image, boxes, labels = digits.render_digit_image(np.random.default_rng(3), size=128)
    assert image.shape == (128, 128, 3) and len(boxes) == len(labels) >= 1
    again = digits.render_digit_image(np.random.default_rng(3), size=128)
    np.testing.assert_array_equal(image, again[0])
    np.testing.assert_array_equal(boxes, again[1])


def _files(root):
    found = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, root)] = f.read()
    return found


def test_generation_is_byte_identical_and_per_image_independent(tmp_path):
    splits = {"train": 5, "test": 2}
    a = digits.generate_digits_dataset(tmp_path / "a", splits, seed=11, progress=False)
    digits.generate_digits_dataset(tmp_path / "b", splits, seed=11, progress=False)
    files_a, files_b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert sorted(files_a) == sorted(
        ["annotations/train.json", "annotations/test.json"]
        + [f"images/train/{i:05d}.png" for i in range(5)]
        + [f"images/test/{i:05d}.png" for i in range(2)])
    assert files_a == files_b
    assert files_a["images/train/00000.png"] != files_a["images/test/00000.png"]
    assert a["train"] == (str(tmp_path / "a" / "annotations" / "train.json"),
                          str(tmp_path / "a" / "images" / "train"))
    # image 3 alone (a 4-image split) equals image 3 of the 5-image split
    digits.generate_digits_dataset(tmp_path / "c", {"train": 4}, seed=11, progress=False)
    files_c = _files(tmp_path / "c")
    assert files_c["images/train/00003.png"] == files_a["images/train/00003.png"]


def test_cache_skips_regeneration_until_spec_or_count_changes(tmp_path, capsys):
    spec = DigitsSpec(image_size=96, max_digits=3)
    digits.generate_digits_dataset(tmp_path, {"train": 3}, seed=5, spec=spec, progress=True)
    assert "train: 3/3 images" in capsys.readouterr().out
    json_path = tmp_path / "annotations" / "train.json"
    png_path = tmp_path / "images" / "train" / "00001.png"
    stamps = (json_path.stat().st_mtime_ns, png_path.stat().st_mtime_ns)
    os.utime(json_path, ns=(1, 1))
    os.utime(png_path, ns=(1, 1))
    digits.generate_digits_dataset(tmp_path, {"train": 3}, seed=5, spec=spec, progress=True)
    assert "cached" in capsys.readouterr().out
    assert json_path.stat().st_mtime_ns == 1 and png_path.stat().st_mtime_ns == 1
    assert stamps[0] != 1
    # a different spec regenerates, and a smaller count removes stale images
    digits.generate_digits_dataset(tmp_path, {"train": 2}, seed=5,
                                   spec=dataclasses.replace(spec, max_digits=2), progress=False)
    assert json_path.stat().st_mtime_ns != 1
    assert sorted(os.listdir(tmp_path / "images" / "train")) == ["00000.png", "00001.png"]
    info = json.loads(json_path.read_text())["info"]
    assert info["num_images"] == 2 and info["seed"] == 5 and info["spec"]["max_digits"] == 2


def test_json_loads_in_pycocotools_and_reads_back_as_records(tmp_path):
    from pycocotools.coco import COCO

    spec = DigitsSpec(image_size=128)
    paths = digits.generate_digits_dataset(tmp_path, {"test": 4}, seed=9, spec=spec,
                                           progress=False)
    json_path, image_dir = paths["test"]
    coco = COCO(json_path)
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(digits.DIGIT_CLASSES)
    assert coco.getCatIds() == list(range(1, 11))
    records = digits.read_digits(tmp_path, "test")
    assert len(records) == len(coco.getImgIds()) == 4
    for index, record in enumerate(records):
        _, boxes, labels = digits.render_digit_image(digits.image_rng(9, "test", index), spec=spec)
        assert record.convention == "coco" and (record.width, record.height) == (128, 128)
        assert record.image_path == os.path.join(image_dir, f"{index:05d}.png")
        np.testing.assert_array_equal(record.boxes, boxes)
        np.testing.assert_array_equal(record.labels, labels)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=record.image_id))
        assert len(anns) == len(boxes)
        for ann in anns:
            x, y, w, h = ann["bbox"]
            assert ann["area"] == w * h and ann["iscrowd"] == 0
    with pytest.raises(FileNotFoundError):
        digits.read_digits(tmp_path, "train")
