"""Own data in: VOC XML folders (labelImg layout, real raccoon photos), ``--data`` for every
command, bad images caught by name before and during training, one-line usage errors."""
import glob
import json
import os
import shutil

import numpy as np
import pytest

from ssd_keras.data.sources import detect_format, load_data, map_labels
from ssd_keras.data.voc_folder import read_voc_folder
from ssd_keras.usage import UsageError
from tests.tiny_models import tiny_config


def _raccoon_copy(raccoon_dir, dest, numbers):
    """labelImg layout (annotations/ + images/) with raccoon-N for N in ``numbers``."""
    for sub in ("annotations", "images"):
        os.makedirs(dest / sub, exist_ok=True)
    for n in numbers:
        shutil.copy(os.path.join(raccoon_dir, "annotations", f"raccoon-{n}.xml"), dest / "annotations")
        shutil.copy(os.path.join(raccoon_dir, "images", f"raccoon-{n}.jpg"), dest / "images")
    return dest


def _list_file(raccoon_dir, path, numbers):
    """A .txt list of real raccoon XML files (no copying)."""
    path.write_text("".join(os.path.join(raccoon_dir, "annotations", f"raccoon-{n}.xml") + "\n"
                            for n in numbers))
    return str(path)


# ----------------------------------------------------------------------------- reader

def test_read_raccoon_folder(raccoon_dir):
    records, names = read_voc_folder(os.path.join(raccoon_dir, "annotations"))
    assert names == ("raccoon",) and len(records) == 200
    assert sum(r.num_objects for r in records) == 217
    first = next(r for r in records if r.image_id == "raccoon-1")
    # <path> holds /Users/datitran/...: ignored; the image is found in ../images.
    assert first.image_path == os.path.join(raccoon_dir, "images", "raccoon-1.jpg")
    np.testing.assert_array_equal(first.boxes, [[81, 88, 522, 408]])      # VOC pixels as written
    assert first.convention == "voc" and (first.width, first.height) == (650, 417)
    assert all(os.path.isfile(r.image_path) for r in records)
    given, _ = read_voc_folder(os.path.join(raccoon_dir, "annotations"),
                               images=os.path.join(raccoon_dir, "images"))
    assert [r.image_path for r in given] == [r.image_path for r in records]


def test_images_beside_xml_stem_fallback_and_fixed_names(raccoon_dir, tmp_path):
    """Roboflow-style: XML and image in one folder; a <filename> that does not exist falls back
    to the XML's stem; with fixed names an unknown name is a problem naming the XML file."""
    folder = tmp_path / "export"
    folder.mkdir()
    for n in (1, 2):
        shutil.copy(os.path.join(raccoon_dir, "images", f"raccoon-{n}.jpg"), folder)
        text = open(os.path.join(raccoon_dir, "annotations", f"raccoon-{n}.xml")).read()
        if n == 2:
            text = text.replace("<filename>raccoon-2.jpg", "<filename>IMG_0002.jpeg")
            text = text.replace("<size>", "<sizeX>").replace("</size>", "</sizeX>")  # no <size>
            text = text.replace("<name>raccoon</name>", "<name>dog</name>")
        (folder / f"raccoon-{n}.xml").write_text(text)
    records, names = read_voc_folder(folder)
    assert names == ("dog", "raccoon")
    assert [os.path.basename(r.image_path) for r in records] == ["raccoon-1.jpg", "raccoon-2.jpg"]
    assert (records[1].width, records[1].height) > (0, 0)        # size from the image header
    problems = []
    records, names = read_voc_folder(folder, class_names=["raccoon"],
                                     on_problem=lambda f, m: problems.append((f, m)))
    assert names == ("raccoon",) and [r.num_objects for r in records] == [1, 0]
    assert problems == [(str(folder / "raccoon-2.xml"), "unknown class name 'dog' (object 0)")]
    with pytest.raises(ValueError, match=r"raccoon-2\.xml: unknown class name 'dog'"):
        read_voc_folder(folder, class_names=["raccoon"])


def test_formats_are_detected_and_said(raccoon_dir, tmp_path):
    from tests.voc_fixtures import make_coco_dataset, make_voc_tree

    source = load_data(os.path.join(raccoon_dir, "annotations"))
    assert source.describe() == (
        f"data: {raccoon_dir}/annotations — Pascal VOC XML folder (labelImg), 200 images, "
        "217 boxes, 1 class: raccoon")
    assert load_data(raccoon_dir).kind == "voc_folder"                 # finds annotations/
    train = _list_file(raccoon_dir, tmp_path / "train.txt", range(1, 11))
    listed = load_data(train)
    assert listed.kind == "voc_list" and len(listed.records) == 10
    assert "Pascal VOC XML list (labelImg)" in listed.describe()

    voc = make_voc_tree(tmp_path / "VOCdevkit", num_images=3, quirks=False)
    devkit = load_data(voc)
    assert devkit.kind == "voc_devkit" and len(devkit.records) == 3
    assert "image set trainval" in devkit.format
    assert set(devkit.class_names) <= set(__import__("ssd_keras").data.VOC_CLASSES)
    with pytest.raises(UsageError, match=r"--image-set test: .*choose from trainval"):
        load_data(voc, image_set="test")
    with pytest.raises(UsageError, match=r"a VOCdevkit folder; give one year folder: .*VOC2007"):
        load_data(tmp_path / "VOCdevkit")

    json_path, image_dir = make_coco_dataset(tmp_path / "coco")
    coco = load_data(json_path, images=image_dir)
    assert coco.kind == "coco_json" and coco.coco_json == json_path
    assert "car" in coco.class_names and coco.records[0].convention == "coco"

    with pytest.raises(UsageError, match="no such file or folder"):
        load_data(tmp_path / "missing")
    with pytest.raises(UsageError, match=r"not a dataset format I know; --data takes a folder"):
        load_data(os.path.join(raccoon_dir, "LICENSE"))
    with pytest.raises(UsageError, match="no such image folder"):
        load_data(train, images=str(tmp_path / "nope"))


def test_map_labels_by_name(raccoon_dir):
    records, names = read_voc_folder(_first_xml(raccoon_dir, 3))
    mapped = map_labels(records, names, ["dog", "raccoon"])
    assert all((r.labels == 2).all() for r in mapped) and all((r.labels == 1).all() for r in records)
    with pytest.raises(ValueError, match=r"raccoon-1\.xml: unknown class name 'raccoon'.*"
                                         r"did you mean 'racoon'"):
        map_labels(records, names, ["racoon"])


def _first_xml(raccoon_dir, n):
    return sorted(glob.glob(os.path.join(raccoon_dir, "annotations", "*.xml")))[:n]


# ----------------------------------------------------------------------------- check-data

def test_check_data_reports_truncated_jpeg_and_misspelt_class(raccoon_dir, tmp_path, capsys):
    from ssd_keras.data import check

    data = _raccoon_copy(raccoon_dir, tmp_path / "raccoon", range(1, 9))
    jpeg = data / "images" / "raccoon-3.jpg"
    jpeg.write_bytes(jpeg.read_bytes()[: jpeg.stat().st_size // 2])
    xml = data / "annotations" / "raccoon-5.xml"
    xml.write_text(xml.read_text().replace("<name>raccoon</name>", "<name>racoon</name>"))
    code = check.main(["--data", str(data / "annotations")])
    out = capsys.readouterr().out.splitlines()
    assert code == 1
    assert out[0].startswith(f"data: {data}/annotations — Pascal VOC XML folder (labelImg), "
                             "8 images") and out[0].endswith("2 classes: raccoon, racoon")
    assert f"{jpeg}: truncated JPEG (no end-of-image marker FFD9)" in out
    assert f"{xml}: 'racoon' (1 box) — did you mean 'raccoon'?" in out
    assert out[-1] == "FAILED: 8 images, 2 problems in 2 files"
    # Fixed names: the misspelt object is an unknown name in its file, with the suggestion.
    assert check.main(["--data", str(data), "--class-names", "raccoon", "--no-images"]) == 1
    out = capsys.readouterr().out
    assert f"{xml}: unknown class name 'racoon' (object 0) — did you mean 'raccoon'?" in out


def test_pretraining_check_and_pipeline_name_bad_files(raccoon_dir, tmp_path, capsys):
    """The pre-training check decodes every image: a truncated copy of a real JPEG and a text
    file named .jpg are caught by name and skipped one line each; if one still reaches the
    input pipeline, its error names the file."""
    import tensorflow as tf

    from ssd_keras.data.check import BadRecordsError, filter_bad_records
    from ssd_keras.data.pipeline import make_dataset

    data = _raccoon_copy(raccoon_dir, tmp_path / "raccoon", range(1, 5))
    truncated, not_image = data / "images" / "raccoon-2.jpg", data / "images" / "raccoon-3.jpg"
    truncated.write_bytes(truncated.read_bytes()[:5000])
    not_image.write_text("<html>404 not found</html>")
    records, _ = read_voc_folder(data / "annotations")
    with pytest.raises(BadRecordsError, match=r"2 problems in 2 of 4 records") as error:
        filter_bad_records(records)
    assert f"{truncated}: truncated JPEG" in str(error.value)
    assert f"{not_image}: unreadable image" in str(error.value)
    good = filter_bad_records(records, skip_bad=True)
    assert [r.image_id for r in good] == ["raccoon-1", "raccoon-4"]
    out = capsys.readouterr().out.splitlines()
    assert out == ["skipping 2 of 4 records with problems:",
                   f"  skipping {truncated}: truncated JPEG (no end-of-image marker FFD9)",
                   f"  skipping {not_image}: unreadable image (cannot decode)"]
    for bad in (truncated, not_image):
        record = next(r for r in records if r.image_path == str(bad))
        dataset = make_dataset([record], tiny_config(num_classes=1), 1, training=False)
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match=rf"\[{bad}\] \[truncated or not an image"):
            next(iter(dataset))


# ----------------------------------------------------------------------------- usage errors

@pytest.mark.parametrize("argv, message", [
    (["train", "--preset", "ssd301", "--run-dir", "R"],
     "argument --preset: unknown preset 'ssd301'; choose from "),
    (["train", "--config", "/no/such.json", "--run-dir", "R"], "/no/such.json: no such file"),
    (["check-data", "--data", "/no/such/folder"], "check-data: /no/such/folder: no such file or "
                                                  "folder"),
    (["evaluate", "--model", "/no/model.keras", "--data", "."], "evaluate: --model "
                                                                 "/no/model.keras: no such file"),
    (["train", "--run-dir", "R", "--optimizer", "adagrad"], "invalid choice: 'adagrad' (choose "
                                                            "from 'sgd', 'adam')"),
])
def test_usage_errors_are_one_line_exit_2(argv, message, capsys):
    from ssd_keras.__main__ import main

    try:
        code = main(argv)
    except SystemExit as exit_:       # argparse's own errors
        code = exit_.code
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], captured.err
    assert "Traceback" not in captured.err


def test_data_usage_errors(raccoon_dir, tmp_path, capsys):
    from ssd_keras.data import check

    assert check.main(["--data", os.path.join(raccoon_dir, "LICENSE")]) == 2
    assert check.main(["--data", raccoon_dir, "--image-set", "trainval"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"check-data: {raccoon_dir}/LICENSE: not a dataset format I know; "
                             "--data takes a folder of Pascal VOC XML files, a .txt list")
    assert err[1].startswith("check-data: --image-set trainval: only for a VOCdevkit year folder")
    assert len(err) == 2


# ----------------------------------------------------------------------------- evaluate / train

def _save_tiny_model(path, class_names):
    from ssd_keras import build_model

    config = tiny_config(num_classes=len(class_names)).replace(class_names=tuple(class_names))
    build_model(config).save(path)
    return str(path)


def test_evaluate_data(raccoon_dir, tmp_path, capsys):
    from ssd_keras.evaluation.cli import main

    test = _list_file(raccoon_dir, tmp_path / "test.txt", range(1, 5))
    model = _save_tiny_model(tmp_path / "tiny.keras", ["dog", "raccoon"])
    out_json = tmp_path / "metrics.json"
    assert main(["--model", model, "--data", test, "--out", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert f"data: {test} — Pascal VOC XML list (labelImg), 4 images" in out
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]" in out
    metrics = json.loads(out_json.read_text())
    assert 0.0 <= metrics["AP50"] <= 1.0 and set(metrics["per_category"]) == {"dog", "raccoon"}
    assert metrics["per_category"]["dog"] == -1.0          # no dog in the data: not scored

    other = _save_tiny_model(tmp_path / "cats.keras", ["cat"])
    assert main(["--model", other, "--data", test]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"evaluate: class 'raccoon' of {test} is not one of the model's classes: cat"]


def test_train_data_with_tiny_config(raccoon_dir, tmp_path, capsys):
    """--config overrides any own-data recipe; the data's classes go into config.json."""
    from ssd_keras.training import main

    train = _list_file(raccoon_dir, tmp_path / "train.txt", range(1, 5))
    val = _list_file(raccoon_dir, tmp_path / "val.txt", range(5, 8))
    config_path = tmp_path / "tiny.json"
    tiny_config().to_json(config_path)                       # 20 VOC classes; the data has 1
    run = tmp_path / "run"
    code = main(["--config", str(config_path), "--data", train, "--val-data", val,
                 "--run-dir", str(run), "--steps", "2", "--batch-size", "2",
                 "--steps-per-epoch", "2", "--log-every", "2", "--eval-every", "2",
                 "--checkpoint-every", "2", "--verbose", "0"])
    assert code == 0
    out = capsys.readouterr().out
    assert f"data: {train} — Pascal VOC XML list (labelImg), 4 images, 4 boxes, 1 class: raccoon" in out
    assert f"val-data: {val} — Pascal VOC XML list (labelImg), 3 images" in out
    saved = json.loads((run / "config.json").read_text())
    assert saved["class_names"] == ["raccoon"] and saved["num_classes"] == 1
    assert saved["architecture"] == "tiny_test"
    assert (run / "model.keras").is_file()

    assert main(["--config", str(config_path), "--data", train, "--class-names", "raccoon,dog",
                 "--run-dir", str(tmp_path / "run2"), "--steps", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"train: --class-names: 'dog' not in --data {train} (it has boxes of 1 of "
                   "the names)"]


def test_coco_metrics_from_voc_records_are_exact(raccoon_dir):
    """The records as detections score AP 1: the VOC 1-based boxes and the detections go to
    COCO pixels the same way (coco_ground_truth / to_coco_pixels); a 1-pixel shift does not."""
    from ssd_keras.evaluation.runner import evaluate_records

    records, names = read_voc_folder(_first_xml(raccoon_dir, 20))
    perfect = [{"boxes": r.boxes, "scores": np.ones(r.num_objects), "labels": r.labels}
               for r in records]
    result = evaluate_records(None, records, "coco", class_names=names, detections=perfect,
                              print_summary=False)
    assert result["AP"] == pytest.approx(1.0) and result["per_class"] == {"raccoon": 1.0}
    shifted = [{**d, "boxes": d["boxes"] + [0, 0, 12, 12]} for d in perfect]
    assert evaluate_records(None, records, "coco", class_names=names, detections=shifted,
                            print_summary=False)["AP"] < 1.0


def test_evaluate_data_coco_json_maps_names(tmp_path):
    """A COCO JSON --data is scored against its own file, the model's names mapped by name."""
    from ssd_keras.data.coco import coco_label_map
    from ssd_keras.evaluation.cli import evaluate_data, load_detector
    from tests.voc_fixtures import make_coco_dataset

    json_path, image_dir = make_coco_dataset(tmp_path / "coco", num_images=3, size=(80, 60))
    names = coco_label_map(json_path).class_names
    model = load_detector(_save_tiny_model(tmp_path / "m.keras", ["zebra", *reversed(names)]))
    result = evaluate_data(model, load_data(json_path), print_summary=False)
    assert set(result["per_category"]) == set(names)          # zebra: no category, not scored
    assert 0.0 <= result["AP50"] <= 1.0
