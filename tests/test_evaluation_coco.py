"""evaluate_coco on a small hand-written COCO annotation file."""
import contextlib
import io
import json

import numpy as np
import pytest

from ssd_keras.evaluation.coco import (
    STAT_NAMES, coco_category_mapping, detections_to_coco_results, evaluate_coco,
    format_summary)


@pytest.fixture(autouse=True)
def _clear_keras_session():
    """Override conftest's Keras cleanup: these tests never touch Keras."""
    yield


# Category ids 3 ("cat") and 7 ("dog") -> contiguous labels 1 and 2.
# Areas: small < 32^2 <= medium < 96^2 <= large.
ANNOTATIONS = [
    # image_id, category_id, [x, y, w, h]
    (10, 3, [10, 10, 100, 120]),   # large
    (10, 7, [150, 40, 50, 60]),    # medium
    (11, 7, [5, 5, 20, 20]),       # small
    (11, 3, [60, 60, 40, 30]),     # medium
    (12, 7, [0, 0, 200, 100]),     # large
]


@pytest.fixture
def coco_json(tmp_path):
    data = {
        "images": [{"id": i, "file_name": f"{i}.jpg", "width": 320, "height": 240}
                   for i in (10, 11, 12)],
        "categories": [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}],
        "annotations": [
            {"id": n + 1, "image_id": img, "category_id": cat, "bbox": bbox,
             "area": float(bbox[2] * bbox[3]), "iscrowd": 0}
            for n, (img, cat, bbox) in enumerate(ANNOTATIONS)],
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    return str(path)


CAT_TO_LABEL = {3: 1, 7: 2}


def gt_detections(skip=()):
    """Detections equal to the ground truth, corners ``[x1, y1, x2, y2]``."""
    per_image = {10: [], 11: [], 12: []}
    for n, (img, cat, (x, y, w, h)) in enumerate(ANNOTATIONS):
        if n not in skip:
            per_image[img].append(([x, y, x + w, y + h], CAT_TO_LABEL[cat]))
    return [{"boxes": np.array([b for b, _ in v], float).reshape(-1, 4),
             "scores": np.linspace(0.9, 0.5, len(v)),
             "labels": np.array([label for _, label in v], int)}
            for _, v in sorted(per_image.items())]


def test_category_mapping(coco_json):
    label_to_id, label_to_name = coco_category_mapping(coco_json)
    assert label_to_id == {1: 3, 2: 7}
    assert label_to_name == {1: "cat", 2: "dog"}


def test_results_use_xywh_and_category_ids():
    dets = [{"boxes": np.array([[1.5, 2, 11.5, 22]]), "scores": np.array([0.5]),
             "labels": np.array([2])}]
    results = detections_to_coco_results(dets, [np.int64(11)], {1: 3, 2: 7})
    assert results == [{"image_id": 11, "category_id": 7, "bbox": [1.5, 2.0, 10.0, 20.0],
                        "score": 0.5}]
    json.dumps(results)
    with pytest.raises(ValueError):
        detections_to_coco_results(
            [{"boxes": np.zeros((1, 4)), "scores": [1.0], "labels": [5]}], [11], {1: 3})


def test_perfect_detections(coco_json, capsys):
    metrics = evaluate_coco(gt_detections(), coco_json)
    for name in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR100", "ARs", "ARm", "ARl"):
        assert metrics[name] == pytest.approx(1.0), name
    assert set(metrics) == set(STAT_NAMES) | {"per_category", "summary"}
    assert metrics["per_category"] == {"cat": pytest.approx(1.0), "dog": pytest.approx(1.0)}
    printed = capsys.readouterr().out
    assert printed.strip("\n") == metrics["summary"]
    assert "Loading" not in printed and "Running" not in printed
    lines = metrics["summary"].splitlines()
    assert len(lines) == 12
    assert lines[0] == (" Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all"
                        " | maxDets=100 ] = 1.000")


def test_misses_and_wrong_mapping(coco_json):
    # miss the small dog and the medium cat
    metrics = evaluate_coco(gt_detections(skip={2, 3}), coco_json, print_summary=False)
    assert 0.0 < metrics["AP"] < 1.0
    assert metrics["APs"] == 0.0 and metrics["ARs"] == 0.0
    assert metrics["APl"] == pytest.approx(1.0)
    # recall is averaged over categories: cat 1/2, dog 2/3
    assert metrics["AR100"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert 0.0 < metrics["per_category"]["dog"] < 1.0
    # swapping the mapping puts every box on the wrong category
    swapped = evaluate_coco(gt_detections(), coco_json, label_to_category_id={1: 7, 2: 3},
                            print_summary=False)
    assert swapped["AP"] == 0.0


def test_image_subset_and_coco_object(coco_json):
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(coco_json)
    dets = gt_detections()
    metrics = evaluate_coco(dets[2:], coco, image_ids=[12], print_summary=False)
    assert metrics["AP"] == pytest.approx(1.0)
    # image 12 holds only a large dog: no cat, no small or medium objects
    assert metrics["APs"] == -1.0 and metrics["APm"] == -1.0
    assert metrics["per_category"] == {"cat": -1.0, "dog": pytest.approx(1.0)}


def test_no_detections(coco_json, capsys):
    empty = [{"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "labels": np.zeros(0, int)}
             for _ in range(3)]
    metrics = evaluate_coco(empty, coco_json)
    assert [metrics[name] for name in STAT_NAMES] == [0.0] * 12
    assert metrics["per_category"] == {"cat": 0.0, "dog": 0.0}
    lines = capsys.readouterr().out.strip("\n").splitlines()
    assert len(lines) == 12 and all(line.endswith("= 0.000") for line in lines)
    # an area range without ground truth stays -1, as pycocotools reports it
    metrics = evaluate_coco(empty[2:], coco_json, image_ids=[12], print_summary=False)
    assert metrics["APs"] == -1.0 and metrics["APl"] == 0.0
    assert metrics["summary"].splitlines()[3].endswith("= -1.000")


def test_format_summary_reproduces_pycocotools(coco_json):
    metrics = evaluate_coco(gt_detections(skip={0}), coco_json, print_summary=False)
    assert format_summary(metrics) == metrics["summary"]
    assert format_summary([metrics[name] for name in STAT_NAMES]) == metrics["summary"]
    with pytest.raises(ValueError):
        format_summary([0.0] * 11)
