"""Throughput of the SSD training input pipeline (decode + augment + resize + encode).

Writes a few hundred VOC-sized (500x375) textured JPEGs with 1-5 boxes each to a
temporary folder, then times ``ssd_keras.data.pipeline.make_dataset`` for a
preset (default ``ssd300_voc``):

* on one core: tf.data private thread pool of 1 thread, no intra-op
  parallelism, ``num_parallel_calls=1``;
* on all cores: tf.data defaults, ``num_parallel_calls=AUTOTUNE``.

Besides wall-clock images/s it prints the process CPU time per image, which is
the fairer figure on a machine shared with other work.  ``--stages`` adds the
one-core breakdown: decode + resize (evaluation), + target encoding, + the
full augmentation.

    python benchmarks/input_pipeline.py [--images 300] [--batch-size 32] [--stages]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from ssd_keras import presets  # noqa: E402
from ssd_keras.data import pipeline  # noqa: E402
from ssd_keras.data.records import Record  # noqa: E402


def write_images(folder, count, width=500, height=375, seed=0):
    """Textured JPEGs (smooth colour field + noise, like photos compress) with 1-5 boxes."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(count):
        field = cv2.resize(rng.uniform(0, 255, (6, 8, 3)).astype(np.float32), (width, height))
        image = np.clip(field + rng.normal(0, 12, (height, width, 3)), 0, 255)
        boxes = []
        for _ in range(int(rng.integers(1, 6))):
            w, h = rng.uniform(0.1, 0.6) * width, rng.uniform(0.1, 0.6) * height
            x0, y0 = rng.uniform(0, width - w), rng.uniform(0, height - h)
            boxes.append([x0, y0, x0 + w, y0 + h])
            cv2.rectangle(image, (int(x0), int(y0)), (int(x0 + w), int(y0 + h)),
                          tuple(int(c) for c in rng.integers(0, 255, 3)), 3)
        path = os.path.join(folder, f"{i:06d}.jpg")
        cv2.imwrite(path, image.astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 90])
        records.append(Record(image_path=path, image_id=i, width=width, height=height,
                              boxes=np.array(boxes, np.float32),
                              labels=rng.integers(1, 21, len(boxes)),
                              difficult=np.zeros(len(boxes), bool), convention="coco"))
    return records


def single_core(ds):
    options = tf.data.Options()
    options.threading.private_threadpool_size = 1
    options.threading.max_intra_op_parallelism = 1
    options.autotune.enabled = False
    return ds.with_options(options)


def measure(ds, batch_size, num_batches, warmup=2):
    """(images/s wall clock, CPU ms per image) over ``num_batches`` after ``warmup``."""
    iterator = iter(ds)
    for _ in range(warmup):
        next(iterator)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(num_batches):
        next(iterator)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    images = num_batches * batch_size
    return images / wall, 1000.0 * cpu / images


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="ssd300_voc")
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=20, help="timed batches per measurement")
    parser.add_argument("--stages", action="store_true", help="also time the one-core stages")
    args = parser.parse_args(argv)

    config = presets.get(args.preset)
    cores = os.cpu_count()
    with tempfile.TemporaryDirectory() as folder:
        records = write_images(folder, args.images)
        print(f"{args.preset}: {len(records)} JPEGs 500x375 (1-5 boxes), "
              f"{config.num_anchors()} anchors, batch {args.batch_size}, "
              f"{args.batches} timed batches; os.cpu_count() = {cores}")

        def training(parallel, **kwargs):
            return pipeline.make_dataset(records, config, args.batch_size, training=True,
                                         seed=0, num_parallel_calls=parallel, **kwargs)

        if args.stages:
            stages = [
                ("decode + resize", pipeline.make_eval_dataset(records, config, args.batch_size,
                                                              num_parallel_calls=1).repeat()),
                ("decode + resize + encode", training(1, augment=False)),
            ]
            for name, ds in stages:
                rate, cpu_ms = measure(single_core(ds), args.batch_size, args.batches)
                print(f"  1 core  {name:<34s} {rate:7.1f} images/s  ({cpu_ms:.2f} CPU ms/image)")

        rate1, cpu1 = measure(single_core(training(1)), args.batch_size, args.batches)
        print(f"1 core:    full training pipeline {rate1:7.1f} images/s "
              f"({cpu1:.2f} CPU ms/image -> {1000.0 / cpu1:.0f} images/s per CPU-second)")
        rate_all, cpu_all = measure(training(tf.data.AUTOTUNE), args.batch_size, args.batches)
        print(f"{cores} cores:   full training pipeline {rate_all:7.1f} images/s "
              f"= {rate_all / cores:.1f} images/s per core "
              f"({cpu_all:.2f} CPU ms/image)")
        print("goal: >= 150 images/s per core")


if __name__ == "__main__":
    main()
