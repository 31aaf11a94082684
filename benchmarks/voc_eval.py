"""Time :func:`ssd_keras.evaluation.voc.evaluate_voc` at VOC2007-test scale.

Generates 4,952 images (the size of VOC2007 test) with 1-10 random ground-truth
boxes each over 20 classes (about 10% difficult) and 200 detections per image
(jittered copies of the ground truth plus random boxes), then reports the best
of 3 wall-clock timings for both the 11-point and the VOC2010 metric.

Usage: ``python benchmarks/voc_eval.py [--images N] [--detections K] [--repeats R]``
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

# Run from a checkout without installing the package.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ssd_keras.evaluation.voc import evaluate_voc  # noqa: E402


def random_boxes(rng, n, size=500):
    """``(n, 4)`` VOC pixel boxes ``[xmin, ymin, xmax, ymax]`` inside ``size x size``."""
    xy = rng.integers(1, size - 40, size=(n, 2))
    wh = rng.integers(10, 200, size=(n, 2))
    return np.concatenate([xy, np.minimum(xy + wh, size)], axis=1).astype(np.float64)


def make_dataset(num_images=4952, detections_per_image=200, num_classes=20, seed=0):
    """Random ground truths and detections in :func:`evaluate_voc`'s format."""
    rng = np.random.default_rng(seed)
    ground_truths, detections = [], []
    for _ in range(num_images):
        m = int(rng.integers(1, 11))
        gt_boxes = random_boxes(rng, m)
        gt_labels = rng.integers(1, num_classes + 1, size=m)
        ground_truths.append({"boxes": gt_boxes, "labels": gt_labels,
                              "difficult": rng.random(m) < 0.1})
        # Half the detections are jittered ground truth (TPs, duplicates and
        # near misses), half are random boxes with random labels.
        k_near = detections_per_image // 2
        src = rng.integers(0, m, size=k_near)
        near = gt_boxes[src] + rng.normal(0, 8, size=(k_near, 4)).round()
        far = random_boxes(rng, detections_per_image - k_near)
        boxes = np.concatenate([near, far])
        labels = np.concatenate([
            np.where(rng.random(k_near) < 0.8, gt_labels[src],
                     rng.integers(1, num_classes + 1, size=k_near)),
            rng.integers(1, num_classes + 1, size=detections_per_image - k_near)])
        scores = np.round(rng.random(detections_per_image), 3)  # rounding -> ties
        detections.append({"boxes": boxes, "scores": scores, "labels": labels})
    return detections, ground_truths


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4952)
    parser.add_argument("--detections", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    detections, ground_truths = make_dataset(args.images, args.detections)
    total = args.images * args.detections
    print(f"evaluate_voc: {args.images} images x {args.detections} detections "
          f"= {total:,} detections, 20 classes")
    for use_07 in (True, False):
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            result = evaluate_voc(detections, ground_truths, use_07_metric=use_07)
            times.append(time.perf_counter() - start)
        best = min(times)
        metric = "VOC2007 11-point" if use_07 else "VOC2010 area"
        print(f"  {metric:17s}: best of {args.repeats} = {best:.3f} s "
              f"({total / best:,.0f} detections/s), mAP = {result['map']:.4f}")


if __name__ == "__main__":
    main()
