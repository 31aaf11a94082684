"""``python -m ssd_keras predict`` on raccoon photos: drawings and JSON in source-image pixels."""
import json
import shutil

import numpy as np
import tensorflow as tf

from raccoon_fixtures import raccoon_records
from ssd_keras.data.augment import resize


def test_predict_command_on_raccoon_photos(raccoon_detectors, tmp_path, capsys):
    from PIL import Image

    from ssd_keras.__main__ import main

    model, path = raccoon_detectors["sigmoid_focal"]
    images = tmp_path / "photos"
    images.mkdir()
    records = raccoon_records(3)
    for record in records:
        shutil.copy(record.image_path, images)
    (images / "broken.jpg").write_bytes(open(records[0].image_path, "rb").read()[:2000])
    (images / "notes.txt").write_text("not an image")
    out = tmp_path / "predictions"

    assert main(["predict", "--model", path, "--images", str(images), "--out", str(out),
                 "--score-threshold", "0.3"]) == 0
    printed = capsys.readouterr().out
    assert "broken.jpg" in printed and "truncated" in printed      # skipped, one line, named

    document = json.loads((out / "detections.json").read_text())
    assert document["class_names"] == ["badger", "raccoon"]
    assert [i["file"] for i in document["images"]] == [r.image_path.split("/")[-1] for r in records]
    compared = 0
    for record, entry in zip(records, document["images"]):
        assert (entry["width"], entry["height"]) == (record.width, record.height)
        stem = entry["file"].rsplit(".", 1)[0]
        assert Image.open(out / f"{stem}.png").format == "PNG"
        # the Keras model on the same decode + bilinear resize, scaled to source pixels
        image = tf.cast(tf.io.decode_jpeg(tf.io.read_file(record.image_path), channels=3),
                        tf.float32)
        ref = model.detect(resize(image, (64, 64)).numpy()[None])[0]
        keep = ref["scores"] > 0.3
        scale = np.array([record.width, record.height] * 2, np.float32)
        assert len(entry["detections"]) == keep.sum()
        for det, box, score in zip(entry["detections"], ref["boxes"][keep] * scale,
                                   ref["scores"][keep]):
            assert det["class"] == "raccoon" and det["label"] == 2
            assert abs(det["score"] - score) < 1e-3
            np.testing.assert_allclose(det["box"], box, atol=0.5)   # pixels (JSON keeps 2 decimals)
            compared += 1
    assert compared > 0


def test_predict_empty_folder_is_one_line(raccoon_detectors, tmp_path, capsys):
    from ssd_keras.__main__ import main

    _, path = raccoon_detectors["sigmoid_focal"]
    (tmp_path / "empty").mkdir()
    assert main(["predict", "--model", path, "--images", str(tmp_path / "empty"),
                 "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "no images" in err and "Traceback" not in err
