"""SSD300 forward and train-step throughput (images/s).

Measures batch 8 and 32, with and without ``jit_compile`` (XLA), and with
mixed precision (``mixed_float16``) when a GPU is present.  Prints one line per
setting with the device, so results can be pasted into ``benchmarks/RESULTS.md``.

    python benchmarks/model_speed.py [--preset ssd300_voc] [--batches 8 32] [--steps 5]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import ssd_keras  # noqa: E402
from ssd_keras.families.ssd.matching import encode_targets_for_config  # noqa: E402


def make_batch(config, batch, seed=0):
    rng = np.random.default_rng(seed)
    h, w = config.image_size
    images = rng.uniform(0, 255, (batch, h, w, 3)).astype(np.float32)
    anchors = config.anchors()
    labels, boxes = [], []
    for _ in range(batch):
        xy = rng.uniform(0, 0.6, (3, 2))
        gt = np.concatenate([xy, xy + rng.uniform(0.1, 0.4, (3, 2))], 1).astype(np.float32)
        t = encode_targets_for_config(gt, rng.integers(1, config.num_classes + 1, 3), config, anchors)
        labels.append(t["labels"])
        boxes.append(t["boxes"])
    return images, {"labels": tf.stack(labels), "boxes": tf.stack(boxes)}


def measure(config, batch, jit, mixed, steps):
    keras.backend.clear_session()
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
    try:
        model = ssd_keras.build_model(config)
        model.compile(optimizer=keras.optimizers.SGD(1e-3, momentum=0.9), jit_compile=jit)
        x, y = make_batch(config, batch)
        ds = tf.data.Dataset.from_tensors((x, y)).repeat()
        predict = tf.function(lambda t: model(t, training=False), jit_compile=jit)
        predict(x)  # warm-up / compile
        t0 = time.perf_counter()
        for _ in range(steps):
            out = predict(x)
        _ = out["classification"].numpy()
        fwd = steps * batch / (time.perf_counter() - t0)
        model.fit(ds, steps_per_epoch=2, epochs=1, verbose=0)  # warm-up / compile
        t0 = time.perf_counter()
        model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
        train = steps * batch / (time.perf_counter() - t0)
        return fwd, train
    finally:
        keras.mixed_precision.set_global_policy("float32")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="ssd300_voc")
    p.add_argument("--batches", type=int, nargs="+", default=[8, 32])
    p.add_argument("--steps", type=int, default=5)
    args = p.parse_args()
    gpus = tf.config.list_physical_devices("GPU")
    device = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU") if gpus \
        else f"CPU ({os.cpu_count()} cores)"
    config = ssd_keras.presets.get(args.preset)
    print(f"{args.preset} on {device}; TF {tf.__version__}, Keras {keras.__version__}; "
          f"{args.steps} timed steps after warm-up")
    print(f"{'batch':>5} {'jit':>5} {'mixed':>6} {'forward img/s':>14} {'train img/s':>12}")
    for batch in args.batches:
        for jit in (False, True):
            for mixed in ((False, True) if gpus else (False,)):
                try:
                    fwd, train = measure(config, batch, jit, mixed, args.steps)
                    print(f"{batch:>5} {str(jit):>5} {str(mixed):>6} {fwd:>14.1f} {train:>12.1f}", flush=True)
                except Exception as e:  # report and go on (e.g. OOM at batch 32)
                    print(f"{batch:>5} {str(jit):>5} {str(mixed):>6} failed: {type(e).__name__}: "
                          f"{str(e).splitlines()[0][:120]}", flush=True)


if __name__ == "__main__":
    main()
