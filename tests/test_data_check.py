"""Dataset checker: every kind of problem reported with its file; CLI exit status."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from ssd_keras.data import check
from ssd_keras.data.check import (check_coco, check_image_file, check_records, check_voc,
                                  filter_bad_records)
from ssd_keras.data.records import Record
from ssd_keras.data.voc import read_voc
from tests.voc_fixtures import make_coco_dataset, make_voc_tree


def _edit_xml(voc, image_id, tag, value):
    """Set the first ``<tag>`` of an annotation file to ``value``."""
    path = os.path.join(voc, "Annotations", f"{image_id}.xml")
    with open(path) as handle:
        text = handle.read()
    text, count = re.subn(rf"<{tag}>[^<]*</{tag}>", f"<{tag}>{value}</{tag}>", text, count=1)
    assert count == 1
    with open(path, "w") as handle:
        handle.write(text)


@pytest.fixture
def broken_voc(tmp_path):
    """A 9-image VOC2007 tree with one problem in each of images 2..9."""
    voc = make_voc_tree(tmp_path, num_images=9)
    jpeg = lambda i: os.path.join(voc, "JPEGImages", f"{i:06d}.jpg")  # noqa: E731
    os.remove(jpeg(2))                                               # missing image
    with open(jpeg(3), "rb") as handle:                              # truncated JPEG
        data = handle.read()
    with open(jpeg(3), "wb") as handle:
        handle.write(data[: len(data) * 2 // 3])
    with open(jpeg(4), "wb") as handle:                              # garbage bytes
        handle.write(np.random.default_rng(0).bytes(3000))
    with open(os.path.join(voc, "Annotations", "000005.xml"), "w") as handle:
        handle.write("<annotation><size><width>500</width>")        # malformed XML
    expected = {
        "000002.jpg": "missing image",
        "000003.jpg": "truncated JPEG",
        "000004.jpg": "unreadable image",
        "000005.xml": "malformed XML",
        "000006.xml": "unknown class name 'unicorn'",
        "000007.xml": "inverted or empty box",
        "000008.xml": "outside the 500x375 image",
        "000009.jpg": "image is 500x375 but the annotation says 640x480",
    }
    # image 6: unknown class; 7: inverted box; 8: box beyond the width; 9: wrong size
    _edit_xml(voc, "000006", "name", "unicorn")
    _edit_xml(voc, "000007", "xmin", "499")
    _edit_xml(voc, "000008", "xmax", "501")
    _edit_xml(voc, "000009", "width", "640")
    _edit_xml(voc, "000009", "height", "480")
    return voc, expected


def test_check_voc_reports_each_problem_with_its_file(broken_voc):
    voc, expected = broken_voc
    report = check_voc(voc, "trainval")
    lines = [str(p) for p in report.problems]
    for file, message in expected.items():
        hits = [line for line in lines if file in line and message in line]
        assert hits, f"{file}: {message!r} not reported in {lines}"
    # image 9 also has boxes within 500x375 but checked against 640x480: fine
    assert not any("000001" in line for line in lines), lines
    assert report.num_images == 9
    assert report.num_files == len(expected)
    assert report.summary() == f"9 images, {len(lines)} problems in {len(expected)} files"


def test_cli_exit_status_and_output(broken_voc, tmp_path, capsys):
    voc, expected = broken_voc
    assert check.main(["--voc", voc, "--image-set", "trainval"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[-1].startswith("FAILED: 9 images,")
    for file in expected:
        assert any(file in line for line in out[:-1])
    clean = make_voc_tree(tmp_path / "clean", num_images=3)
    coco_json, images = make_coco_dataset(tmp_path / "coco", num_images=3)
    assert check.main(["--voc", clean, "--coco-json", coco_json, "--images", images]) == 0
    assert capsys.readouterr().out.strip() == "OK: 6 images, 0 problems in 0 files"
    assert check.main(["--voc", clean, "--image-set", "nosuchset"]) == 1
    assert "nosuchset.txt" in capsys.readouterr().out


def test_cli_subprocess(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    if subprocess.run([sys.executable, "-m", "ssd_keras", "--help"], capture_output=True,
                      env=env).returncode != 0:
        pytest.skip("the package CLI does not load yet (other command modules missing)")
    voc = make_voc_tree(tmp_path, num_images=2)
    os.remove(os.path.join(voc, "JPEGImages", "000002.jpg"))
    run = subprocess.run([sys.executable, "-m", "ssd_keras", "check-data", "--voc", voc],
                         capture_output=True, text=True, env=env)
    assert run.returncode == 1, run.stderr
    assert "000002.jpg: missing image" in run.stdout


def test_check_coco(tmp_path):
    json_path, image_dir = make_coco_dataset(tmp_path, num_images=4)
    assert check_coco(json_path, image_dir).ok
    with open(json_path) as handle:
        data = json.load(handle)
    data["annotations"][0]["bbox"] = [300, 20, 50, 40]          # beyond the 320 width
    data["annotations"][1]["bbox"] = [float("nan"), 1, 2, 3]
    data["annotations"].append({"id": 99, "image_id": 101, "category_id": 2,
                                "bbox": [1, 1, 5, 5], "iscrowd": 0})
    data["images"][1]["height"] = 100
    with open(json_path, "w") as handle:
        json.dump(data, handle)
    os.remove(os.path.join(image_dir, "000000000102.jpg"))
    report = check_coco(json_path, image_dir)
    lines = [str(p) for p in report.problems]
    assert any("instances.json: image 100 (000000000100.jpg) object 0" in line
               and "outside the 320x240 image" in line for line in lines), lines
    assert any("object 1" in line and "non-finite" in line for line in lines), lines
    assert any("instances.json: annotation 99" in line and "unknown category id 2" in line
               for line in lines), lines
    assert any("000000000101.jpg: image is 320x240 but the annotation says 320x100" in line
               for line in lines), lines
    assert any("000000000102.jpg: missing image" in line for line in lines), lines
    assert report.num_images == 4
    with open(json_path, "w") as handle:
        handle.write("{\"images\": [")
    report = check_coco(json_path, image_dir)
    assert [str(p) for p in report.problems] == [
        f"{json_path}: malformed JSON (Expecting value: line 1 column 13 (char 12))"]


def test_truncated_png_and_good_png(tmp_path):
    import cv2
    path = str(tmp_path / "a.png")
    cv2.imwrite(path, np.zeros((20, 30, 3), np.uint8))
    assert check_image_file(path, 30, 20) == []
    with open(path, "rb") as handle:
        data = handle.read()
    with open(path, "wb") as handle:
        handle.write(data[:-20])
    assert "truncated PNG" in check_image_file(path)[0].message


def _record(tmp_path, name, boxes, convention="voc"):
    path = tmp_path / name
    path.write_bytes(b"not decoded when check_images=False")
    return Record(str(path), name, 100, 80, boxes, [1] * len(boxes), [False] * len(boxes),
                  convention=convention)


def test_record_box_rules(tmp_path):
    voc_ok = _record(tmp_path, "a", [[1, 1, 100, 80]])
    voc_zero = _record(tmp_path, "z", [[0, 0, 50, 50]])   # 1-based, but 0-based exporters
    voc_neg = _record(tmp_path, "b", [[-1, 1, 50, 50]])
    coco_ok = _record(tmp_path, "c", [[0, 0, 100, 80]], convention="coco")
    coco_neg = _record(tmp_path, "d", [[-3, 0, 50, 50]], convention="coco")
    nan = _record(tmp_path, "e", [[np.nan, 1, 5, 5]])
    flat = _record(tmp_path, "f", [[5, 5, 50, 5]])
    problems = check_records([voc_ok, voc_zero, voc_neg, coco_ok, coco_neg, nan, flat],
                             check_images=False)
    by_file = {os.path.basename(p.file): p.message for p in problems}
    assert sorted(by_file) == ["b", "d", "e", "f"]
    assert "outside" in by_file["b"] and "outside" in by_file["d"]
    assert "non-finite" in by_file["e"] and "inverted or empty" in by_file["f"]


def test_filter_bad_records(broken_voc, capsys):
    voc, _ = broken_voc
    records = read_voc(voc, "trainval", on_problem=lambda f, m: None)  # 000005 skipped
    assert len(records) == 8
    with pytest.raises(ValueError) as error:
        filter_bad_records(records)
    text = str(error.value)
    assert "000002.jpg: missing image" in text and "000007.xml" in text
    assert "000008.xml" in text and "skip_bad" in text
    cheap = filter_bad_records(records, skip_bad=True, check_images=False)
    assert [r.image_id for r in cheap] == ["000001", "000003", "000004", "000006", "000009"]
    out = capsys.readouterr().out
    assert "skipping 3 of 8 records" in out and "000002.jpg: missing image" in out
    decoded = filter_bad_records(records, skip_bad=True)        # decodes by default
    assert [r.image_id for r in decoded] == ["000001", "000006"]
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "skipping 6 of 8 records with problems:" and len(lines) == 7
    assert any("000003.jpg: truncated JPEG" in line for line in lines)   # one line each
    assert any("000004.jpg: unreadable image" in line for line in lines)
    clean = [r for r in records if r.image_id == "000001"]
    assert filter_bad_records(clean) == clean


def test_filter_bad_records_lists_first_twenty(tmp_path):
    records = [_record(tmp_path, f"r{i}", [[9, 9, 3, 3]]) for i in range(25)]
    with pytest.raises(ValueError, match=r"25 problems in 25 of 25 records") as error:
        filter_bad_records(records, check_images=False)
    assert "... and 5 more" in str(error.value)
