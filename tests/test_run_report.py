"""End-of-run artefacts of train(): metrics.json, loss plots, detection gallery, collapse warning."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from tests.tiny_models import tiny_config  # noqa: F401  (registers the tiny_test architecture)


def _voc_records(tmp_path, num_images, image_set, start_index, seed):
    from ssd_keras.data.voc import read_voc
    from tests.voc_fixtures import make_voc_tree

    root = make_voc_tree(tmp_path / "VOCdevkit", num_images=num_images, size=(64, 48),
                         quirks=False, image_set=image_set, start_index=start_index, seed=seed)
    return read_voc(root, image_set)


def test_prediction_collapse_definition():
    from ssd_keras.run_report import prediction_collapse

    same = [{"boxes": np.array([[0.0, 0.0, 1.0, 1.0], [0.2, 0.2, 0.3, 0.3]]),
             "scores": np.array([0.41, 0.1])} for _ in range(5)]
    result = prediction_collapse(same)
    assert result["collapsed"] and result["images"] == 5
    assert result["box"] == [0.0, 0.0, 1.0, 1.0] and result["score"] == pytest.approx(0.41)
    rng = np.random.default_rng(0)
    varied = []
    for _ in range(5):
        x, y = rng.uniform(0, 0.5, 2)
        varied.append({"boxes": np.array([[x, y, x + 0.4, y + 0.4]]), "scores": np.array([0.9])})
    assert not prediction_collapse(varied)["collapsed"]          # same score, boxes follow objects
    assert not prediction_collapse(same[:2])["collapsed"]        # too few images to judge
    assert not prediction_collapse([{"boxes": np.zeros((0, 4)), "scores": np.zeros(0)}] * 4)[
        "collapsed"]


def test_tiny_run_writes_metrics_plots_gallery(tmp_path):
    from ssd_keras.reporting import experiment_tables
    from ssd_keras.training import TrainConfig, train

    train_records = _voc_records(tmp_path, 4, "trainval", 1, 0)
    val_records = _voc_records(tmp_path, 3, "test", 10, 3)
    config = tiny_config()
    tc = TrainConfig(total_steps=4, batch_size=2, steps_per_epoch=2, log_every=2, val_every=2,
                     warmup_steps=0, eval_every=100, checkpoint_every=100, schedule="cosine")
    run = str(tmp_path / "run")
    train(config, train_records, run_dir=run, train_config=tc, val_records=val_records,
          verbose=0)
    with open(os.path.join(run, "metrics.json")) as handle:
        metrics = json.load(handle)
    for key in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100"):
        assert -1.0 <= metrics[key] <= 1.0
    assert metrics["step"] == 4 and metrics["images"] == 3
    assert set(metrics["collapse"]) >= {"collapsed", "box_std", "score_std"}
    plots = os.path.join(run, "plots")
    for name in ("loss_history.png", "loss_history.svg", "Loss_total_loss.png",
                 "Loss_regularization_loss.svg", "detections.png"):
        assert os.path.getsize(os.path.join(plots, name)) > 0, name
    # The experiment tables read this metrics.json.
    tables = experiment_tables([run])
    assert tables["average_precision"]["mAP"].iloc[0] == pytest.approx(metrics["AP"])


def test_constant_output_model_warns_collapse(tmp_path):
    import keras

    from ssd_keras import build_model
    from ssd_keras.run_report import PredictionCollapseWarning, write_run_report

    records = _voc_records(tmp_path, 4, "test", 10, 3)
    model = build_model(tiny_config())
    # Zero kernels: every output is its bias, the same for every image.
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kernel, bias = layer.get_weights()
            layer.set_weights([np.zeros_like(kernel),
                               np.random.default_rng(0).normal(0, 1, bias.shape)])
    with pytest.warns(PredictionCollapseWarning, match="collapsed"):
        report = write_run_report(model, str(tmp_path / "run"), records, gallery_images=0,
                                  print_fn=None)
    assert report["collapse"]["collapsed"] and report["collapse"]["images"] == 4
    assert report["metrics"]["collapse"]["collapsed"]
