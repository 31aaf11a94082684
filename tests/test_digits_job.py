"""The digits main job end to end (tiny: 8 train / 4 test images, 3 steps) and the evaluate command."""
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import ssd_keras
from ssd_keras import presets
from ssd_keras.experiments.digits import callbacks as digits_callbacks, job as digits_job
from ssd_keras.evaluation import cli as evaluate_cli
from ssd_keras.evaluation.coco import STAT_NAMES

LOSS_PLOTS = ("Loss_classification_loss.svg", "Loss_localization_loss.svg",
              "Loss_regularization_loss.svg", "Loss_total_loss.svg")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("digits")
    out, data, figures = root / "run", root / "data", root / "figures"
    code = digits_job.main(["--out", str(out), "--data-dir", str(data), "--figures-dir", str(figures),
                            "--train-images", "8", "--test-images", "4", "--steps", "3",
                            "--batch-size", "2", "--time-budget-minutes", "5"])
    assert code == 0
    return out, data, figures


def test_digits_writes_every_promised_file(tiny_run):
    out, data, figures = tiny_run
    for name in ("model.keras", "metrics.json", "config.json", "recipe.json", "run_info.json",
                 os.path.join("logs", "train_log.csv"), *LOSS_PLOTS):
        assert (out / name).is_file(), name
    for name in LOSS_PLOTS:
        assert (figures / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(STAT_NAMES) <= set(metrics)
    assert all(-1.0 <= metrics[k] <= 1.0 for k in STAT_NAMES)
    log = (out / "logs" / "train_log.csv").read_text().splitlines()
    assert log[0].split(",")[:7] == ["step", "epoch", "learning_rate", "classification_loss",
                                     "localization_loss", "regularization_loss", "total_loss"]
    assert int(log[-1].split(",")[0]) == 3
    recipe = json.loads((out / "recipe.json").read_text())
    assert recipe["steps"] == 3 and recipe["train_images"] == 8
    info = json.loads((out / "run_info.json").read_text())
    assert info["steps_done"] == 3


def test_saved_model_loads_at_the_evaluation_size(tiny_run):
    out, _, _ = tiny_run
    model = keras.saving.load_model(str(out / "model.keras"))
    assert isinstance(model, ssd_keras.DetectorModel)
    assert tuple(model.detector_config.image_size) == (512, 512)
    assert model.detector_config.num_classes == 10
    detections = model.detect(np.zeros((1, 512, 512, 3), np.float32))
    assert len(detections) == 1 and detections[0]["boxes"].shape[1:] == (4,)


def test_saved_model_loads_after_plain_import(tiny_run):
    """A fresh interpreter with only ``import ssd_keras`` knows the digits architecture."""
    out, _, _ = tiny_run
    code = ("import sys, keras, ssd_keras\n"
            "m = keras.saving.load_model(sys.argv[1])\n"
            "assert not any(m.startswith('ssd_keras.experiments') for m in sys.modules)\n"
            "print(type(m).__name__, m.detector_config.architecture)\n")
    res = subprocess.run([sys.executable, "-c", code, str(out / "model.keras")],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "DetectorModel digits_convnet" in res.stdout


def test_evaluate_command_on_the_saved_model(tiny_run, capsys):
    out, data, _ = tiny_run
    metrics_path = out / "evaluate.json"
    code = evaluate_cli.main(["--model", str(out / "model.keras"),
                              "--coco-json", str(data / "annotations" / "test.json"),
                              "--images", str(data / "images" / "test"),
                              "--out", str(metrics_path), "--score-threshold", "0.01"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]" in printed
    metrics = json.loads(metrics_path.read_text())
    assert set(STAT_NAMES) <= set(metrics)
    # same model, same images, same decoding -> the job's own numbers
    job = json.loads((out / "metrics.json").read_text())
    for k in STAT_NAMES:
        assert metrics[k] == pytest.approx(job[k], abs=1e-6)


def test_presets_and_recipes():
    seed_like = presets.get("ssd_mobilenet_v2_320_digits")
    assert seed_like.num_classes == 10 and seed_like.architecture == "ssd_mobilenet_v2"
    train_config, eval_config = digits_job.detector_configs(digits_job.CPU_RECIPE)
    size = digits_job.CPU_RECIPE.crop_spec.crop_size
    assert train_config.image_size == (size, size) and eval_config.image_size == (512, 512)
    # pixel anchors: the crop grid's anchors are the full grid's top-left anchors, in pixels
    small = train_config.anchors() * size
    full = eval_config.anchors() * 512
    assert np.allclose(small[:10], full[:10], atol=1e-3)
    # a fixed step count by default (the same model on every machine), no time budget
    assert digits_job.CPU_RECIPE.steps == digits_job.DEFAULT_STEPS
    assert digits_job.CPU_RECIPE.time_budget_minutes is None
    assert digits_job.FULL_RECIPE.steps > digits_job.CPU_RECIPE.steps
    assert digits_job.FULL_RECIPE.batch_size > digits_job.CPU_RECIPE.batch_size


def test_time_budget_stops_training():
    import time

    class Model:
        stop_training = False

        class optimizer:  # noqa: N801
            iterations = 7

    budget = digits_callbacks.TimeBudget(time.monotonic() + 3600)
    budget.set_model(Model())
    budget.on_train_batch_end(0)
    assert not budget.model.stop_training
    budget.deadline = time.monotonic() - 1
    budget.on_train_batch_end(0)
    assert budget.model.stop_training and budget.stopped_at == 7


def test_a_finished_run_is_reused_not_retrained(tiny_run, capsys):
    out, data, figures = tiny_run
    stamp = (out / "model.keras").stat().st_mtime_ns
    capsys.readouterr()
    code = digits_job.main(["--out", str(out), "--data-dir", str(data), "--figures-dir", str(figures),
                            "--train-images", "8", "--test-images", "4", "--steps", "3",
                            "--batch-size", "2", "--time-budget-minutes", "5"])
    assert code == 0
    assert "reusing its model and metrics" in capsys.readouterr().out
    assert (out / "model.keras").stat().st_mtime_ns == stamp


def test_time_budget_option_sizes_the_run_and_is_recorded():
    import argparse
    parser = argparse.ArgumentParser()
    digits_job.register(parser.add_subparsers())
    args = parser.parse_args(["digits", "--time-budget-minutes", "7"])
    recipe = digits_job.recipe_from_args(args)
    assert recipe.steps is None and recipe.time_budget_minutes == 7
    assert recipe.to_dict()["time_budget_minutes"] == 7           # into recipe.json
    default = digits_job.recipe_from_args(parser.parse_args(["digits"]))
    assert default.steps == digits_job.DEFAULT_STEPS and default.time_budget_minutes is None
