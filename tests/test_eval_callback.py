"""Evaluation runner + intermediate-mAP callback, and an end-to-end train -> evaluate -> plot run."""
from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from tests.test_training import tiny_config  # registers the tiny test architecture
from tests.voc_fixtures import make_coco_dataset, make_voc_tree


def _compiled_tiny(config, step=0):
    import ssd_keras
    from ssd_keras.training import TrainConfig, WarmupSchedule, make_optimizer

    model = ssd_keras.build_model(config)
    tc = TrainConfig()
    model.compile(optimizer=make_optimizer(tc, WarmupSchedule.from_train_config(tc)))
    model.optimizer.build(model.trainable_variables)
    model.optimizer.iterations.assign(step)
    return model


def test_intermediate_map_drops_rows_after_restored_step(tmp_path):
    from ssd_keras.data.voc import read_voc
    from ssd_keras.evaluation.callback import IntermediateMAP

    voc = make_voc_tree(tmp_path / "data", num_images=2, size=(64, 48), quirks=False)
    records = read_voc(voc, "trainval")
    config = tiny_config()
    csv = tmp_path / "metrics" / "map.csv"
    os.makedirs(csv.parent)
    names = list(config.class_names)
    header = ",".join(["step", "map", *names])
    csv.write_text(header + "\n" + "".join(f"{s},0.5" + ",0.1" * 20 + "\n" for s in (2, 4, 6))
                   + "8,0.5,0.1")                                      # a row cut by a crash
    model = _compiled_tiny(config, step=4)
    callback = IntermediateMAP(records, every_n_steps=2, csv_path=str(csv), print_fn=None)
    callback.set_model(model)
    callback.on_train_begin()
    assert pd.read_csv(csv)["step"].tolist() == [2, 4]
    model.optimizer.iterations.assign(6)
    callback.on_train_batch_end(0)
    callback.on_train_end()                                    # step 6 already evaluated
    df = pd.read_csv(csv)
    assert df["step"].tolist() == [2, 4, 6]
    assert list(df.columns) == ["step", "map", *names]
    assert 0.0 <= df["map"].iloc[-1] <= 1.0


def test_predict_and_evaluate_records_coco(tmp_path):
    from ssd_keras.data.coco import read_coco
    from ssd_keras.evaluation.runner import evaluate_records, predict_records

    json_path, images = make_coco_dataset(tmp_path, num_images=3, size=(80, 60))
    records = read_coco(json_path, images)
    model = _compiled_tiny(tiny_config(num_classes=4))
    detections = predict_records(model, records, batch_size=2, score_threshold=0.0)
    assert len(detections) == 3
    for det in detections:
        assert det["boxes"].shape[1] == 4 and len(det["boxes"]) > 0
        assert det["boxes"].min() >= 0 and det["boxes"][:, [0, 2]].max() <= 80
        assert set(det["labels"].tolist()) <= {1, 2, 3, 4}
    result = evaluate_records(model, records, "coco", coco_gt=json_path, detections=detections)
    assert set(result) >= {"map", "per_class", "AP", "AR100", "summary"}
    assert result["map"] == result["AP"]
    # Without coco_gt the records are the ground truth (coco_ground_truth), e.g. a VOC folder.
    from_records = evaluate_records(model, records, "coco", detections=detections)
    assert set(from_records["per_class"]) == {"class_1", "class_2", "class_3", "class_4"}
    assert 0.0 <= from_records["AP50"] <= 1.0


@pytest.mark.slow
def test_end_to_end_train_evaluate_plot(tmp_path):
    from ssd_keras import reporting
    from ssd_keras.data.voc import read_voc
    from ssd_keras.evaluation.runner import evaluate_records, predict_records
    from ssd_keras.training import TrainConfig, train

    voc = make_voc_tree(tmp_path / "data", num_images=4, size=(64, 48), quirks=False)
    records = read_voc(voc, "trainval")
    tc = TrainConfig(total_steps=5, batch_size=2, steps_per_epoch=2, log_every=1,
                     eval_every=2, checkpoint_every=100, warmup_steps=2, learning_rate=1e-3)
    run = str(tmp_path / "run")
    model, history = train(tiny_config(), records, run_dir=run, train_config=tc,
                           val_records=records, eval_records=records, verbose=0)
    assert history["step"].tolist() == [1, 2, 3, 4, 5]
    maps = pd.read_csv(os.path.join(run, "metrics", "intermediate_map.csv"))
    assert maps["step"].tolist() == [2, 4, 5]                  # every 2 steps + the end

    detections = predict_records(model, records)
    for det, record in zip(detections, records):
        assert det["boxes"].shape == (len(det["scores"]), 4)
        if len(det["boxes"]):                                  # VOC 1-based pixels
            assert det["boxes"][:, :2].min() >= 1 - 1e-3
            assert det["boxes"][:, 2].max() <= record.width + 1 + 1e-3
    voc07 = evaluate_records(model, records, "voc07", detections=detections)
    voc12 = evaluate_records(model, records, "voc", detections=detections)
    for result in (voc07, voc12):
        assert np.isnan(result["map"]) or 0.0 <= result["map"] <= 1.0
        assert set(result["per_class"]) <= set(model.detector_config.class_names)

    out = reporting.write_report(run, str(tmp_path / "figures"))
    assert all(os.path.exists(p) for p in out["loss_components"] + out["loss_history"])
    assert reporting.ap_table(run).index[-1] == "mAP"
    table = reporting.ap_table(run, step_format="{step}")
    assert list(table.columns) == ["2", "4", "5"]
