"""Intermediate mAP during training: the reference's "AP per class every 20k steps" table.

:class:`IntermediateMAP` evaluates the current weights on validation records
every ``every_n_steps`` global steps (``optimizer.iterations``) and appends one
CSV row per evaluation: ``step, map, <class 1>, <class 2>, ...`` (per-class AP).
:func:`ssd_keras.reporting.ap_table` turns that file into the reference
layout.  On resume, rows after the restored step are dropped first.
"""
from __future__ import annotations

import os
from typing import Optional, Sequence

import keras

from ssd_keras.callbacks import append_csv_row, global_step, truncate_csv


class IntermediateMAP(keras.callbacks.Callback):
    """Evaluate mAP every ``every_n_steps`` steps and at the end of training.

    Args:
        records: validation records (ground truth, e.g. VOC2007 test).
        every_n_steps: evaluation interval in global steps (default 20000).
        metric: ``"voc07"``, ``"voc"`` or ``"coco"`` (see
            :func:`~ssd_keras.evaluation.runner.evaluate_records`).
        csv_path: the CSV (created with a header if missing).
        class_names: names of labels ``1..K`` (default: the model config's);
            they are the per-class columns.
        coco_gt: COCO annotation JSON / ``COCO`` object for ``metric="coco"``.
        batch_size: inference batch size.
        at_train_end: also evaluate when training ends at a step that is not a
            multiple of ``every_n_steps``.
        print_fn: where the one-line summary goes (``None``: silent).
    """

    def __init__(self, records: Sequence, every_n_steps: int = 20000, metric: str = "voc07",
                 csv_path: str = "metrics/intermediate_map.csv",
                 class_names: Optional[Sequence[str]] = None, coco_gt=None,
                 batch_size: int = 8, at_train_end: bool = True, print_fn=print):
        super().__init__()
        self.records = list(records)
        self.every_n_steps = int(every_n_steps)
        self.metric = metric
        self.csv_path = csv_path
        self.class_names = list(class_names) if class_names is not None else None
        self.coco_gt = coco_gt
        self.batch_size = batch_size
        self.at_train_end = at_train_end
        self.print_fn = print_fn
        self.history = []
        self._last_step = None

    def _names(self):
        if self.class_names is None:
            from ssd_keras.evaluation.runner import class_names_of
            self.class_names = class_names_of(self.model, None)
        return self.class_names

    @property
    def fieldnames(self):
        return ["step", "map", *self._names()]

    def on_train_begin(self, logs=None):
        os.makedirs(os.path.dirname(self.csv_path) or ".", exist_ok=True)
        self._last_step = global_step(self.model)
        truncate_csv(self.csv_path, self._last_step, self.fieldnames)

    def on_train_batch_end(self, batch, logs=None):
        step = global_step(self.model)
        if self.every_n_steps > 0 and step % self.every_n_steps == 0:
            self.evaluate(step)

    def on_train_end(self, logs=None):
        step = global_step(self.model)
        if self.at_train_end and step != self._last_step:
            self.evaluate(step)

    def evaluate(self, step: int) -> dict:
        """Evaluate now, append the row, return it."""
        from ssd_keras.evaluation.runner import evaluate_records

        result = evaluate_records(self.model, self.records, self.metric, coco_gt=self.coco_gt,
                                  class_names=self._names(), batch_size=self.batch_size)
        row = {"step": step, "map": result["map"]}
        row.update({name: float(result["per_class"].get(name, float("nan")))
                    for name in self._names()})
        append_csv_row(self.csv_path, row, self.fieldnames)
        self.history.append(row)
        self._last_step = step
        if self.print_fn:
            self.print_fn(f"step {step}: {self.metric} mAP = {result['map']:.4f}")
        return row
