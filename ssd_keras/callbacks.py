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

def loss_components_of(model) -> tuple:
    """The loss metrics ``model`` logs, in order (``<name>_loss``..., ``regularization_loss``).

    A :class:`~ssd_keras.models.base.DetectorModel`'s ``loss_trackers`` keys
    (SSD: classification/localization/regularization, CenterNet:
    object_center/box_scale/box_offset/regularization).
    """
    return tuple(model.loss_trackers)


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


class StepBackup(keras.callbacks.Callback):
    """Resume state of a run -- weights, optimizer state, step -- every ``save_freq`` global steps.

    Owned here with public Keras API only (``Model.save_weights`` /
    ``load_weights``, ``Optimizer.build``, ``fit(initial_epoch=...)``), so a
    Keras minor release cannot break resume.  The backup folder holds::

        backup_dir/latest.weights.h5        model + optimizer variables (``.weights.h5`` holds
                                            the optimizer's, so ``iterations`` -- the step --
                                            and the momentum slots come back with the weights)
        backup_dir/training_metadata.json   {"step", "epoch", "batch", "elapsed_by_step"}

    (the file names of Keras' ``BackupAndRestore``, so backups written while
    this class extended it still resume).  Use::

        backup = StepBackup(run_paths(run_dir)["backup"], save_freq, steps_per_epoch, clock)
        step = backup.restore(model)          # 0 for a new run; model + optimizer built
        model.fit(data, epochs=E, steps_per_epoch=steps_per_epoch,
                  initial_epoch=backup.initial_epoch, callbacks=[..., backup])

    Why not ``keras.callbacks.BackupAndRestore``: it saves and restores only
    the epoch, so a mid-epoch backup restarts the epoch with the optimizer
    already further on (here the step is ``optimizer.iterations``, inside the
    weights file, and the caller derives the initial epoch from it); it
    writes ``latest.weights.h5`` in place, so a kill during the write corrupts
    the only backup (here weights and metadata are written to temp files and
    renamed); it deletes the backup at a normal end (here it is kept, so
    re-running a finished run is a no-op); and it sets the epoch to resume
    from through a private ``Model`` attribute.  Weights are checked to be
    finite before they replace the last backup.

    ``fit`` without a prior :meth:`restore` restores in ``on_train_begin``:
    the step and every step-based callback are right, only Keras' epoch
    numbers start where ``initial_epoch`` says.

    Args:
        backup_dir: folder for ``latest.weights.h5`` + ``training_metadata.json``.
        save_freq: back up every ``save_freq`` global steps (and at the end of ``fit``).
        steps_per_epoch: the Keras epoch length (``initial_epoch`` and the
            ``epoch``/``batch`` entries of the metadata).
        clock: :class:`RunClock` whose elapsed time is stored and restored.
    """

    WEIGHTS_FILE = "latest.weights.h5"
    METADATA_FILE = "training_metadata.json"

    def __init__(self, backup_dir, save_freq: int, steps_per_epoch: int,
                 clock: Optional[RunClock] = None):
        super().__init__()
        if int(save_freq) < 1 or int(steps_per_epoch) < 1:
            raise ValueError(f"StepBackup: save_freq ({save_freq}) and steps_per_epoch "
                             f"({steps_per_epoch}) must be >= 1")
        self.backup_dir = os.fspath(backup_dir)
        self.save_freq = int(save_freq)
        self.steps_per_epoch = int(steps_per_epoch)
        self.clock = clock or RunClock()
        self.weights_path = os.path.join(self.backup_dir, self.WEIGHTS_FILE)
        self.metadata_path = os.path.join(self.backup_dir, self.METADATA_FILE)
        self.restored_step = None

    @property
    def initial_epoch(self) -> int:
        """The ``fit(initial_epoch=...)`` of the restored step (0 before :meth:`restore`)."""
        return (self.restored_step or 0) // self.steps_per_epoch

    def restore(self, model) -> int:
        """Load the backup into ``model`` (its optimizer is built first) if there is one; return the step.

        The step is ``model.optimizer.iterations`` after loading (0 without a
        backup); the clock restarts at the elapsed time recorded for it.
        """
        self.set_model(model)
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        if os.path.exists(self.weights_path):
            model.load_weights(self.weights_path)
        step = global_step(model)
        meta = self._read_metadata()
        self.clock.start(float(meta.get("elapsed_by_step", {}).get(str(step), 0.0)))
        self.restored_step = step
        return step

    def _read_metadata(self) -> dict:
        try:
            with open(self.metadata_path) as handle:
                return json.load(handle)
        except (OSError, ValueError):
            return {}

    def on_train_begin(self, logs=None):
        if self.restored_step is None:
            self.restore(self.model)

    def on_train_batch_end(self, batch, logs=None):
        if global_step(self.model) % self.save_freq == 0:
            self.save()

    def on_train_end(self, logs=None):
        self.save()

    def save(self) -> int:
        """Write the backup of the current step (finite weights only); return the step."""
        step = global_step(self.model)
        check_finite_weights(self.model, step, "backup")
        os.makedirs(self.backup_dir, exist_ok=True)
        # Metadata first, holding the previous step's entry too: a crash between
        # the two renames leaves old weights whose step is still described.
        by_step = {k: v for k, v in self._read_metadata().get("elapsed_by_step", {}).items()
                   if int(k) < step}
        by_step = {k: by_step[k] for k in sorted(by_step, key=int)[-1:]}
        by_step[str(step)] = self.clock.elapsed()
        meta = {"epoch": step // self.steps_per_epoch, "batch": step % self.steps_per_epoch,
                "step": step, "elapsed_by_step": by_step}
        atomic_write_text(self.metadata_path, json.dumps(meta))
        atomic_save_weights(self.model, self.weights_path)
        return step


class NaNGuard(keras.callbacks.Callback):
    """Raise :class:`TrainingDiverged` naming the step when a loss is NaN/inf.

    Keras' ``TerminateOnNaN`` only stops training, after which a normal
    ``on_train_end`` runs (and a :class:`StepBackup` saves).  Raising skips
    every later callback of that batch, so neither the backup nor a
    checkpoint is overwritten with diverged weights; put this callback first.
    """

    def __init__(self, describe: Optional[Callable[[], str]] = None):
        super().__init__()
        self.describe = describe

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        bad = {k: v for k, v in logs.items()
               if k.endswith("loss") and not np.isfinite(float(v))}
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

    Columns: ``step, epoch, learning_rate``, the model's loss components
    (:func:`loss_components_of`; SSD: ``classification_loss,
    localization_loss, regularization_loss``), ``total_loss`` (means over the
    rows' interval), ``val_*`` of the same (when ``validate`` is given; filled
    every ``val_every`` steps), ``elapsed_seconds``.

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
        validate: ``fn() -> {"<component>": ..., "total_loss": ...}`` validation means.
        val_every: validation interval (a multiple of ``log_every``).
        tensorboard_dir: write scalars under ``train/`` and ``validation/``.
        loss_components: the loss metric names (default: the model's, read
            when training begins; ``fieldnames`` is set then).
    """

    def __init__(self, csv_path: str, log_every: int, steps_per_epoch: int,
                 learning_rate: Callable[[int], float], clock: Optional[RunClock] = None,
                 validate: Optional[Callable[[], dict]] = None, val_every: Optional[int] = None,
                 tensorboard_dir: Optional[str] = None, print_fn: Optional[Callable] = None,
                 loss_components: Optional[Sequence[str]] = None):
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
        self._set_components(loss_components)
        self._writers = None

    def _set_components(self, components):
        self.loss_components = tuple(components) if components else None
        if self.loss_components is None:
            self.fieldnames = None
            return
        self.loss_columns = self.loss_components + ("total_loss",)
        val = tuple(f"val_{c}" for c in self.loss_columns) if self.validate else ()
        self.fieldnames = ("step", "epoch", "learning_rate") + self.loss_columns + val + (
            "elapsed_seconds",)

    # -- tracker arithmetic
    def _trackers(self):
        return {k: self.model.loss_trackers[k] for k in self.loss_components}

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
        self._sums = {k: [0.0, 0.0] for k in self.loss_components}

    # -- Keras hooks
    def on_train_begin(self, logs=None):
        os.makedirs(os.path.dirname(self.csv_path) or ".", exist_ok=True)
        if self.loss_components is None:
            self._set_components(loss_components_of(self.model))
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
        for k in self.loss_components:
            s, n = self._sums[k]
            row[k] = s / n if n else float("nan")
            total += row[k]
        row["total_loss"] = total
        if self.validate is not None and step % self.val_every == 0:
            values = self.validate()
            for k in self.loss_columns:
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
            for k in self.loss_columns + ("learning_rate",):
                _scalar_summary(k, row[k], step)
        if "val_total_loss" in row:
            with self._writers["validation"].as_default(step=step):
                for k in self.loss_columns:
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
