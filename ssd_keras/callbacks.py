"""Training callbacks: step-exact backup/resume, CSV + TensorBoard logging, checkpoints, NaN guard.

Every callback here counts in *global steps* -- ``model.optimizer.iterations``,
the number of optimizer updates so far -- never in Keras batch/epoch indices,
because after a resume Keras restarts its epoch at a batch index that need not
match the step the backup was taken at.  The optimizer's step counter is part
of the saved weights, so it is restored together with them and stays the one
source of truth for "where are we".

Resume contract (see :func:`ssd_keras.training.train`): killing the process at
any moment and starting it again with the same arguments continues from the
last backup with the same step, learning rate (the schedule is a function of
the step) and optimizer state; the CSV log drops rows written after that
backup, so it never holds a duplicate or a gap.

Files are written atomically (temp name in the same folder, then
``os.replace``): a crash during a write leaves the previous good file.
"""
from __future__ import annotations

import csv
import json
import math
import os
import time
from typing import Callable, Mapping, Optional, Sequence

import keras
import numpy as np

from ssd_keras.io_utils import atomic_write, atomic_write_text  # noqa: F401  (re-exported)

LOSS_COMPONENTS = ("classification_loss", "localization_loss", "regularization_loss")
LOSS_COLUMNS = LOSS_COMPONENTS + ("total_loss",)
VAL_LOSS_COLUMNS = tuple(f"val_{c}" for c in LOSS_COLUMNS)


class TrainingDiverged(RuntimeError):
    """The loss (or the weights) became NaN/inf.  ``step`` is the global step where it was seen."""

    def __init__(self, message, step):
        super().__init__(message)
        self.step = step


def global_step(model) -> int:
    """Optimizer updates done so far (restored with the weights on resume)."""
    return int(keras.ops.convert_to_numpy(model.optimizer.iterations))


# ----------------------------------------------------------------------------- atomic files

def atomic_save_weights(model, path: str) -> None:
    """``model.save_weights(path)`` via a temp file and ``os.replace`` (path ends ``.weights.h5``)."""
    atomic_write(path, lambda tmp: model.save_weights(tmp, overwrite=True))


def atomic_save_model(model, path: str) -> None:
    """``model.save(path)`` (``.keras``) via a temp file and ``os.replace``."""
    atomic_write(path, lambda tmp: model.save(tmp, overwrite=True))


def check_finite_weights(model, step: int, what: str = "weights") -> None:
    """Raise :class:`TrainingDiverged` if a trainable weight holds NaN/inf (before saving it)."""
    for variable in model.trainable_variables:
        if not np.all(np.isfinite(keras.ops.convert_to_numpy(variable))):
            raise TrainingDiverged(
                f"training diverged: weight {variable.path} is not finite at step {step}; "
                f"{what} not written, the previous one is kept", step)


# ----------------------------------------------------------------------------- CSV helpers

def truncate_csv(path: str, max_step: int, fieldnames: Sequence[str]) -> list:
    """Keep the rows of ``path`` with ``step <= max_step`` (complete rows only), rewrite atomically.

    Rows cut short by a crash and rows written after the restored step are
    dropped; columns are brought to ``fieldnames`` (missing ones empty).
    Returns the kept rows (dicts of strings).  Creates the file with a header
    if it does not exist.
    """
    kept = []
    if os.path.exists(path):
        with open(path, newline="") as handle:
            lines = handle.read().splitlines()
        reader = csv.reader(lines)
        header = next(reader, None) or []
        for values in reader:
            if len(values) != len(header):
                continue                       # a row cut short by a crash
            row = dict(zip(header, values))
            try:
                step = int(float(row["step"]))
            except (KeyError, ValueError):
                continue
            if step <= max_step:
                kept.append({name: row.get(name, "") for name in fieldnames})
    lines = [",".join(fieldnames)]
    lines += [",".join(_csv_value(r[name]) for name in fieldnames) for r in kept]
    atomic_write_text(path, "\n".join(lines) + "\n")
    return kept


def _csv_value(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return str(value)


def append_csv_row(path: str, row: Mapping, fieldnames: Sequence[str]) -> None:
    """Append one row in a single ``write`` and flush it to disk."""
    line = ",".join(_csv_value(row.get(name)) for name in fieldnames) + "\n"
    with open(path, "a") as handle:
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())


# ----------------------------------------------------------------------------- callbacks

class RunClock:
    """Training wall time that survives restarts: ``offset`` (restored) + time since ``start()``."""

    def __init__(self):
        self.offset = 0.0
        self._t0 = time.monotonic()

    def start(self, offset: float = 0.0) -> None:
        self.offset = float(offset)
        self._t0 = time.monotonic()

    def elapsed(self) -> float:
        return self.offset + time.monotonic() - self._t0


class StepBackup(keras.callbacks.BackupAndRestore):
    """Keras ``BackupAndRestore`` made step-exact and crash-safe.

    Differences from Keras 3.15's callback, and why:

    * Keras saves the epoch number in ``training_metadata.json`` and restores
      only that, so a mid-epoch backup restarts the epoch with the optimizer
      already further on.  Here the step is ``optimizer.iterations`` (inside
      the weights file) and ``restore()`` returns it; the trainer derives the
      initial epoch and the remaining steps from it.
    * Keras writes ``latest.weights.h5`` in place, so a kill during the write
      corrupts the only backup.  Here weights and metadata are written to temp
      files and renamed.
    * Keras deletes the backup at a normal end of training; here it is kept
      (``delete_checkpoint=False``), so re-running a finished run is a no-op.
    * Weights are checked to be finite before they replace the last backup.

    Args:
        backup_dir: folder for ``latest.weights.h5`` + ``training_metadata.json``.
        save_freq: back up every ``save_freq`` global steps.
        steps_per_epoch: to write the Keras-style ``epoch`` entry.
        clock: :class:`RunClock` whose elapsed time is stored and restored.
    """

    def __init__(self, backup_dir, save_freq: int, steps_per_epoch: int,
                 clock: Optional[RunClock] = None):
        super().__init__(backup_dir, save_freq=int(save_freq), delete_checkpoint=False)
        self.steps_per_epoch = int(steps_per_epoch)
        self.clock = clock or RunClock()
        self.restored_step = None

    def restore(self, model) -> int:
        """Load the backup into ``model`` (built, optimizer built) if there is one; return the step."""
        self.set_model(model)
        self._load_model()
        step = global_step(model)
        elapsed = 0.0
        if os.path.exists(self._training_metadata_path):
            with open(self._training_metadata_path) as handle:
                meta = json.load(handle)
            elapsed = float(meta.get("elapsed_by_step", {}).get(str(step), 0.0))
        self.clock.start(elapsed)
        self.restored_step = step
        model._initial_epoch = step // self.steps_per_epoch
        return step

    def _load_model(self):
        if os.path.exists(self._weights_path):
            if self.model.optimizer is not None and not self.model.optimizer.built:
                self.model.optimizer.build(self.model.trainable_variables)
            self.model.load_weights(self._weights_path)

    def on_train_begin(self, logs=None):
        if self.restored_step is None:
            self.restore(self.model)

    def on_train_batch_end(self, batch, logs=None):
        step = global_step(self.model)
        if step % self.save_freq == 0:
            self._save_model()

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_train_end(self, logs=None):
        self._save_model()

    def _save_model(self):
        step = global_step(self.model)
        check_finite_weights(self.model, step, "backup")
        os.makedirs(self.backup_dir, exist_ok=True)
        meta = {"elapsed_by_step": {}}
        if os.path.exists(self._training_metadata_path):
            try:
                with open(self._training_metadata_path) as handle:
                    meta = json.load(handle)
            except (OSError, ValueError):
                pass
        # Metadata first, holding the previous step's entry too: a crash between
        # the two renames leaves old weights whose step is still described.
        by_step = {k: v for k, v in meta.get("elapsed_by_step", {}).items()
                   if int(k) < step}
        last = sorted(by_step, key=int)[-1:]
        by_step = {k: by_step[k] for k in last}
        by_step[str(step)] = self.clock.elapsed()
        meta = {"epoch": step // self.steps_per_epoch, "batch": step % self.steps_per_epoch,
                "step": step, "elapsed_by_step": by_step}
        atomic_write_text(self._training_metadata_path, json.dumps(meta))
        atomic_save_weights(self.model, self._weights_path)


class NaNGuard(keras.callbacks.Callback):
    """Raise :class:`TrainingDiverged` naming the step when a loss is NaN/inf.

    Keras' ``TerminateOnNaN`` only stops training, after which a normal
    ``on_train_end`` runs (Keras' ``BackupAndRestore`` would then delete its
    backup).  Raising skips every later callback of that batch, so neither the
    backup nor a checkpoint is overwritten with diverged weights; put this
    callback first.
    """

    def __init__(self, describe: Optional[Callable[[], str]] = None):
        super().__init__()
        self.describe = describe

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        bad = {k: v for k, v in logs.items()
               if (k == "loss" or k in LOSS_COMPONENTS) and not np.isfinite(float(v))}
        if bad:
            step = global_step(self.model)
            where = f"; {self.describe()}" if self.describe else ""
            values = ", ".join(f"{k}={float(v)}" for k, v in sorted(bad.items()))
            raise TrainingDiverged(
                f"training diverged at step {step}: {values}{where}. Lower the learning rate, "
                "lengthen the warm-up or use --optimizer adam, then resume.", step)


class StepLimit(keras.callbacks.Callback):
    """Stop ``fit`` once ``optimizer.iterations`` reaches ``total_steps``."""

    def __init__(self, total_steps: int):
        super().__init__()
        self.total_steps = int(total_steps)

    def on_train_batch_end(self, batch, logs=None):
        if global_step(self.model) >= self.total_steps:
            self.model.stop_training = True


class WeightsCheckpoint(keras.callbacks.Callback):
    """``directory/ckpt-<step>.weights.h5`` every ``every`` steps (atomic), keeping the last ``keep``."""

    def __init__(self, directory: str, every: int, keep: int = 5):
        super().__init__()
        self.directory = directory
        self.every = int(every)
        self.keep = keep

    def path(self, step: int) -> str:
        return os.path.join(self.directory, f"ckpt-{step:07d}.weights.h5")

    def existing(self) -> list:
        if not os.path.isdir(self.directory):
            return []
        return sorted(os.path.join(self.directory, f) for f in os.listdir(self.directory)
                      if f.startswith("ckpt-") and f.endswith(".weights.h5"))

    def on_train_batch_end(self, batch, logs=None):
        step = global_step(self.model)
        if self.every > 0 and step % self.every == 0:
            self.save(step)

    def save(self, step: int) -> str:
        check_finite_weights(self.model, step, "checkpoint")
        path = self.path(step)
        atomic_save_weights(self.model, path)
        if self.keep:
            for old in self.existing()[:-self.keep]:
                os.remove(old)
        return path


class TrainLogger(keras.callbacks.Callback):
    """One CSV row (and TensorBoard scalars) every ``log_every`` global steps.

    Columns: ``step, epoch, learning_rate, classification_loss,
    localization_loss, regularization_loss, total_loss`` (means over the rows'
    interval), ``val_*`` (when ``validate`` is given; filled every
    ``val_every`` steps), ``elapsed_seconds``.

    Interval means come from the loss trackers' ``total``/``count`` variables
    (Keras metrics are cumulative means reset at each epoch start), read at
    each row and at each epoch end, so any interval -- also one spanning an
    epoch boundary or starting at a resumed step -- is averaged exactly.
    ``learning_rate`` is the rate of the last update of the interval.

    Args:
        csv_path: the log file (rows after the restored step are dropped at start).
        log_every, steps_per_epoch: intervals in global steps.
        learning_rate: ``fn(step) -> float``, the rate applied at optimizer step ``step``.
        clock: :class:`RunClock` (restored elapsed time).
        validate: ``fn() -> {"classification_loss": ..., ...}`` validation means.
        val_every: validation interval (a multiple of ``log_every``).
        tensorboard_dir: write scalars under ``train/`` and ``validation/``.
    """

    def __init__(self, csv_path: str, log_every: int, steps_per_epoch: int,
                 learning_rate: Callable[[int], float], clock: Optional[RunClock] = None,
                 validate: Optional[Callable[[], dict]] = None, val_every: Optional[int] = None,
                 tensorboard_dir: Optional[str] = None, print_fn: Optional[Callable] = None):
        super().__init__()
        self.csv_path = csv_path
        self.log_every = int(log_every)
        self.steps_per_epoch = int(steps_per_epoch)
        self.learning_rate = learning_rate
        self.clock = clock or RunClock()
        self.validate = validate
        self.val_every = int(val_every or log_every)
        self.tensorboard_dir = tensorboard_dir
        self.print_fn = print_fn
        self.fieldnames = (("step", "epoch", "learning_rate") + LOSS_COLUMNS
                           + (VAL_LOSS_COLUMNS if validate else ()) + ("elapsed_seconds",))
        self._writers = None

    # -- tracker arithmetic
    def _trackers(self):
        m = self.model
        return {"classification_loss": m.classification_loss_tracker,
                "localization_loss": m.localization_loss_tracker,
                "regularization_loss": m.regularization_loss_tracker}

    def _read(self):
        return {k: (float(keras.ops.convert_to_numpy(t.total)),
                    float(keras.ops.convert_to_numpy(t.count)))
                for k, t in self._trackers().items()}

    def _accumulate(self):
        now = self._read()
        for k, (total, count) in now.items():
            last_total, last_count = self._last[k]
            if count < last_count:           # reset since the last read
                last_total, last_count = 0.0, 0.0
            self._sums[k][0] += total - last_total
            self._sums[k][1] += count - last_count
        self._last = now

    def _reset_interval(self):
        self._sums = {k: [0.0, 0.0] for k in LOSS_COMPONENTS}

    # -- Keras hooks
    def on_train_begin(self, logs=None):
        os.makedirs(os.path.dirname(self.csv_path) or ".", exist_ok=True)
        self.start_step = global_step(self.model)
        truncate_csv(self.csv_path, self.start_step, self.fieldnames)
        self._last = self._read()
        self._reset_interval()
        self._pending = 0
        if self.tensorboard_dir:
            import tensorflow as tf
            self._writers = {
                "train": tf.summary.create_file_writer(os.path.join(self.tensorboard_dir, "train")),
                "validation": tf.summary.create_file_writer(
                    os.path.join(self.tensorboard_dir, "validation"))}

    def on_epoch_begin(self, epoch, logs=None):
        self._last = self._read()             # fit has just reset the trackers

    def on_epoch_end(self, epoch, logs=None):
        self._accumulate()

    def on_train_batch_end(self, batch, logs=None):
        step = global_step(self.model)
        self._pending += 1
        if step % self.log_every == 0:
            self._accumulate()
            self.write_row(step)

    def on_train_end(self, logs=None):
        step = global_step(self.model)
        if self._pending and step % self.log_every != 0:
            self._accumulate()
            self.write_row(step)
        if self._writers:
            for writer in self._writers.values():
                writer.close()

    def write_row(self, step: int) -> dict:
        row = {"step": step, "epoch": round(step / self.steps_per_epoch, 4),
               "learning_rate": float(self.learning_rate(max(step - 1, 0)))}
        total = 0.0
        for k in LOSS_COMPONENTS:
            s, n = self._sums[k]
            row[k] = s / n if n else float("nan")
            total += row[k]
        row["total_loss"] = total
        if self.validate is not None and step % self.val_every == 0:
            values = self.validate()
            for k in LOSS_COLUMNS:
                row[f"val_{k}"] = float(values[k])
        row["elapsed_seconds"] = round(self.clock.elapsed(), 3)
        append_csv_row(self.csv_path, row, self.fieldnames)
        self._write_summaries(step, row)
        if self.print_fn:
            self.print_fn(" ".join(f"{k}={_fmt(row[k])}" for k in self.fieldnames if k in row))
        self._reset_interval()
        self._pending = 0
        return row

    def _write_summaries(self, step, row):
        if not self._writers:
            return
        with self._writers["train"].as_default(step=step):
            for k in LOSS_COLUMNS + ("learning_rate",):
                _scalar_summary(k, row[k], step)
        if "val_total_loss" in row:
            with self._writers["validation"].as_default(step=step):
                for k in LOSS_COLUMNS:
                    _scalar_summary(k, row[f"val_{k}"], step)
        for writer in self._writers.values():
            writer.flush()


def _scalar_summary(tag, value, step):
    """A TensorBoard scalar event (what ``tf.summary.scalar`` writes, without the tensorboard package)."""
    import tensorflow as tf
    from tensorflow.core.framework import summary_pb2

    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = "scalars"
    tf.summary.write(tag, tf.constant(float(value), tf.float32), step=step,
                     metadata=metadata.SerializeToString())


def _fmt(value):
    return f"{value:.5g}" if isinstance(value, float) else str(value)


class FreezeLayers(keras.callbacks.Callback):
    """Keep ``layers`` non-trainable for the first ``until_step`` global steps, then train them.

    Fine-tuning practice (Keras transfer-learning guide): train the new head on a
    frozen pretrained backbone first, so its random gradients do not wreck the
    backbone features, then unfreeze.  Frozen steps are also cheaper (no backbone
    weight gradients).  The train function is rebuilt (``make_train_function(force=True)``)
    whenever the set of trainable weights changes; the optimizer was built on all
    weights, so its state covers both phases and a resumed run continues exactly.
    BatchNormalization layers are left as they are (see the backbone's
    ``freeze_batch_norm`` option: they stay in inference mode throughout).
    Keras counts weight regularizers of trainable weights only, so while frozen
    the layers' weight decay is not in the training loss (the validation loss
    function, traced once, keeps the set it first saw; the own-data recipe
    uses no weight decay, so neither differs there).

    Args:
        layers: the layers to freeze (e.g. :func:`ssd_keras.models.mobilenet.backbone_layers`).
        until_step: global step at which they become trainable (0: never frozen).
        print_fn: called with one line when the layers are unfrozen.
    """

    def __init__(self, layers: Sequence, until_step: int, print_fn: Optional[Callable] = None):
        super().__init__()
        self.layers = [layer for layer in layers
                       if not isinstance(layer, keras.layers.BatchNormalization)]
        self.until_step = int(until_step)
        self.print_fn = print_fn
        self.frozen = False

    def _set(self, frozen: bool) -> None:
        for layer in self.layers:
            layer.trainable = not frozen
        self.frozen = frozen
        self.model.make_train_function(force=True)

    def on_train_begin(self, logs=None):
        if global_step(self.model) < self.until_step:
            self._set(True)

    def on_train_batch_end(self, batch, logs=None):
        if self.frozen and global_step(self.model) >= self.until_step:
            self._set(False)
            if self.print_fn:
                self.print_fn(f"step {global_step(self.model)}: backbone unfrozen "
                              f"({len(self.layers)} layers now trainable)")

    def on_train_end(self, logs=None):
        if self.frozen:        # leave the model as built (all layers trainable)
            for layer in self.layers:
                layer.trainable = True
            self.frozen = False
