"""evaluate_checkpoints: each saved checkpoint re-scored gives the intermediate-mAP CSV's rows."""
from __future__ import annotations

import os

import numpy as np
import pandas as pd


def test_evaluate_checkpoints_matches_evaluate_records(tmp_path):
    from ssd_keras import presets
    from ssd_keras.data.toy import make_voc_tree
    from ssd_keras.data.voc import VOC_CLASSES, read_voc
    from ssd_keras.evaluation.checkpoints import checkpoint_steps, evaluate_checkpoints
    from ssd_keras.evaluation.runner import evaluate_records
    from ssd_keras import build_model

    config = presets.get("ssd_mobilenet_v2_320", image_size=(96, 96), num_classes=20,
                         class_names=VOC_CLASSES,
                         backbone={**presets.get("ssd_mobilenet_v2_320").backbone,
                                   "depth_multiplier": 0.35})
    run = tmp_path / "run"
    os.makedirs(run / "checkpoints")
    config.to_json(str(run / "config.json"))
    model = build_model(config)
    rng = np.random.default_rng(0)
    expected = {}
    records = read_voc(make_voc_tree(tmp_path / "voc", num_images=2, quirks=False), "trainval")
    for step in (4, 2):
        model.set_weights([w + rng.normal(0, 0.05, w.shape).astype(w.dtype)
                           for w in model.get_weights()])
        model.save_weights(str(run / "checkpoints" / f"ckpt-{step:07d}.weights.h5"))
        expected[step] = evaluate_records(model, records, "voc")["map"]
    (run / "checkpoints" / "notes.txt").write_text("not a checkpoint")

    assert list(checkpoint_steps(run)) == [2, 4]
    csv = str(run / "metrics" / "rescored.csv")
    table = evaluate_checkpoints(str(run), records, "voc", csv_path=csv)
    assert list(table.columns) == ["step", "map", *VOC_CLASSES]
    assert table["step"].tolist() == [2, 4]
    np.testing.assert_allclose(table["map"], [expected[2], expected[4]], rtol=1e-6, atol=1e-9)
    pd.testing.assert_frame_equal(pd.read_csv(csv), table, check_dtype=False)
