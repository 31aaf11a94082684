"""VOC and COCO readers on small on-disk datasets (tests/voc_fixtures.py)."""
import json
import os

import numpy as np
import pytest

from ssd_keras.data.coco import coco_label_map, read_coco
from ssd_keras.data.records import normalized_boxes
from ssd_keras.data.voc import (VOC_CLASSES, parse_voc_xml, read_voc, read_voc_07_12,
                                read_voc_union)
from tests.voc_fixtures import make_coco_dataset, make_voc_tree


@pytest.fixture(scope="module")
def voc2007(tmp_path_factory):
    return make_voc_tree(tmp_path_factory.mktemp("voc") / "VOCdevkit", num_images=4)


def test_voc_classes_standard_order():
    assert len(VOC_CLASSES) == 20
    assert VOC_CLASSES[0] == "aeroplane" and VOC_CLASSES[14] == "person"
    assert VOC_CLASSES[-1] == "tvmonitor"


def test_read_voc_quirks_exact(voc2007):
    records = read_voc(voc2007, "trainval")
    assert [r.image_id for r in records] == ["000001", "000002", "000003", "000004"]
    first = records[0]
    assert first.convention == "voc"
    assert first.image_path == os.path.join(voc2007, "JPEGImages", "000001.jpg")
    assert (first.width, first.height) == (500, 375)
    # person's own box, not its <part> head box; dog written as floats; car has no
    # <difficult>; the bottle is difficult
    np.testing.assert_array_equal(first.boxes, np.array([
        [100, 50, 220, 300],
        [273, 48, 400, 200],
        [20, 220, 160, 360],
        [420, 250, 470, 370]], np.float32))
    assert first.boxes.dtype == np.float32
    np.testing.assert_array_equal(first.labels, [15, 12, 7, 5])
    np.testing.assert_array_equal(first.difficult, [False, False, False, True])
    assert first.extra["annotation_file"].endswith(os.path.join("Annotations", "000001.xml"))
    for record in records:
        assert os.path.isfile(record.image_path)
        assert record.num_objects >= 1
        assert np.all(record.labels >= 1) and np.all(record.labels <= 20)


def test_read_voc_is_pixel_exact_and_normalises_once(voc2007):
    record = read_voc(voc2007, "trainval")[0]
    norm = normalized_boxes(record)
    np.testing.assert_allclose(norm[0], [99 / 500, 49 / 375, 220 / 500, 300 / 375], rtol=1e-6)


def test_part_before_own_bndbox(tmp_path):
    xml = tmp_path / "a.xml"
    xml.write_text("""<annotation><size><width>50</width><height>40</height></size>
      <object><name>person</name>
        <part><name>hand</name><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>3</xmax>
          <ymax>4</ymax></bndbox></part>
        <bndbox><xmin>10.5</xmin><ymin>11</ymin><xmax>30</xmax><ymax>39.0</ymax></bndbox>
      </object></annotation>""")
    annotation = parse_voc_xml(str(xml))
    np.testing.assert_array_equal(annotation.boxes, [[10.5, 11, 30, 39]])
    assert annotation.names == ["person"] and not annotation.difficult[0]


def test_malformed_xml_names_file(tmp_path):
    voc = make_voc_tree(tmp_path, num_images=2, quirks=False)
    bad = os.path.join(voc, "Annotations", "000002.xml")
    with open(bad, "w") as handle:
        handle.write("<annotation><size>")
    with pytest.raises(ValueError, match="000002.xml.*malformed XML"):
        read_voc(voc, "trainval")


def test_unknown_class_raises_or_is_reported(tmp_path):
    voc = make_voc_tree(tmp_path, num_images=2)
    xml = os.path.join(voc, "Annotations", "000001.xml")
    with open(xml) as handle:
        text = handle.read()
    with open(xml, "w") as handle:
        handle.write(text.replace("<name>dog</name>", "<name>unicorn</name>"))
    with pytest.raises(ValueError, match=r"000001\.xml.*'unicorn'"):
        read_voc(voc, "trainval")
    reported = []
    records = read_voc(voc, "trainval", on_problem=lambda f, m: reported.append((f, m)))
    assert len(reported) == 1 and reported[0][0] == xml and "unicorn" in reported[0][1]
    np.testing.assert_array_equal(records[0].labels, [15, 7, 5])  # the unicorn is dropped


def test_custom_class_names(tmp_path):
    voc = make_voc_tree(tmp_path, num_images=1)
    records = read_voc(voc, "trainval", class_names=("bottle", "car", "dog", "person"))
    np.testing.assert_array_equal(records[0].labels, [4, 3, 2, 1])


def test_missing_image_set_names_file(tmp_path):
    voc = make_voc_tree(tmp_path, num_images=1)
    with pytest.raises(FileNotFoundError, match="val.txt"):
        read_voc(voc, "val")


def test_07_12_union(tmp_path):
    devkit = tmp_path / "VOCdevkit"
    voc07 = make_voc_tree(devkit, num_images=3, year="2007")
    make_voc_tree(devkit, num_images=2, image_set="test", year="2007", start_index=10)
    voc12 = make_voc_tree(devkit, num_images=2, year="2012", seed=1)
    records = read_voc_07_12(str(devkit))
    assert [r.image_id for r in records] == [
        "000001", "000002", "000003", "2012_000001", "2012_000002"]
    assert records[3].image_path.startswith(voc12)
    same = read_voc_union([(voc07, "trainval"), (voc12, "trainval")])
    assert [r.image_path for r in same] == [r.image_path for r in records]
    assert [r.image_id for r in read_voc(voc07, "test")] == ["000010", "000011"]


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    return make_coco_dataset(tmp_path_factory.mktemp("coco"), num_images=4)


def test_read_coco(coco):
    json_path, image_dir = coco
    records = read_coco(json_path, image_dir)
    assert [r.image_id for r in records] == [100, 101, 102, 103]
    first = records[0]
    assert first.convention == "coco"
    assert first.image_path == os.path.join(image_dir, "000000000100.jpg")
    assert (first.width, first.height) == (320, 240)
    # [x, y, w, h] -> corners; crowd box kept apart
    np.testing.assert_allclose(first.boxes, [[10, 20, 60, 60], [100.5, 60.25, 130.5, 90.25]])
    np.testing.assert_array_equal(first.labels, [2, 4])  # ids 1, 3, 7, 90 -> 1..4
    np.testing.assert_array_equal(first.difficult, [False, False])
    np.testing.assert_array_equal(first.crowd_boxes, [[5, 5, 105, 85]])
    last = records[-1]
    assert last.boxes.shape == (0, 4) and last.labels.shape == (0,)
    for record in records:
        assert os.path.isfile(record.image_path)
        assert np.all(record.labels >= 1) and np.all(record.labels <= 4)


def test_coco_label_map(coco):
    json_path, _ = coco
    labels = coco_label_map(json_path)
    assert labels.label_to_category_id == {1: 1, 2: 3, 3: 7, 4: 90}
    assert labels.class_names == ("person", "car", "train", "toothbrush")
    assert labels.category_id_to_label[90] == 4 and labels.num_classes == 4
    label_to_category_id, label_to_name = coco_label_map(json_path)
    assert label_to_name[3] == "train" and label_to_category_id[3] == 7
    with open(json_path) as handle:  # an already-loaded dict works too
        data = json.load(handle)
    assert coco_label_map(data) == labels
    assert len(read_coco(data, coco[1])) == 4


def test_coco_errors_name_file(tmp_path, coco):
    json_path, image_dir = coco
    with open(json_path) as handle:
        data = json.load(handle)
    data["annotations"][0]["category_id"] = 55
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"bad\.json.*unknown category id 55"):
        read_coco(str(bad), image_dir)
    broken = tmp_path / "broken.json"
    broken.write_text("{\"images\": [")
    with pytest.raises(ValueError, match=r"broken\.json.*malformed JSON"):
        read_coco(str(broken), image_dir)
