"""Score a run's saved checkpoints after the fact: the AP x steps table without the callback.

:func:`evaluate_checkpoints` loads each ``checkpoints/ckpt-<step>.weights.h5`` of a
run folder (see :mod:`ssd_keras.training`) into the run's model and scores it
with :func:`~ssd_keras.evaluation.runner.evaluate_records`.  The result has the
columns of ``metrics/intermediate_map.csv`` (``step, map, <class>...``), so
:func:`ssd_keras.reporting.ap_table` turns either into the reference layout --
e.g. with another metric (``"voc"`` all-point, ``"coco"``) than the one the run
was trained with.
"""
from __future__ import annotations

import glob
import os
import re
from typing import Optional, Sequence

import pandas as pd

_CKPT = re.compile(r"ckpt-(\d+)\.weights\.h5$")


def checkpoint_steps(run_dir: str) -> dict:
    """``{step: path}`` of the run's weight checkpoints, in step order."""
    found = {}
    for path in glob.glob(os.path.join(os.fspath(run_dir), "checkpoints", "ckpt-*.weights.h5")):
        match = _CKPT.search(os.path.basename(path))
        if match:
            found[int(match.group(1))] = path
    return dict(sorted(found.items()))


def evaluate_checkpoints(run_dir: str, records: Sequence, metric: str = "voc07", coco_gt=None,
                         steps: Optional[Sequence[int]] = None, batch_size: int = 8,
                         csv_path: Optional[str] = None) -> pd.DataFrame:
    """``step, map, <class>...`` for each checkpoint of ``run_dir`` (or only ``steps``).

    Args:
        run_dir: a run folder holding ``config.json`` and ``checkpoints/``.
        records: ground-truth records to score on (e.g. VOC2007 test).
        metric, coco_gt: as :func:`~ssd_keras.evaluation.runner.evaluate_records`.
        csv_path: also write the table there (the ``intermediate_map.csv`` format).
    """
    from ssd_keras.config import DetectorConfig
    from ssd_keras.evaluation.runner import class_names_of, evaluate_records
    from ssd_keras.models.base import DetectorModel

    config = DetectorConfig.from_json(os.path.join(os.fspath(run_dir), "config.json"))
    model = DetectorModel(config)   # every weight comes from the checkpoints
    names = class_names_of(model)
    rows = []
    for step, path in checkpoint_steps(run_dir).items():
        if steps is not None and step not in steps:
            continue
        model.load_weights(path)
        result = evaluate_records(model, records, metric, coco_gt=coco_gt, batch_size=batch_size)
        rows.append({"step": step, "map": result["map"],
                     **{name: float(result["per_class"].get(name, float("nan"))) for name in names}})
    table = pd.DataFrame(rows, columns=["step", "map", *names])
    if csv_path:
        os.makedirs(os.path.dirname(csv_path) or ".", exist_ok=True)
        table.to_csv(csv_path, index=False)
    return table
