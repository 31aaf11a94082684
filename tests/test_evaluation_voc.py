"""evaluate_voc against a literal transcription of the VOC devkit."""
import math
import os

import numpy as np
import pytest

from ssd_keras.data.records import Record
from ssd_keras.evaluation.voc import (
    VOC07_RECALL_THRESHOLDS, evaluate_voc, voc_ap, write_voc_results)


@pytest.fixture(autouse=True)
def _clear_keras_session():
    """Override conftest's Keras cleanup: these tests never touch Keras, and
    importing it plus clear_session() per test would cost more than the tests."""
    yield


# --- Reference: VOCevaldet.m / VOCap.m, transcribed line by line -------------

def matlab_colon(a, d, b):
    """MATLAB's ``a:d:b`` (built from both ends, middle element (a+b)/2)."""
    n = int(math.floor((b - a) / d + 1e-10))
    out = [0.0] * (n + 1)
    for k in range(n // 2 + 1):
        out[k] = a + k * d
        out[n - k] = b - k * d
    if n % 2 == 0:
        out[n // 2] = (a + b) / 2
    return out


def matlab_max(values):
    """MATLAB max: [] for empty, ignores NaN unless all NaN."""
    if not values:
        return None
    real = [v for v in values if not math.isnan(v)]
    return max(real) if real else float("nan")


def divide(a, b):
    if b == 0:
        return float("nan") if a == 0 else math.copysign(float("inf"), a)
    return a / b


def devkit_class_ap(dets, gts, cls, use_07, minoverlap):
    """VOCevaldet for one class; dets/gts lists of (boxes, scores, labels) per image."""
    npos = 0
    gt = []
    for boxes, labels, difficult in gts:
        clsinds = [j for j in range(len(labels)) if labels[j] == cls]
        gt.append({"BB": [list(boxes[j]) for j in clsinds],
                   "diff": [bool(difficult[j]) for j in clsinds],
                   "det": [False] * len(clsinds)})
        npos += sum(1 for j in clsinds if not difficult[j])

    # "results file": image order, then order within the image
    ids, confidence, BB = [], [], []
    for i, (boxes, scores, labels) in enumerate(dets):
        for k in range(len(labels)):
            if labels[k] == cls:
                ids.append(i)
                confidence.append(float(scores[k]))
                BB.append([float(v) for v in boxes[k]])

    si = sorted(range(len(confidence)), key=lambda d: -confidence[d])  # stable
    ids = [ids[d] for d in si]
    BB = [BB[d] for d in si]

    nd = len(confidence)
    tp = [0] * nd
    fp = [0] * nd
    for d in range(nd):
        i = ids[d]
        bb = BB[d]
        ovmax = -math.inf
        jmax = None
        for j in range(len(gt[i]["BB"])):
            bbgt = gt[i]["BB"][j]
            bi = [max(bb[0], bbgt[0]), max(bb[1], bbgt[1]),
                  min(bb[2], bbgt[2]), min(bb[3], bbgt[3])]
            iw = bi[2] - bi[0] + 1
            ih = bi[3] - bi[1] + 1
            if iw > 0 and ih > 0:
                ua = ((bb[2] - bb[0] + 1) * (bb[3] - bb[1] + 1)
                      + (bbgt[2] - bbgt[0] + 1) * (bbgt[3] - bbgt[1] + 1)
                      - iw * ih)
                ov = iw * ih / ua
                if ov > ovmax:
                    ovmax = ov
                    jmax = j
        if ovmax >= minoverlap:
            if not gt[i]["diff"][jmax]:
                if not gt[i]["det"][jmax]:
                    tp[d] = 1
                    gt[i]["det"][jmax] = True
                else:
                    fp[d] = 1
        else:
            fp[d] = 1

    ctp = cfp = 0
    rec, prec = [], []
    for d in range(nd):
        ctp += tp[d]
        cfp += fp[d]
        rec.append(divide(ctp, npos))
        prec.append(divide(ctp, cfp + ctp))

    if use_07:
        ap = 0.0
        for t in matlab_colon(0, 0.1, 1):
            p = matlab_max([prec[d] for d in range(nd) if rec[d] >= t])
            if p is None:
                p = 0.0
            ap = ap + p / 11
        return ap
    # VOCap
    mrec = [0.0] + rec + [1.0]
    mpre = [0.0] + prec + [0.0]
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = matlab_max([mpre[i], mpre[i + 1]])
    ap = 0.0
    for i in range(1, len(mrec)):
        if mrec[i] != mrec[i - 1] or math.isnan(mrec[i]) or math.isnan(mrec[i - 1]):
            ap += (mrec[i] - mrec[i - 1]) * mpre[i]
    return ap


def devkit_aps(detections, ground_truths, use_07, minoverlap=0.5):
    dets = [(d["boxes"], d["scores"], d["labels"]) for d in detections]
    gts = [(g["boxes"], g["labels"], g["difficult"]) for g in ground_truths]
    classes = sorted({int(label) for g in ground_truths for label in g["labels"]})
    return {c: devkit_class_ap(dets, gts, c, use_07, minoverlap) for c in classes}


# --- Random cases ------------------------------------------------------------

def random_case(rng, num_images, num_classes):
    """Integer boxes, duplicates, exact-0.5 overlaps, tied scores, difficult boxes."""
    gts, dets = [], []
    for _ in range(num_images):
        m = int(rng.integers(0, 6))
        xy = rng.integers(1, 40, size=(m, 2))
        wh = rng.integers(1, 20, size=(m, 2))
        gt_boxes = np.concatenate([xy, xy + wh - 1], axis=1).astype(float)
        gt_labels = rng.integers(1, num_classes + 1, size=m)
        difficult = rng.random(m) < 0.25
        gts.append({"boxes": gt_boxes, "labels": gt_labels, "difficult": difficult})

        boxes, labels = [], []
        for j in range(m):
            for _ in range(int(rng.integers(0, 4))):  # 0..3 copies: misses, duplicates
                b = gt_boxes[j].copy()
                kind = rng.random()
                if kind < 0.3:
                    pass  # exact
                elif kind < 0.5:
                    # keep half the height: overlap exactly 0.5 when height is even
                    h = b[3] - b[1] + 1
                    b[3] = b[1] + np.floor(h / 2) - 1
                else:
                    b += rng.integers(-3, 4, size=4)
                    b[2:] = np.maximum(b[2:], b[:2])
                boxes.append(b)
                labels.append(gt_labels[j] if rng.random() < 0.85 else
                              rng.integers(1, num_classes + 1))
        for _ in range(int(rng.integers(0, 4))):  # background false positives
            xy = rng.integers(1, 40, size=2)
            boxes.append(np.concatenate([xy, xy + rng.integers(0, 15, size=2)]).astype(float))
            labels.append(rng.integers(1, num_classes + 1))
        k = len(boxes)
        dets.append({"boxes": np.array(boxes, float).reshape(-1, 4),
                     "scores": rng.integers(0, 5, size=k) / 4.0,  # many ties
                     "labels": np.array(labels, int)})
    return dets, gts


def assert_same_ap(actual, expected):
    if math.isnan(expected):
        assert math.isnan(actual)
    else:
        assert actual == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("use_07", [True, False])
@pytest.mark.parametrize("first_seed", [0, 100, 200, 300])
def test_matches_devkit_transcription(first_seed, use_07):
    for seed in range(first_seed, first_seed + 25):
        rng = np.random.default_rng(seed)
        dets, gts = random_case(rng, num_images=int(rng.integers(1, 12)), num_classes=4)
        expected = devkit_aps(dets, gts, use_07)
        result = evaluate_voc(dets, gts, use_07_metric=use_07)
        assert sorted(result["ap"]) == sorted(expected), seed
        for c in expected:
            assert_same_ap(result["ap"][c], expected[c])
        finite = [v for v in expected.values() if not math.isnan(v)]
        if finite:
            assert result["map"] == pytest.approx(np.mean(finite), abs=1e-12)


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_matches_devkit_other_thresholds(threshold):
    rng = np.random.default_rng(123)
    for _ in range(5):
        dets, gts = random_case(rng, num_images=10, num_classes=3)
        expected = devkit_aps(dets, gts, True, threshold)
        result = evaluate_voc(dets, gts, iou_threshold=threshold)
        for c in expected:
            assert_same_ap(result["ap"][c], expected[c])


# --- Hand-computed cases -----------------------------------------------------

def gt(boxes, labels, difficult=None):
    boxes = np.array(boxes, float).reshape(-1, 4)
    if difficult is None:
        difficult = [False] * len(boxes)
    return {"boxes": boxes, "labels": np.array(labels), "difficult": np.array(difficult)}


def det(boxes, scores, labels):
    return {"boxes": np.array(boxes, float).reshape(-1, 4), "scores": np.array(scores, float),
            "labels": np.array(labels)}


@pytest.mark.parametrize("use_07", [True, False])
def test_perfect_detections(use_07):
    gts = [gt([[1, 1, 10, 10], [20, 20, 40, 30]], [1, 2]), gt([[5, 5, 50, 50]], [1])]
    dets = [det(g["boxes"], [0.9] * len(g["labels"]), g["labels"]) for g in gts]
    result = evaluate_voc(dets, gts, use_07_metric=use_07)
    # 11 * (1/11) sums to 1.0000000000000002, in MATLAB as here
    assert result["ap"] == {1: pytest.approx(1.0), 2: pytest.approx(1.0)}
    assert result["map"] == pytest.approx(1.0)
    assert result["num_positives"] == {1: 2, 2: 1}


def test_overlap_exactly_half_is_a_match():
    # +1 convention: intersection 10*5 = 50, union 100 + 50 - 50 = 100 -> 0.5
    gts = [gt([[1, 1, 10, 10]], [1])]
    dets = [det([[1, 1, 10, 5]], [0.8], [1])]
    assert evaluate_voc(dets, gts, use_07_metric=False)["ap"][1] == 1.0
    # just below 0.5: no match
    dets = [det([[1, 1, 10, 4.9]], [0.8], [1])]
    assert evaluate_voc(dets, gts, use_07_metric=False)["ap"][1] == 0.0


def test_duplicate_is_false_positive():
    gts = [gt([[1, 1, 10, 10]], [1])]
    dets = [det([[1, 1, 10, 10], [1, 1, 10, 10]], [0.9, 0.8], [1, 1])]
    result = evaluate_voc(dets, gts, use_07_metric=False)
    np.testing.assert_array_equal(result["recall"][1], [1.0, 1.0])
    np.testing.assert_array_equal(result["precision"][1], [1.0, 0.5])
    assert result["ap"][1] == 1.0
    # a higher-scored miss before the hit: precision 0.5 at recall 1
    dets = [det([[1, 1, 10, 10], [30, 30, 40, 40]], [0.8, 0.9], [1, 1])]
    result = evaluate_voc(dets, gts, use_07_metric=False)
    assert result["ap"][1] == 0.5


def test_no_fallback_to_second_best_ground_truth():
    # Both detections prefer the left box; the second is a FP even though it
    # overlaps the right box by more than 0.5 (the devkit does not fall back).
    gts = [gt([[1, 1, 10, 10], [3, 1, 12, 10]], [1, 1])]
    dets = [det([[1, 1, 10, 10], [2, 1, 10, 10]], [0.9, 0.8], [1, 1])]
    result = evaluate_voc(dets, gts, use_07_metric=False)
    np.testing.assert_array_equal(result["precision"][1], [1.0, 0.5])
    assert result["ap"][1] == 0.5


def test_difficult_match_is_ignored():
    gts = [gt([[1, 1, 10, 10], [30, 30, 40, 40]], [1, 1], [False, True])]
    # detection on the difficult box scored highest: neither TP nor FP
    dets = [det([[30, 30, 40, 40], [1, 1, 10, 10]], [0.9, 0.5], [1, 1])]
    result = evaluate_voc(dets, gts, use_07_metric=False)
    assert result["num_positives"] == {1: 1}
    assert np.isnan(result["precision"][1][0])
    assert result["ap"][1] == 1.0
    # without the flag it is a second positive, found first: precision [1, 1]
    gts[0]["difficult"][:] = False
    result = evaluate_voc(dets, gts, use_07_metric=False)
    assert result["num_positives"] == {1: 2}
    np.testing.assert_array_equal(result["recall"][1], [0.5, 1.0])


def test_difficult_only_class_follows_devkit():
    gts = [gt([[1, 1, 10, 10], [1, 1, 10, 10]], [1, 2], [False, True])]
    dets = [det([[1, 1, 10, 10], [1, 1, 10, 10]], [0.9, 0.9], [1, 2])]
    r07 = evaluate_voc(dets, gts, use_07_metric=True)
    assert r07["ap"] == {1: pytest.approx(1.0), 2: 0.0}  # NaN recall never >= t
    assert r07["map"] == pytest.approx(0.5)
    r10 = evaluate_voc(dets, gts, use_07_metric=False)
    assert r10["ap"][1] == 1.0 and np.isnan(r10["ap"][2])
    assert r10["map"] == 1.0  # NaN APs are left out of the mean
    # no detection for the difficult-only class: 0 under both metrics
    dets = [det([[1, 1, 10, 10]], [0.9], [1])]
    assert evaluate_voc(dets, gts, use_07_metric=False)["ap"][2] == 0.0


def test_score_ties_keep_image_order():
    # Same score; image 0's detection is a FP, image 1's a TP.  The stable sort
    # puts the FP first: precision [0, 0.5].
    gts = [gt([[1, 1, 10, 10]], [1]), gt([[1, 1, 10, 10]], [1])]
    dets = [det([[50, 50, 60, 60]], [0.5], [1]), det([[1, 1, 10, 10]], [0.5], [1])]
    result = evaluate_voc(dets, gts, use_07_metric=False)
    np.testing.assert_array_equal(result["precision"][1], [0.0, 0.5])
    assert result["ap"][1] == 0.25


def test_voc07_threshold_is_matlab_colon():
    # MATLAB's 0:0.1:1 has 0.30000000000000004 but exact 0.6 and 0.7.
    np.testing.assert_array_equal(np.array(matlab_colon(0, 0.1, 1)), VOC07_RECALL_THRESHOLDS)
    rec = np.array([0.7])  # 7 of 10 positives
    assert voc_ap(rec, np.array([1.0]), True) == pytest.approx(8 / 11)
    rec = np.array([0.3])  # 3 / 10 < 0.30000000000000004
    assert voc_ap(rec, np.array([1.0]), True) == pytest.approx(3 / 11)


def test_voc_ap_hand_values():
    rec = np.array([0.5, 0.5, 1.0])
    prec = np.array([1.0, 0.5, 2 / 3])
    assert voc_ap(rec, prec, False) == pytest.approx(0.5 * 1.0 + 0.5 * 2 / 3)
    assert voc_ap(rec, prec, True) == pytest.approx((6 * 1.0 + 5 * 2 / 3) / 11)
    assert voc_ap(np.zeros(0), np.zeros(0), True) == 0.0
    assert voc_ap(np.zeros(0), np.zeros(0), False) == 0.0


def test_accepts_records_and_ignores_unknown_labels():
    record = Record("a.jpg", "000001", 100, 100, [[1, 1, 10, 10]], [3], [False])
    dets = [det([[1, 1, 10, 10], [1, 1, 10, 10]], [0.9, 0.9], [3, 5])]
    result = evaluate_voc(dets, [record], use_07_metric=False)
    assert result["ap"] == {3: 1.0}


def test_empty_inputs():
    gts = [gt([[1, 1, 10, 10]], [1]), gt(np.zeros((0, 4)), [])]
    dets = [det(np.zeros((0, 4)), [], []), det(np.zeros((0, 4)), [], [])]
    assert evaluate_voc(dets, gts)["ap"] == {1: 0.0}
    with pytest.raises(ValueError):
        evaluate_voc(dets[:1], gts)


def test_write_voc_results(tmp_path):
    dets = [det([[1, 2, 30.5, 40], [5, 6, 7, 8]], [0.9, 0.25], [1, 2]),
            det([[10, 10, 20, 20]], [0.125], [1])]
    paths = write_voc_results(dets, ["000005", "000007"], ["aeroplane", "bicycle", "bird"],
                              str(tmp_path / "results"))
    assert [os.path.basename(p) for p in paths] == [
        "comp4_det_test_aeroplane.txt", "comp4_det_test_bicycle.txt", "comp4_det_test_bird.txt"]
    with open(paths[0]) as f:
        assert f.read() == ("000005 0.900000 1.00 2.00 30.50 40.00\n"
                            "000007 0.125000 10.00 10.00 20.00 20.00\n")
    with open(paths[1]) as f:
        assert f.read() == "000005 0.250000 5.00 6.00 7.00 8.00\n"
    with open(paths[2]) as f:
        assert f.read() == ""
    with pytest.raises(ValueError):
        write_voc_results([det([[1, 1, 2, 2]], [0.5], [4])], ["x"], ["a"], str(tmp_path))
