"""Reporting: loss figures, the AP x steps table, experiment tables -- from synthetic run folders."""
from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from ssd_keras import reporting


def write_run(root, name, steps=(1000, 2000, 3000, 4000, 5000), drop_at=3000, batch=12,
              num_classes=42, elapsed=8981.0, metrics=None):
    run = os.path.join(root, name)
    os.makedirs(os.path.join(run, "logs"))
    rng = np.random.default_rng(0)
    rows = []
    for i, step in enumerate(steps):
        cls, loc, reg = 1.0 / (i + 1), 0.5 / (i + 1), 0.1
        rows.append({"step": step, "epoch": step / 1000,
                     "learning_rate": 1e-3 if step < drop_at else 1e-4,
                     "classification_loss": cls, "localization_loss": loc,
                     "regularization_loss": reg, "total_loss": cls + loc + reg,
                     "val_total_loss": cls + loc + reg + rng.uniform(0, 0.1) if i % 2 else np.nan,
                     "elapsed_seconds": elapsed * (i + 1) / len(steps)})
    pd.DataFrame(rows).to_csv(os.path.join(run, "logs", "train_log.csv"), index=False)
    with open(os.path.join(run, "train_config.json"), "w") as handle:
        json.dump({"batch_size": batch}, handle)
    with open(os.path.join(run, "config.json"), "w") as handle:
        json.dump({"num_classes": num_classes}, handle)
    if metrics is not None:
        with open(os.path.join(run, "metrics.json"), "w") as handle:
            json.dump(metrics, handle)
    return run


def test_loss_figures(tmp_path):
    run = write_run(tmp_path, "run1")
    run2 = write_run(tmp_path, "run2", drop_at=4000)
    assert reporting.learning_rate_drops(reporting.load_train_log(run)) == [3000]
    out = tmp_path / "figures"
    paths = reporting.plot_loss_components(run, out)
    names = sorted(os.path.basename(p) for p in paths)
    assert names == sorted(f"Loss_{n}.{ext}" for n in
                           ("classification_loss", "localization_loss", "regularization_loss",
                            "total_loss") for ext in ("svg", "png"))
    for path in paths:
        assert os.path.getsize(path) > 1000
    fig, paths = reporting.plot_loss_history([run, run2], str(out / "loss_history"))
    assert sorted(os.path.basename(p) for p in paths) == ["loss_history.png",
                                                          "loss_history.svg"]
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert "run1 training (with weight decay)" in labels
    assert "run1 training, without weight decay" in labels
    assert "run2 validation (with weight decay)" in labels
    assert "learning-rate drop" in labels
    assert open(paths[0]).read().lstrip().startswith("<?xml")


def test_no_drop_marks_for_smooth_schedules(tmp_path):
    steps = np.arange(100, 2100, 100)
    cosine = 1e-3 * 0.5 * (1 + np.cos(np.pi * steps / steps[-1]))
    warm = np.where(steps < 300, 1e-4 * steps / 100, cosine)         # warm-up then cosine
    log = pd.DataFrame({"step": steps, "learning_rate": warm})
    assert reporting.learning_rate_drops(log) == []                    # falls at every row
    piecewise = pd.DataFrame({"step": steps, "learning_rate": np.where(steps < 800, 1e-3, 1e-4)})
    assert reporting.learning_rate_drops(piecewise) == [800]
    assert reporting.learning_rate_drops(piecewise, schedule="cosine") == []
    # A run folder whose train_config.json says cosine: no marks even on a step-like log.
    run = write_run(tmp_path, "cos")
    with open(os.path.join(run, "train_config.json"), "w") as handle:
        json.dump({"batch_size": 12, "schedule": "cosine"}, handle)
    fig, _ = reporting.plot_loss_history(run, None)
    assert "learning-rate drop" not in [line.get_label() for line in fig.axes[0].get_lines()]


def test_total_loss_with_and_without_weight_decay(tmp_path):
    run = write_run(tmp_path, "wd")
    log = reporting.load_train_log(run)
    np.testing.assert_allclose(reporting.detection_loss(log),
                               log["classification_loss"] + log["localization_loss"])
    fig, _ = reporting.plot_loss_history(run, None)
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    np.testing.assert_allclose(lines["wd training (with weight decay)"].get_ydata(),
                               log["total_loss"])
    np.testing.assert_allclose(lines["wd training, without weight decay"].get_ydata(),
                               log["total_loss"] - log["regularization_loss"])
    paths = reporting.plot_loss_components(run, tmp_path / "figures")
    assert any(p.endswith("Loss_total_loss.svg") for p in paths)
    svg = open(next(p for p in paths if p.endswith("Loss_total_loss.svg"))).read()
    assert "without weight decay" in svg and "with weight decay" in svg


def test_ap_table_reference_layout(tmp_path):
    classes = ["aeroplane", "bicycle", "bird"]
    rows = [{"step": s, "map": m, **{c: m + d for c, d in zip(classes, (-0.1, 0.0, 0.1))}}
            for s, m in ((20000, 0.696), (40000, 0.726), (60000, 0.738), (102000, 0.7711))]
    csv = tmp_path / "intermediate_map.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    table = reporting.ap_table(csv)
    assert list(table.columns) == ["20k", "40k", "60k", "102k"]
    assert list(table.index) == classes + ["mAP"]
    assert table.loc["mAP", "102k"] == pytest.approx(0.7711)
    assert table.loc["bird", "20k"] == pytest.approx(0.796)
    md = reporting.ap_table_markdown(csv).splitlines()
    assert md[0].split("|")[2].strip() == "Steps" and "20k" in md[0] and "102k" in md[0]
    assert md[2].startswith("|aeroplane    |  AP   | 0.596")
    assert md[-1].startswith("|             |**mAP**| **0.696** |")
    fig, paths = reporting.plot_map_history(csv, str(tmp_path / "map"))
    assert all(os.path.exists(p) for p in paths)


def test_experiment_tables(tmp_path):
    metrics = {"AP": 0.41, "AP50": 0.621, "AP75": 0.454, "APs": 0.101, "APm": 0.294,
               "APl": 0.425, "AR1": 0.446, "AR10": 0.54, "AR100": 0.55, "ARs": 0.1,
               "ARm": 0.433, "ARl": 0.549}
    a = write_run(tmp_path, "custom_ssd_1", metrics=metrics, steps=(5000, 10000, 15000))
    b = write_run(tmp_path, "custom_ssd_5", batch=8, num_classes=21, elapsed=3600 + 61,
                  metrics={**metrics, "APs": -1.0, "ARs": -1.0}, steps=(10000, 20000))
    tables = reporting.experiment_tables([a, b])
    assert list(tables["runs"].columns) == ["No", "name", "detector", "batch size", "steps",
                                            "training time", "training CPU time"]
    assert tables["runs"]["training time"].tolist() == ["2h 29m 41s", "1h 1m 1s"]
    assert tables["runs"]["training CPU time"].tolist() == ["", ""]     # no run_info.json
    assert tables["runs"]["steps"].tolist() == [15000, 20000]
    assert list(tables["average_precision"].columns) == [
        "No", "mAP", "mAP @.50IOU", "mAP @.75IOU", "mAP (small)", "mAP (medium)",
        "mAP (large)", "steps", "total_classes"]
    assert list(tables["average_recall"].columns) == [
        "No", "AR@1", "AR@10", "AR@100", "AR@100 (small)", "AR@100 (medium)",
        "AR@100 (large)", "steps", "total_classes"]
    assert list(tables["loss"].columns) == [
        "No", "localization_loss", "classification_loss", "regularization_loss", "total_loss",
        "steps", "total_classes"]
    assert tables["average_precision"]["steps"].tolist() == [15000, 20000]
    assert tables["loss"]["total_classes"].tolist() == [42, 21]
    md = reporting.tables_markdown(tables)
    assert "- 1 = custom_ssd_1 | BATCH_SIZE = 12 | training time = 2h 29m 41s" in md
    assert "**Average Precision**" in md and "**Average Recall**" in md and "**loss**" in md
    assert "| 1 | 0.410 | 0.621 | 0.454 | 0.101 | 0.294 | 0.425 | 15000 | 42 |" in md
    assert "| 2 | 0.410 | 0.621 | 0.454 | -1 | 0.294 | 0.425 | 20000 | 21 |" in md
    assert reporting.format_duration(8981) == "2h 29m 41s"


def test_write_report(tmp_path):
    run = write_run(tmp_path, "run")
    os.makedirs(os.path.join(run, "metrics"))
    pd.DataFrame([{"step": 2000, "map": 0.5, "cat": 0.5}, {"step": 4000, "map": 0.6, "cat": 0.6}]
                 ).to_csv(os.path.join(run, "metrics", "intermediate_map.csv"), index=False)
    out = reporting.write_report(run, str(tmp_path / "figures"))
    assert len(out["loss_components"]) == 8 and len(out["loss_history"]) == 2
    assert "|cat          |  AP   | 0.5 | 0.6 |" in open(out["ap_table"]).read()
