"""Exported SavedModel / TFLite / ONNX graphs reproduce the Keras model's detections on real photos.

Detectors: tiny models trained for seconds on raccoon photos (tests/raccoon_fixtures.py),
one softmax (background column) and one sigmoid-focal (no background).  Each is
exported in every format and run with ``tf.saved_model.load``, LiteRT's signature
runner and onnxruntime; every Keras detection above a 0.3 score must come back
with the same class, its score to 1e-3 and its box to 1e-3 (normalised).
"""
import numpy as np
import pytest
import tensorflow as tf

from raccoon_fixtures import RACCOON_LABEL, raccoon_records
from ssd_keras import export
from ssd_keras.data.augment import resize

MIN_SCORE = 0.3
TOL = 1e-3
LOSSES = ("softmax", "sigmoid_focal")


@pytest.fixture(scope="module")
def photos():
    """``[(uint8 source image (H, W, 3), uint8 model-size image (64, 64, 3))]`` of the raccoon photos."""
    out = []
    for record in raccoon_records():
        image = tf.io.decode_jpeg(tf.io.read_file(record.image_path), channels=3)
        small = tf.cast(tf.round(resize(tf.cast(image, tf.float32), (64, 64))), tf.uint8)
        out.append((image.numpy(), small.numpy()))
    return out


@pytest.fixture(scope="module")
def exported(raccoon_detectors, tmp_path_factory):
    """``(loss, fmt) -> path`` of the exports, made once per module."""
    folder = tmp_path_factory.mktemp("exports")
    suffix = {"saved_model": "", "tflite": ".tflite", "onnx": ".onnx"}
    cache = {}

    def get(loss, fmt):
        if (loss, fmt) not in cache:
            model, _ = raccoon_detectors[loss]
            cache[loss, fmt] = export.export(model, fmt, str(folder / f"{loss}_{fmt}{suffix[fmt]}"))
        return cache[loss, fmt]
    return get


def runner(fmt, path):
    """``uint8 (N, H, W, 3) -> {output name: numpy}`` for one exported file."""
    if fmt == "saved_model":
        serve = tf.saved_model.load(path).signatures["serving_default"]
        return lambda images: {k: v.numpy() for k, v in serve(images=tf.constant(images)).items()}
    if fmt == "tflite":
        from ai_edge_litert.interpreter import Interpreter
        run = Interpreter(model_path=path).get_signature_runner("serving_default")
        return lambda images: run(images=images)
    import onnxruntime
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return lambda images: dict(zip(names, session.run(None, {"images": images})))


def keras_detections(model, image):
    """The Keras model's detections of one float image at its input size (normalised xyxy)."""
    return model.detect(np.asarray(image, np.float32)[None])[0]


def assert_same_detections(ref, out, index=0):
    """Every ``ref`` detection above MIN_SCORE is in ``out`` (OD API dict, image ``index``) and
    vice versa (above MIN_SCORE + TOL); returns how many were compared."""
    n = int(out["num_detections"][index])
    boxes = out["detection_boxes"][index, :n][:, [1, 0, 3, 2]]           # -> xyxy
    scores, classes = out["detection_scores"][index, :n], out["detection_classes"][index, :n]
    assert not out["detection_scores"][index, n:].any(), "padding past num_detections is zero"
    keep = ref["scores"] > MIN_SCORE
    for box, score, label in zip(ref["boxes"][keep], ref["scores"][keep], ref["labels"][keep]):
        close = ((classes == label) & (np.abs(scores - score) <= TOL)
                 & (np.abs(boxes - box).max(axis=1) <= TOL))
        assert close.any(), f"Keras detection {label} {score:.4f} {box} missing from the export"
    assert (scores > MIN_SCORE + TOL).sum() <= keep.sum()
    return int(keep.sum())


@pytest.mark.parametrize("fmt", export.FORMATS)
@pytest.mark.parametrize("loss", LOSSES)
def test_export_matches_keras_at_model_size(raccoon_detectors, exported, photos, loss, fmt):
    """Model-size uint8 photos (what TFLite / ONNX take): same detections as Keras."""
    model, _ = raccoon_detectors[loss]
    run = runner(fmt, exported(loss, fmt))
    compared = 0
    for _, small in photos:
        out = run(small[None])
        compared += assert_same_detections(keras_detections(model, small), out)
        top = out["detection_classes"][0, 0]
        assert top == RACCOON_LABEL, "class 1 is the first class name ('badger'), 2 'raccoon'"
    assert compared >= len(photos), f"only {compared} detections above {MIN_SCORE} compared"


@pytest.mark.parametrize("loss", LOSSES)
def test_saved_model_takes_any_size_and_batches(raccoon_detectors, exported, photos, loss):
    """Source-size photos, resized inside exactly as evaluate/predict resize (bilinear)."""
    model, _ = raccoon_detectors[loss]
    run = runner("saved_model", exported(loss, "saved_model"))
    compared = 0
    for image, _ in photos[:4]:
        ref = keras_detections(model, resize(image.astype(np.float32), (64, 64)))
        out = run(np.stack([image, image]))               # a batch of two: the map_fn path
        assert out["detection_boxes"].shape == (2, model.detector_config.max_detections, 4)
        for index in range(2):
            compared += assert_same_detections(ref, out, index)
    assert compared > 0


def test_exported_interface(exported):
    """Input ``images`` uint8 and the four TF OD API outputs, float32, in every format."""
    sm = tf.saved_model.load(exported("sigmoid_focal", "saved_model")).signatures["serving_default"]
    spec = sm.structured_input_signature[1]["images"]
    assert spec.dtype == tf.uint8 and spec.shape.as_list() == [None, None, None, 3]
    assert set(sm.structured_outputs) == set(export.OUTPUT_NAMES)
    assert all(t.dtype == tf.float32 for t in sm.structured_outputs.values())

    from ai_edge_litert.interpreter import Interpreter
    lite = Interpreter(model_path=exported("sigmoid_focal", "tflite"))
    signature = lite.get_signature_list()["serving_default"]
    assert signature["inputs"] == ["images"]
    assert set(signature["outputs"]) == set(export.OUTPUT_NAMES)
    (detail,) = lite.get_signature_runner("serving_default").get_input_details().values()
    assert detail["dtype"] == np.uint8 and list(detail["shape"]) == [1, 64, 64, 3]

    import onnxruntime
    session = onnxruntime.InferenceSession(exported("sigmoid_focal", "onnx"),
                                           providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    assert (inp.name, inp.type, inp.shape) == ("images", "tensor(uint8)", [1, 64, 64, 3])
    assert {o.name for o in session.get_outputs()} == set(export.OUTPUT_NAMES)


def test_export_command(raccoon_detectors, photos, tmp_path, capsys):
    """``python -m ssd_keras export`` writes a working file; a bad format is one usage line."""
    from ssd_keras.__main__ import main

    model, path = raccoon_detectors["sigmoid_focal"]
    out = tmp_path / "model.tflite"
    assert main(["export", "--model", path, "--format", "tflite", "--out", str(out),
                 "--max-detections", "5"]) == 0
    result = runner("tflite", str(out))(photos[0][1][None])
    assert result["detection_scores"].shape == (1, 5)
    assert assert_same_detections(keras_detections(model, photos[0][1]), result) > 0
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--model", path, "--format", "coreml", "--out", str(tmp_path / "x")])
    assert exit_info.value.code == 2
    assert "invalid choice: 'coreml'" in capsys.readouterr().err


@pytest.mark.slow
def test_digits_family_converts(photos, tmp_path):
    """TFLite (builtin ops) and ONNX of a real architecture give the Keras model's scores.

    The digits convnet (narrowed, random weights) converts in seconds.  The
    MobileNet v2 / FPNLite families take minutes to convert on 2 cores (their
    op count, not their width), and VGG16 is 100 MB: ``benchmarks/export_formats.py
    --preset NAME`` exports them and prints each format's agreement with Keras.
    """
    import ssd_keras
    from ssd_keras import presets

    digits = presets.get("digits_convnet")
    config = digits.replace(image_size=(128, 128), backbone={
        **digits.backbone, "widths": [8, 8, 16, 16], "fpn_depth": 16, "head_depth": 16})
    model = ssd_keras.build_model(config)
    small = tf.cast(tf.round(resize(photos[0][0].astype(np.float32), config.image_size)),
                    tf.uint8).numpy()[None]
    ref = np.sort(keras_detections(model, small[0])["scores"])[::-1][:20]
    assert len(ref) == 20
    for fmt, name in (("tflite", "m.tflite"), ("onnx", "m.onnx")):
        out = runner(fmt, export.export(model, fmt, str(tmp_path / name)))(small)
        got = np.sort(out["detection_scores"][0, :int(out["num_detections"][0])])[::-1][:20]
        np.testing.assert_allclose(got, ref, atol=1e-5, err_msg=fmt)


@pytest.mark.parametrize("fmt", ["saved_model", "tflite"])
def test_centernet_exports_through_its_family_decoder(tmp_path, fmt):
    """Another family exports unchanged: CenterNet's peak decoder inside the graph, same detections."""
    from ssd_keras import presets
    from ssd_keras.models.base import DetectorModel

    config = presets.get("centernet_digits").replace(
        image_size=(64, 64), head_channels=8,
        backbone=dict(widths=(8, 8, 16), blocks=(1, 1, 1), fpn_channels=(8, 16)))
    model = DetectorModel(config)
    path = export.export(model, fmt, str(tmp_path / ("cn.tflite" if fmt == "tflite" else "cn")))
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    out = runner(fmt, path)(image[None])
    ref = keras_detections(model, image)          # untrained: ~0.11 scores, all 100 peaks kept
    n = int(out["num_detections"][0])
    assert n == len(ref["scores"]) == config.head.max_detections
    np.testing.assert_allclose(out["detection_scores"][0], ref["scores"], atol=TOL)
    np.testing.assert_allclose(out["detection_boxes"][0][:, [1, 0, 3, 2]], ref["boxes"], atol=TOL)
    np.testing.assert_array_equal(out["detection_classes"][0], ref["labels"])
