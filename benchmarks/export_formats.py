"""Size on disk and CPU latency of one detector as Keras, SavedModel, TFLite and ONNX.

Every format runs the whole detector -- forward pass, box decoding and NMS --
on one image (batch 1) at the model's input size; the latency is the median
of ``--runs`` calls after ``--warmup`` calls.  Keras is the inference model
(:func:`ssd_keras.build_inference_model`) in a ``tf.function``; SavedModel is
its ``serving_default`` signature (``tf.saved_model.load``); TFLite runs
LiteRT's signature runner (XNNPACK, ``--threads``); ONNX runs onnxruntime's
CPU provider (``--threads``).  Also printed: the export (conversion) time.

    python benchmarks/export_formats.py [--model R/model.keras | --preset NAME]
        [--runs 50] [--warmup 5] [--threads 0]

Default: ``ssd_mobilenet_v2_fpnlite_320`` with one class (raccoon-sized) and
random weights (latency and size do not depend on the weights), on the first
raccoon test photo when ``../shared/data/raccoon`` is there, else random pixels.
The numbers depend on the machine and on what else runs on it: say so when you
quote them.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import ssd_keras  # noqa: E402
from ssd_keras import export, presets  # noqa: E402

RACCOON_IMAGES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared",
                              "data", "raccoon", "images")


def disk_size(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(root, f))
               for root, _, files in os.walk(path) for f in files)


def sample_image(size) -> np.ndarray:
    """uint8 ``(1, H, W, 3)``: the first raccoon test photo resized (bilinear), else noise."""
    if os.path.isdir(RACCOON_IMAGES):
        name = sorted(os.listdir(RACCOON_IMAGES))[-40]
        image = tf.io.decode_jpeg(tf.io.read_file(os.path.join(RACCOON_IMAGES, name)), channels=3)
        image = tf.image.resize(tf.cast(image, tf.float32), size, method="bilinear")
        return tf.cast(tf.round(image), tf.uint8).numpy()[None]
    return np.random.default_rng(0).integers(0, 256, (1, *size, 3), dtype=np.uint8)


def median_ms(fn, runs: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def runners(model, paths, threads: int):
    """``{format: zero-argument callable}`` running each format on the sample image."""
    config = model.detector_config
    image = sample_image(tuple(config.image_size))
    inference = ssd_keras.build_inference_model(model)
    keras_fn = tf.function(lambda x: inference(x, training=False))
    as_float = tf.constant(image, tf.float32)
    out = {"keras": lambda: keras_fn(as_float)}

    serve = tf.saved_model.load(paths["saved_model"]).signatures["serving_default"]
    as_uint8 = tf.constant(image)
    out["saved_model"] = lambda: serve(images=as_uint8)

    from ai_edge_litert.interpreter import Interpreter
    lite = Interpreter(model_path=paths["tflite"], num_threads=threads or None)
    run_lite = lite.get_signature_runner("serving_default")
    out["tflite"] = lambda: run_lite(images=image)

    import onnxruntime
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(paths["onnx"], options,
                                           providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    out["onnx"] = lambda: dict(zip(names, session.run(None, {"images": image})))
    return out, image


def top_scores(fmt, out, k=20) -> np.ndarray:
    """The ``k`` best scores of one run, sorted (a check that the format agrees with Keras)."""
    scores = out["scores"] if fmt == "keras" else out["detection_scores"]
    return np.sort(np.asarray(scores).reshape(-1))[::-1][:k]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a saved detector (.keras); default: --preset")
    parser.add_argument("--preset", default="ssd_mobilenet_v2_fpnlite_320")
    parser.add_argument("--num-classes", type=int, default=1, help="with --preset [1]")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0,
                        help="TFLite / onnxruntime threads (0: their default)")
    args = parser.parse_args(argv)

    if args.model:
        from ssd_keras.evaluation.cli import load_detector
        model = load_detector(args.model)
    else:
        config = presets.get(args.preset, num_classes=args.num_classes,
                             class_names=None if args.num_classes != 1 else ("raccoon",))
        model = ssd_keras.build_model(config)
    config = model.detector_config
    print(f"export_formats: {config.name}, input {tuple(config.image_size)}, "
          f"{config.num_classes} classes, {model.count_params():,} parameters, "
          f"max_detections {config.max_detections}; CPU, {os.cpu_count()} cores "
          f"(shared machine: other jobs may be running); TF {tf.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        paths = {"keras": os.path.join(tmp, "model.keras")}
        start = time.perf_counter()
        model.save(paths["keras"])
        convert_s = {"keras": time.perf_counter() - start}
        for fmt, name in (("saved_model", "saved_model"), ("tflite", "model.tflite"),
                          ("onnx", "model.onnx")):
            paths[fmt] = os.path.join(tmp, name)
            start = time.perf_counter()
            export.export(model, fmt, paths[fmt])
            convert_s[fmt] = time.perf_counter() - start
        fns, _ = runners(model, paths, args.threads)
        top = {fmt: top_scores(fmt, fns[fmt]()) for fmt in fns}
        print(f"batch 1, median of {args.runs} runs after {args.warmup} warm-up; "
              f"threads: {'default' if not args.threads else args.threads}")
        print(f"{'format':<12} {'size MB':>8} {'export s':>9} {'latency ms':>11} "
              f"{'top-20 scores vs Keras':>23}")
        for fmt in ("keras", "saved_model", "tflite", "onnx"):
            ms = median_ms(fns[fmt], args.runs, args.warmup)
            print(f"{fmt:<12} {disk_size(paths[fmt]) / 1e6:>8.2f} {convert_s[fmt]:>9.1f} "
                  f"{ms:>11.1f} {np.abs(top[fmt] - top['keras']).max():>23.1e}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
