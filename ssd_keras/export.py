"""Export a detector with the TF Object Detection API's interface: SavedModel, TFLite, ONNX.

::

    python -m ssd_keras export --model R/model.keras --format saved_model --out R/saved_model
    python -m ssd_keras export --model R/model.keras --format tflite --out R/model.tflite
    python -m ssd_keras export --model R/model.keras --format onnx --out R/model.onnx

The exported graph takes ``images`` uint8 RGB ``(N, H, W, 3)`` and returns what
a TF OD API exported detector returns, so an app written for those swaps models:

``detection_boxes``   float32 ``(N, K, 4)`` normalised ``[ymin, xmin, ymax, xmax]``
                      (relative to the image given, clipped to ``[0, 1]``);
``detection_scores``  float32 ``(N, K)``, best first;
``detection_classes`` float32 ``(N, K)``, 1-based in the order of the config's
                      ``class_names`` (class 1 is the first name, for softmax
                      models -- background dropped -- and sigmoid models alike);
``num_detections``    float32 ``(N,)``: entries past it are zero padding.

``K`` is the config's ``max_detections`` (or ``--max-detections``); the score
threshold, NMS IoU and candidate counts are the config's decoding defaults
unless overridden, and are baked into the graph.

* ``saved_model``: a ``serving_default`` signature taking ``images`` of any
  batch and any size; it resizes inside to the model's input with
  ``tf.image.resize(..., "bilinear")`` (no antialiasing, aspect ratio not kept) --
  exactly what ``evaluate`` and ``predict`` do (:func:`ssd_keras.data.augment.resize`).
* ``tflite`` and ``onnx``: ``images`` uint8 ``(1, H, W, 3)`` at the model's
  input size (resize in the app); the four outputs under those names.  TFLite has
  one ``serving_default`` signature (LiteRT's signature runner) and uses
  builtin ops only; ONNX is converted with ``tf2onnx`` (opset 17 by default).

Decoding runs inside every exported graph: the family's decoder layer
(``config.family.decoder_layer``) on top of the model, through
:func:`ssd_keras.models.base.build_inference_model` -- for SSD the
:class:`~ssd_keras.families.ssd.postprocess.DecodeDetections` layer, whose NMS
is a single ``NonMaxSuppressionV5`` per image (a TFLite builtin and an ONNX
``NonMaxSuppression``); for CenterNet the peak decoder (max-pool + top-k, no
NMS).  A new family plugs in by returning the same detections dict from its
decoder layer: ``boxes`` in input pixels ``[xmin, ymin, xmax, ymax]``,
``scores``, ``classes`` (1..K), ``num_detections``.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from typing import Optional

FORMATS = ("saved_model", "tflite", "onnx")
OUTPUT_NAMES = ("detection_boxes", "detection_scores", "detection_classes", "num_detections")
INPUT_NAME = "images"
SIGNATURE = "serving_default"
DEFAULT_ONNX_OPSET = 17


def od_api_outputs(detections, image_size):
    """An inference model's detections -> the TF OD API's four outputs.

    Args:
        detections: ``{"boxes": (N, K, 4) [xmin, ymin, xmax, ymax] in pixels of
            the model input, "scores": (N, K), "classes": (N, K) int 1..K
            (0 = padding), "num_detections": (N,)}``.
        image_size: the model input ``(height, width)``.

    Returns:
        dict of float32 tensors named as :data:`OUTPUT_NAMES` (see module docstring).
    """
    import tensorflow as tf

    h, w = (float(s) for s in image_size)
    boxes = tf.cast(detections["boxes"], tf.float32) / tf.constant([w, h, w, h], tf.float32)
    return {"detection_boxes": tf.gather(boxes, [1, 0, 3, 2], axis=-1),
            "detection_scores": tf.cast(detections["scores"], tf.float32),
            "detection_classes": tf.cast(detections["classes"], tf.float32),
            "num_detections": tf.cast(detections["num_detections"], tf.float32)}


def _archive(model, any_size: bool, **decode_overrides):
    """A Keras ``ExportArchive`` whose ``serving_default`` maps uint8 images to OD API outputs.

    ``any_size``: input ``(None, None, None, 3)`` resized inside (SavedModel);
    else ``(1, H, W, 3)`` at the model's input size (TFLite / ONNX: a static
    batch, so the decoder's NMS is unrolled and no loop op has to convert).
    """
    import keras
    import tensorflow as tf

    from ssd_keras.models.base import build_inference_model

    size = tuple(int(s) for s in model.detector_config.image_size)
    inference = build_inference_model(model, **decode_overrides)

    def serve(images):
        x = tf.cast(images, tf.float32)
        if any_size:
            x = tf.image.resize(x, size, method="bilinear")   # = ssd_keras.data.augment.resize
        return od_api_outputs(inference(x, training=False), size)

    shape = (None, None, None, 3) if any_size else (1, *size, 3)
    archive = keras.export.ExportArchive()
    archive.track(inference)
    archive.add_endpoint(SIGNATURE, serve,
                         input_signature=[tf.TensorSpec(shape, tf.uint8, name=INPUT_NAME)])
    return archive, serve, shape


def export_saved_model(model, path: str, **decode_overrides) -> str:
    """Write a SavedModel directory with the ``serving_default`` signature (any image size)."""
    archive, _, _ = _archive(model, any_size=True, **decode_overrides)
    archive.write_out(path, verbose=False)
    return path


def export_tflite(model, path: str, **decode_overrides) -> str:
    """Write a float32 ``.tflite`` (builtin ops only, one ``serving_default`` signature)."""
    import tensorflow as tf

    archive, _, _ = _archive(model, any_size=False, **decode_overrides)
    with tempfile.TemporaryDirectory() as tmp:
        archive.write_out(tmp, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=[SIGNATURE])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        flatbuffer = converter.convert()
    _write_bytes(path, flatbuffer)
    return path


def export_onnx(model, path: str, opset: int = DEFAULT_ONNX_OPSET, **decode_overrides) -> str:
    """Write an ``.onnx`` model through ``tf2onnx`` (input ``images``, the four outputs)."""
    try:
        import tf2onnx
    except ImportError:
        from ssd_keras.usage import CommandError
        raise CommandError("--format onnx needs tf2onnx (pip install tf2onnx onnx)") from None
    import tensorflow as tf

    _, serve, shape = _archive(model, any_size=False, **decode_overrides)
    spec = (tf.TensorSpec(shape, tf.uint8, name=INPUT_NAME),)
    proto, _ = tf2onnx.convert.from_function(tf.function(serve, input_signature=spec),
                                             input_signature=spec, opset=opset)
    _write_bytes(path, proto.SerializeToString())
    return path


EXPORTERS = {"saved_model": export_saved_model, "tflite": export_tflite, "onnx": export_onnx}


def export(model, fmt: str, path: str, **decode_overrides) -> str:
    """Export ``model`` (an ssd_keras detector) as ``fmt`` (one of :data:`FORMATS`) to ``path``."""
    if fmt not in EXPORTERS:
        raise ValueError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
    return EXPORTERS[fmt](model, path, **decode_overrides)


def _write_bytes(path: str, data: bytes) -> None:
    from ssd_keras.io_utils import atomic_write

    def write(tmp):
        with open(tmp, "wb") as handle:
            handle.write(data)
    atomic_write(path, write)


# ----------------------------------------------------------------------------- CLI


def run_export(args: argparse.Namespace) -> int:
    """The ``export`` command."""
    from ssd_keras.evaluation.cli import decode_overrides, load_detector

    model = load_detector(args.model)
    overrides = decode_overrides(args, model.detector_config)
    config = model.detector_config
    print(f"export: {args.model} ({config.name}, input {tuple(config.image_size)}, "
          f"{config.num_classes} classes) -> {args.format} {args.out}", flush=True)
    export(model, args.format, args.out, **overrides)
    print(f"export: wrote {args.out}")
    return 0


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``export`` command."""
    from ssd_keras.evaluation.cli import add_decode_arguments

    p = subparsers.add_parser(
        "export", help="export a detector (.keras) to SavedModel / TFLite / ONNX",
        description="Export a saved detector with the TF Object Detection API outputs "
                    "(detection_boxes, detection_scores, detection_classes, num_detections), "
                    "decoding and NMS inside the graph.")
    p.add_argument("--model", required=True, help="saved detector (.keras)")
    p.add_argument("--format", required=True, choices=FORMATS, help="export format")
    p.add_argument("--out", required=True,
                   help="output path (a directory for saved_model, a file otherwise)")
    add_decode_arguments(p)
    p.set_defaults(func=run_export)
    return p


def main(argv: Optional[list] = None) -> int:
    """Run ``export`` without the package-wide CLI."""
    from ssd_keras.__main__ import run_alone
    return run_alone(register, "export", argv)


if __name__ == "__main__":
    sys.exit(main())
