"""Training: the schedule, the run folder, resume, and ``fit()`` wiring -- one entry point.

:func:`train` is what notebooks and ``python -m ssd_keras train`` call.  A run
folder holds everything about one run::

    run_dir/config.json              DetectorConfig
    run_dir/train_config.json        TrainConfig
    run_dir/backup/                  resume state (weights + optimizer + step), every backup_every steps
    run_dir/checkpoints/             ckpt-<step>.weights.h5 every checkpoint_every steps (last 5 kept)
    run_dir/logs/train_log.csv       one row per log_every steps (see ssd_keras.callbacks.TrainLogger)
    run_dir/logs/tensorboard/        the same scalars as TensorBoard events
    run_dir/metrics/intermediate_map.csv   mAP every eval_every steps (with eval records)
    run_dir/model.keras              the final model
    run_dir/metrics.json             COCO numbers on the validation data (end of run)
    run_dir/plots/                   loss curves and a detection gallery (see ssd_keras.run_report)

Steps are optimizer updates (``optimizer.iterations``); the learning rate is a
function of that step (:class:`WarmupSchedule`), so a resumed run continues
the schedule exactly.  Killing the process at any moment and starting it again
with the same arguments resumes from the last backup (see
:mod:`ssd_keras.callbacks`).  Data order after a resume is not the order the
uninterrupted run would have seen: the pipeline seed becomes ``seed + step``
so the first batches are not repeated.

Distribution: pass any ``tf.distribute`` strategy.  ``TrainConfig.batch_size``
is the *global* batch: each step's ``batch_size`` images are split evenly
across the ``R`` replicas (``batch_size / R`` each; a batch that does not
divide is an error) and the learning rate stays as configured, so the same
config is the same recipe on 1, 4 or 8 devices -- the reference (batch 32 at
1e-3, which Caffe ran as 4 GPUs x 8) included.  Each replica's loss is
normalised by the positive anchors of the whole global batch and the
replicas' gradients are summed (see :meth:`ssd_keras.models.base.SSDModel.compute_loss`),
so a step on ``R`` replicas is the single-device step on the same batch.
The linear scaling rule (Goyal et al. 2017: a ``k`` times larger batch at a
``k`` times larger rate) stays available as ``scale_lr_with_replicas=True``
(rate times ``R``) for users who raise ``batch_size`` with the device count.
``MultiWorkerMirroredStrategy`` reads ``TF_CONFIG``; only the chief writes the
run folder, other workers write theirs under ``run_dir/workers/<task>/``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import Optional, Sequence

import keras
import numpy as np

from ssd_keras.callbacks import (
    NaNGuard, RunClock, StepBackup, StepLimit, TrainingDiverged, TrainLogger, WeightsCheckpoint,
    atomic_save_model)
from ssd_keras.run_folder import run_paths  # re-exported: the run folder's layout
from ssd_keras.train_config import TrainConfig  # re-exported
from ssd_keras.usage import UsageError

__all__ = ["TrainConfig", "WarmupSchedule", "TrainingDiverged", "train", "make_optimizer",
           "BiasLRSGD", "is_bias", "reference_train_config", "multi_worker_strategy",
           "WorkerLost", "unreachable_peers",
           "make_loss_evaluator", "run_paths", "register", "main"]


# ----------------------------------------------------------------------------- schedule

@keras.saving.register_keras_serializable(package="ssd_keras")
class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up, then piecewise-constant, cosine or constant; a function of the step.

    ``step`` is ``optimizer.iterations`` (updates done before this one):

    * ``step < warmup_steps``: ``lr * (f + (1 - f) * step / warmup_steps)``
      with ``f = warmup_start_factor``;
    * ``"piecewise"``: ``lr * decay_factor ** (number of boundaries <= step)``
      (so update 80001, at step 80000, is the first at the lower rate);
    * ``"cosine"``: ``lr * (m + (1 - m) * (1 + cos(pi * t)) / 2)`` with
      ``t = (step - warmup) / (total - warmup)`` clipped to ``[0, 1]``;
    * then, from ``fine_tune_step`` on (any schedule): times ``fine_tune_factor``
      -- the lower rate of the fine-tuning phase after a frozen-backbone start
      (``TrainConfig.freeze_backbone_steps`` / ``unfreeze_lr_factor``).
    """

    def __init__(self, learning_rate, warmup_steps=0, warmup_start_factor=0.1,
                 schedule="piecewise", boundaries=(), decay_factor=0.1, total_steps=1,
                 cosine_min_factor=0.0, fine_tune_step=0, fine_tune_factor=1.0):
        self.learning_rate = float(learning_rate)
        self.warmup_steps = int(warmup_steps)
        self.warmup_start_factor = float(warmup_start_factor)
        self.schedule = schedule
        self.boundaries = tuple(int(b) for b in boundaries)
        self.decay_factor = float(decay_factor)
        self.total_steps = int(total_steps)
        self.cosine_min_factor = float(cosine_min_factor)
        self.fine_tune_step = int(fine_tune_step)
        self.fine_tune_factor = float(fine_tune_factor)

    @classmethod
    def from_train_config(cls, tc: TrainConfig, replicas: int = 1) -> "WarmupSchedule":
        scale = replicas if tc.scale_lr_with_replicas else 1
        return cls(tc.learning_rate * scale, tc.warmup_steps, tc.warmup_start_factor,
                   tc.schedule, tc.lr_boundaries, tc.lr_decay_factor, tc.total_steps,
                   tc.cosine_min_factor, tc.freeze_backbone_steps, tc.unfreeze_lr_factor)

    def __call__(self, step):
        ops = keras.ops
        step = ops.cast(step, "float32")
        lr = ops.convert_to_tensor(self.learning_rate, "float32")
        if self.schedule == "piecewise" and self.boundaries:
            passed = sum(ops.cast(step >= b, "float32") for b in self.boundaries)
            lr = lr * ops.power(ops.convert_to_tensor(self.decay_factor, "float32"), passed)
        elif self.schedule == "cosine":
            span = max(self.total_steps - self.warmup_steps, 1)
            t = ops.clip((step - self.warmup_steps) / span, 0.0, 1.0)
            m = self.cosine_min_factor
            lr = lr * (m + (1.0 - m) * 0.5 * (1.0 + ops.cos(math.pi * t)))
        if self.warmup_steps > 0:
            f = self.warmup_start_factor
            ramp = f + (1.0 - f) * step / self.warmup_steps
            lr = ops.where(step < self.warmup_steps, lr * ramp, lr)
        if self.fine_tune_factor != 1.0 and self.fine_tune_step > 0:
            lr = ops.where(step >= self.fine_tune_step, lr * self.fine_tune_factor, lr)
        return lr

    def value(self, step: int) -> float:
        """The rate at ``step`` as a Python float."""
        return float(keras.ops.convert_to_numpy(self(step)))

    def get_config(self):
        return {"learning_rate": self.learning_rate, "warmup_steps": self.warmup_steps,
                "warmup_start_factor": self.warmup_start_factor, "schedule": self.schedule,
                "boundaries": list(self.boundaries), "decay_factor": self.decay_factor,
                "total_steps": self.total_steps, "cosine_min_factor": self.cosine_min_factor,
                "fine_tune_step": self.fine_tune_step, "fine_tune_factor": self.fine_tune_factor}


def is_bias(variable) -> bool:
    """Whether a Keras variable is a layer's additive bias (``.../bias``; not BN's ``beta``)."""
    return variable.path.split("/")[-1] == "bias"


@keras.saving.register_keras_serializable(package="ssd_keras")
class BiasLRSGD(keras.optimizers.SGD):
    """SGD in which every bias trains at ``bias_lr_multiplier`` times the rate.

    Caffe SSD (``model_libs.py``) gives every convolution ``param {lr_mult: 1,
    decay_mult: 1} param {lr_mult: 2, decay_mult: 0}``: biases move at twice
    the base rate and have no weight decay.  Caffe's SGD, ``v = m v + lr_mult
    * lr * g``, is linear in ``g``, so multiplying the bias gradients by the
    multiplier before the update is exactly ``lr_mult`` (momentum included, at
    every rate of the schedule).  It is done in :meth:`apply`, the public
    entry every update goes through (``apply_gradients``, the
    ``LossScaleOptimizer`` of mixed precision, which passes unscaled
    gradients, ``jit_compile`` and ``tf.distribute`` replicas alike), so the
    train step stays Keras' own.  The optimizer's variables are plain SGD's:
    a backup restores it like any SGD.  With ``clipnorm`` a bias gradient is
    clipped after the multiplication (Caffe clips before ``lr_mult``; the
    reference recipe does not clip).  Which variables are biases: :func:`is_bias`.
    """

    def __init__(self, bias_lr_multiplier=2.0, **kwargs):
        super().__init__(**kwargs)
        self.bias_lr_multiplier = float(bias_lr_multiplier)
        self._bias_flags = ()

    def build(self, variables):
        super().build(variables)
        self._bias_flags = tuple(is_bias(v) for v in variables)

    def apply(self, grads, trainable_variables=None):
        grads = list(grads)
        flags = (self._bias_flags if trainable_variables is None
                 else [is_bias(v) for v in trainable_variables])
        if len(flags) == len(grads):
            grads = [g * self.bias_lr_multiplier if flag and g is not None else g
                     for g, flag in zip(grads, flags)]
        return super().apply(grads, trainable_variables)

    def get_config(self):
        return {**super().get_config(), "bias_lr_multiplier": self.bias_lr_multiplier}


def make_optimizer(tc: TrainConfig, schedule) -> keras.optimizers.Optimizer:
    """SGD (momentum; :class:`BiasLRSGD` with ``bias_lr_multiplier``) or Adam on ``schedule``."""
    kwargs = {"clipnorm": tc.clipnorm} if tc.clipnorm else {}
    if tc.optimizer == "sgd":
        if tc.bias_lr_multiplier != 1.0:
            return BiasLRSGD(tc.bias_lr_multiplier, learning_rate=schedule,
                             momentum=tc.momentum, **kwargs)
        return keras.optimizers.SGD(learning_rate=schedule, momentum=tc.momentum, **kwargs)
    return keras.optimizers.Adam(learning_rate=schedule, **kwargs)


def reference_train_config(config) -> TrainConfig:
    """The reference training recipe of a detector config or preset name.

    ``TrainConfig()`` is Caffe SSD's VOC schedule; for the VGG presets (the
    Caffe models: ``architecture == "ssd_vgg16"``) it adds the two solver
    details of ``ssd_pascal.py`` / ``model_libs.py``: the 2x bias learning
    rate (``bias_lr_multiplier=2``) and the frozen first four convolutions
    (``freeze_layers = ['conv1_1', 'conv1_2', 'conv2_1', 'conv2_2']``).
    Other architectures (MobileNet, digits) were not trained that way: plain
    ``TrainConfig()``.
    """
    if isinstance(config, str):
        from ssd_keras import presets
        config = presets.get(config)
    if config.architecture == "ssd_vgg16":
        return TrainConfig(bias_lr_multiplier=2.0,
                           frozen_layers=("conv1_1", "conv1_2", "conv2_1", "conv2_2"))
    return TrainConfig()


# ----------------------------------------------------------------------------- run folder

class WorkerLost(RuntimeError):
    """A multi-worker run lost a peer; ``lost`` names the unreachable workers (``"worker 1 (host:port)"``)."""

    def __init__(self, message, lost=()):
        super().__init__(message)
        self.lost = tuple(lost)


def _cluster_peers():
    """``[(task name, "host:port")]`` of the other tasks in ``TF_CONFIG`` (empty: one process)."""
    try:
        spec = json.loads(os.environ.get("TF_CONFIG", "{}"))
    except ValueError:
        return []
    me = spec.get("task", {})
    peers = []
    for kind, addresses in spec.get("cluster", {}).items():
        for index, address in enumerate(addresses):
            if (kind, index) != (me.get("type"), int(me.get("index", 0))):
                peers.append((f"{kind} {index}", address))
    return peers


def unreachable_peers(timeout: float = 2.0) -> list:
    """The ``TF_CONFIG`` peers whose gRPC port refuses a TCP connection: ``["worker 1 (h:p)"]``."""
    import socket
    lost = []
    for name, address in _cluster_peers():
        host, _, port = address.rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=timeout):
                pass
        except OSError:
            lost.append(f"{name} ({address})")
    return lost


def multi_worker_strategy(timeout_seconds: float = 600.0):
    """``MultiWorkerMirroredStrategy`` from ``TF_CONFIG`` that fails instead of hanging.

    * Every collective (gradient all-reduce, the loss normaliser, metric
      reductions) gives up after ``timeout_seconds`` without an answer from
      every worker (``CommunicationOptions(timeout_seconds=...)``), so a lost
      worker ends the others' step with an error rather than a wait forever;
      :func:`train` then names the worker that no longer answers
      (:class:`WorkerLost`).  It must exceed the longest legitimate gap
      between two collectives (an intermediate-mAP evaluation runs on every
      worker at the same step, so it does not count).
    * ``reduce`` accepts nested structures and scalars with ``axis=0``:
      Keras 3's ``fit`` asks the strategy for both (keras-team/keras#20585,
      ``ValueError: Attempt to convert a value (PerReplica ...)``), which
      ``MirroredStrategy`` handles and ``MultiWorkerMirroredStrategy`` does
      not; this is an override of the public ``Strategy.reduce``, leaf by leaf.
    """
    import tensorflow as tf

    class _MultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
        def reduce(self, reduce_op, value, axis):
            parent = super().reduce

            def one(leaf):
                first = (leaf.values[0] if isinstance(leaf, tf.distribute.DistributedValues)
                         else leaf)
                rank = getattr(getattr(first, "shape", None), "rank", None)
                return parent(reduce_op, leaf, None if rank == 0 else axis)
            return tf.nest.map_structure(one, value)

    options = tf.distribute.experimental.CommunicationOptions(
        timeout_seconds=float(timeout_seconds))
    return _MultiWorkerMirroredStrategy(communication_options=options)


def _worker_task():
    """``(is_chief, task name)`` from ``TF_CONFIG`` (single process: chief)."""
    try:
        task = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {})
    except ValueError:
        task = {}
    kind, index = task.get("type"), int(task.get("index", 0))
    if kind is None:
        return True, "chief"
    cluster = json.loads(os.environ["TF_CONFIG"]).get("cluster", {})
    chief = kind == "chief" or (kind == "worker" and index == 0 and "chief" not in cluster)
    return chief, f"{kind}_{index}"


# ----------------------------------------------------------------------------- validation

def evenly_spaced(records: Sequence, count: Optional[int]) -> list:
    """A fixed subset of ``count`` records spread evenly over ``records`` (all if ``None``/fewer).

    Deterministic (the same images at every evaluation and on resume), and
    spread over the whole list rather than its head, so an image set sorted by
    year or source is sampled throughout.
    """
    records = list(records)
    if count is None or count >= len(records):
        return records
    return [records[i] for i in np.linspace(0, len(records) - 1, count).round().astype(int)]


def make_loss_evaluator(model, dataset, steps: Optional[int] = None, strategy=None):
    """``fn() -> {classification_loss, localization_loss, regularization_loss, total_loss}``.

    Means over ``steps`` batches (``None``: one pass) of ``dataset``
    (``(images, {"labels", "boxes"})``), computed without touching the
    model's training loss trackers (``model.evaluate`` would reset them).
    """
    import tensorflow as tf

    strategy = strategy or tf.distribute.get_strategy()

    replicas = strategy.num_replicas_in_sync

    def step_fn(images, targets):
        # Each replica's parts are its share of the global batch's loss
        # (SSDModel.loss_components) and each holds the whole weight decay:
        # the SUM over replicas of (parts, reg / R) is the global batch's value.
        pred = model(images, training=False)
        parts = model.loss_components(targets, pred)
        reg = tf.zeros((), tf.float32)
        for loss in model.losses:
            reg = reg + tf.cast(tf.reduce_sum(loss), tf.float32)
        return tf.stack([tf.cast(parts["classification"], tf.float32),
                         tf.cast(parts["localization"], tf.float32), reg / replicas])

    @tf.function
    def distributed_step(images, targets):
        values = strategy.run(step_fn, args=(images, targets))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, values, axis=None)

    data = dataset.take(steps) if steps else dataset
    if strategy.num_replicas_in_sync > 1:
        data = strategy.experimental_distribute_dataset(data)

    def evaluate():
        sums, n = np.zeros(3), 0
        for images, targets in data:
            sums += distributed_step(images, targets).numpy()
            n += 1
        means = sums / max(n, 1)
        names = ("classification_loss", "localization_loss", "regularization_loss")
        out = dict(zip(names, means.tolist()))
        out["total_loss"] = float(means.sum())
        return out
    return evaluate


# ----------------------------------------------------------------------------- train

def _log(verbose, *args):
    if verbose:
        print(*args, flush=True)


def _finite_dataset(dataset):
    import tensorflow as tf
    if dataset.cardinality() != tf.data.INFINITE_CARDINALITY:
        dataset = dataset.repeat()
    return dataset


def train(config, train_records=None, run_dir: str = "runs/ssd", train_config: TrainConfig = None,
          val_records=None, train_dataset=None, val_dataset=None, strategy=None,
          eval_records=None, callbacks: Sequence = (), verbose: int = 1, coco_gt=None,
          weights=None, report: bool = True):
    """Train (or resume training) a detector; return ``(model, history DataFrame)``.

    Args:
        config: :class:`~ssd_keras.config.DetectorConfig` or preset name.
        train_records: records to train on (checked with
            :func:`~ssd_keras.data.check.filter_bad_records`, then fed through
            :func:`~ssd_keras.data.pipeline.make_dataset`); or
        train_dataset: a ready dataset of ``(images (B, H, W, 3) RGB [0, 255],
            {"labels": (B, N), "boxes": (B, N, 4)})`` with the *global* batch
            (repeated if finite).
        run_dir: the run folder (created; an existing backup there is resumed).
        train_config: :class:`TrainConfig` (default: the reference schedule).
        val_records / val_dataset: validation loss every ``val_every`` steps
            (on ``train_config.val_loss_images`` of the records; a dataset is
            used as given, ``val_steps`` batches of it).
        eval_records: intermediate mAP every ``eval_every`` steps and at the end
            (``train_config.eval_metric``; ``coco_gt`` for ``"coco"``).
        strategy: a ``tf.distribute`` strategy (default: the current one).
        callbacks: extra Keras callbacks (they see global steps via
            ``model.optimizer.iterations``).
        verbose: Keras progress bar and row printing (0: silent).
        weights: initial weights of a new run, as :func:`~ssd_keras.weights.load_into`
            takes them (``"imagenet"``: the reduced VGG16 base; a ``.weights.h5``,
            ``.keras`` or legacy ``.h5`` file); ignored when resuming from a backup.
        report: at the end, with ``eval_records`` or ``val_records``, write
            ``metrics.json`` (COCO), the loss plots and a detection gallery into
            the run folder and warn if the predictions collapsed
            (:func:`ssd_keras.run_report.write_run_report`).

    Returns:
        ``(model, history)``: the trained :class:`~ssd_keras.models.base.SSDModel`
        and ``logs/train_log.csv`` as a DataFrame (the whole run, resumed parts included).

    Raises:
        TrainingDiverged: a loss became NaN/inf; the backup and checkpoints
            from before are kept.
    """
    import pandas as pd
    import tensorflow as tf

    from ssd_keras.config import DetectorConfig
    from ssd_keras.models.base import SSDModel, load_initial_weights

    if isinstance(config, str):
        from ssd_keras import presets
        config = presets.get(config)
    if not isinstance(config, DetectorConfig):
        raise TypeError(f"config must be a DetectorConfig or preset name, got {type(config)}")
    tc = train_config or TrainConfig()
    if train_records is None and train_dataset is None:
        raise ValueError("train() needs train_records or train_dataset")
    strategy = strategy or tf.distribute.get_strategy()
    replicas = strategy.num_replicas_in_sync
    global_batch = tc.batch_size
    if global_batch % replicas:
        raise ValueError(f"batch_size {global_batch} (the global batch) does not split evenly "
                         f"over the strategy's {replicas} replicas; use a multiple of {replicas}")

    is_chief, task = _worker_task()
    run_dir = os.fspath(run_dir)
    out_dir = run_dir if is_chief else os.path.join(run_dir, "workers", task)
    paths = run_paths(out_dir)
    for folder in ("checkpoints", "backup", "metrics", "tensorboard"):
        os.makedirs(paths[folder], exist_ok=True)
    config.to_json(paths["config"])
    tc.to_json(paths["train_config"])
    if tc.seed is not None:
        keras.utils.set_random_seed(tc.seed)

    schedule = WarmupSchedule.from_train_config(tc, replicas)
    previous_policy = keras.mixed_precision.global_policy()
    if tc.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        with strategy.scope():
            model = SSDModel(config)   # starting weights below, only for a new run
            for name in tc.frozen_layers:
                try:
                    model.get_layer(name).trainable = False
                except ValueError:
                    raise ValueError(f"TrainConfig.frozen_layers: {config.name} has no layer "
                                     f"{name!r}") from None
            model.compile(optimizer=make_optimizer(tc, schedule), jit_compile=tc.jit_compile)
            model.optimizer.build(model.trainable_variables)

        clock = RunClock()
        backup = StepBackup(paths["backup"], tc.backup_interval, tc.steps_per_epoch, clock)
        start = backup.restore(model)
        if not start:
            load_initial_weights(model, weights)
        if start:
            _log(verbose, f"resuming {run_dir} from step {start} "
                          f"(learning rate {schedule.value(start):.3g})")
        if start >= tc.total_steps:
            _log(verbose, f"{run_dir}: already trained for {start} >= {tc.total_steps} steps")
        else:
            try:
                _fit(model, config, tc, paths, strategy, backup, clock, schedule, start,
                     global_batch, train_records, train_dataset, val_records, val_dataset,
                     eval_records, coco_gt, callbacks, verbose)
            except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
                    tf.errors.CancelledError, tf.errors.AbortedError) as error:
                if not _cluster_peers():
                    raise
                lost = unreachable_peers()
                who = (", ".join(lost) + " is lost (its port refuses connections)" if lost
                       else "no worker answered in time (all still reachable)")
                raise WorkerLost(
                    f"multi-worker training of {run_dir} stopped at step "
                    f"{int(keras.ops.convert_to_numpy(model.optimizer.iterations))}: {who}; "
                    f"start every worker again with the same arguments to resume from the "
                    f"last backup ({type(error).__name__}: {str(error).splitlines()[0][:200]})",
                    lost) from error
        if is_chief:
            atomic_save_model(model, paths["model"])
            report_records = eval_records or val_records
            if report and report_records:
                from ssd_keras.callbacks import global_step
                from ssd_keras.run_report import write_run_report
                write_run_report(model, out_dir, report_records,
                                 coco_gt=coco_gt if eval_records else None,
                                 step=global_step(model), print_fn=print if verbose else None)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
    history = (pd.read_csv(paths["train_log"]) if os.path.exists(paths["train_log"])
               else pd.DataFrame())
    return model, history


def _fit(model, config, tc, paths, strategy, backup, clock, schedule, start, global_batch,
         train_records, train_dataset, val_records, val_dataset, eval_records, coco_gt,
         callbacks, verbose):
    from ssd_keras.data.pipeline import make_dataset

    if train_dataset is None:
        from ssd_keras.data.check import filter_bad_records
        records = filter_bad_records(train_records, skip_bad=tc.skip_bad_records)
        seed = None if tc.seed is None else tc.seed + start
        train_dataset = make_dataset(records, config, global_batch, training=True, seed=seed,
                                     augment=tc.augment)
    train_dataset = _finite_dataset(train_dataset)

    validate = None
    if val_dataset is None and val_records:
        val_dataset = make_dataset(evenly_spaced(val_records, tc.val_loss_images), config,
                                   global_batch, training=False)
    if val_dataset is not None:
        validate = make_loss_evaluator(model, val_dataset, tc.val_steps, strategy)

    guard = NaNGuard(describe=lambda: (
        f"last good checkpoint: {(checkpoints.existing() or ['none'])[-1]}; "
        f"backup: {backup.backup_dir}"))
    checkpoints = WeightsCheckpoint(paths["checkpoints"], tc.checkpoint_every, tc.keep_checkpoints)
    logger = TrainLogger(paths["train_log"], tc.log_interval, tc.steps_per_epoch, schedule.value,
                         clock, validate=validate, val_every=tc.val_interval,
                         tensorboard_dir=paths["tensorboard"],
                         print_fn=print if verbose else None)
    # Order matters: the guard raises before anything is saved from a diverged step.
    cbs = [guard, backup, StepLimit(tc.total_steps), logger, checkpoints]
    if tc.freeze_backbone_steps > 0:
        from ssd_keras.callbacks import FreezeLayers
        from ssd_keras.models.mobilenet import backbone_layers
        cbs.append(FreezeLayers(backbone_layers(model), tc.freeze_backbone_steps,
                                print_fn=print if verbose else None))
    if eval_records:
        from ssd_keras.evaluation.callback import IntermediateMAP
        cbs.append(IntermediateMAP(eval_records, tc.eval_every, tc.eval_metric,
                                   paths["intermediate_map"], coco_gt=coco_gt,
                                   print_fn=print if verbose else None))
    cbs.extend(callbacks)
    epochs = math.ceil(tc.total_steps / tc.steps_per_epoch)
    model.fit(train_dataset, epochs=epochs, steps_per_epoch=tc.steps_per_epoch,
              initial_epoch=start // tc.steps_per_epoch, callbacks=cbs, verbose=verbose,
              shuffle=False)


# ----------------------------------------------------------------------------- CLI

def _split_sets(text):
    """``"2007/trainval,2012/trainval"`` -> ``[("2007", "trainval"), ("2012", "trainval")]``."""
    out = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        year, sep, image_set = item.partition("/")
        if not sep:
            raise UsageError(f"image set {item!r} must look like 2007/trainval")
        out.append((year, image_set))
    return out


def _voc_records(root, sets):
    from ssd_keras.data.voc import read_voc
    records = []
    for year, image_set in sets:
        records.extend(read_voc(os.path.join(root, f"VOC{year}"), image_set))
    return records


def _own_data(args, config, tc):
    """``--data`` / ``--val-data`` -> ``(config with the data's classes, train, val records)``.

    Each source is said in one line (format, images, classes); the class
    names -- discovered from ``--data`` or fixed by ``--class-names`` -- go into
    the config (``num_classes``, ``class_names``, so into the run's
    config.json); ``--val-data`` is read with the same names (a class the
    training data lacks is a problem naming the file).  The validation images
    get the same decoding check as the training images
    (:func:`~ssd_keras.data.check.filter_bad_records`); its COCO ground truth
    is built from its records.
    """
    from ssd_keras.data.check import filter_bad_records
    from ssd_keras.data.check import load_training_data
    from ssd_keras.data.sources import config_for_classes, parse_class_names

    source = load_training_data(args.data, args.images, parse_class_names(args.class_names),
                                args.image_set, skip_bad=tc.skip_bad_records)
    print(source.describe(), flush=True)
    config = config_for_classes(config, source.class_names)
    val_records = None
    if args.val_data:
        val = load_training_data(args.val_data, args.val_images, source.class_names,
                                 args.val_image_set, skip_bad=tc.skip_bad_records,
                                 flag="--val-data")
        print(val.describe().replace("data:", "val-data:", 1), flush=True)
        val_records = filter_bad_records(val.records, skip_bad=tc.skip_bad_records)
    return config, source.records, val_records


def _own_data_recipe(args, config, num_images: int, overrides: dict):
    """The own-data recipe (:func:`ssd_keras.recipes.own_data_recipe`) for ``--data``; plan printed.

    ``--steps`` / ``--batch-size`` resize the recipe (its intervals and batch-norm
    momentum follow); the other schedule flags override its fields as usual.
    """
    from ssd_keras.recipes import DEFAULT_BATCH_SIZE, own_data_recipe

    batch = args.batch_size or DEFAULT_BATCH_SIZE
    epochs = args.steps * batch / num_images if args.steps else None
    config, tc, plan = own_data_recipe(num_images, config.class_names, batch_size=batch,
                                       epochs=epochs)
    rest = {k: v for k, v in overrides.items() if k not in ("total_steps", "batch_size")}
    rest.pop("bias_lr_multiplier", None)      # an SGD detail; the recipe uses Adam
    try:
        tc = tc.replace(**rest)
    except ValueError as error:
        raise SystemExit(f"train: {error}") from None
    print(plan.describe(), flush=True)
    return config, tc


def _preset_name(name: str) -> str:
    """argparse ``type`` of ``--preset``: an unknown name is a one-line usage error."""
    from ssd_keras import presets
    if name not in presets.names():
        raise argparse.ArgumentTypeError(f"unknown preset {name!r}; choose from "
                                         f"{', '.join(presets.names())}")
    return name


def _existing_file(path: str) -> str:
    """argparse ``type`` of a file flag: a missing file is a one-line usage error."""
    if not os.path.isfile(path):
        raise argparse.ArgumentTypeError(f"{path}: no such file")
    return path


def _strategy(name):
    import tensorflow as tf
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        return multi_worker_strategy()
    return None


def default_weights(config, requested: Optional[str]) -> Optional[str]:
    """The ``--weights`` of the ``train`` command: notebook 01's ImageNet base by default.

    ``None`` (not given): ``"imagenet"`` for the VGG presets (random VGG cannot
    reach the reference 0.77 mAP), no initial weights otherwise.  ``"none"``:
    random weights, with a warning on stderr for the VGG presets.
    """
    vgg = config.architecture == "ssd_vgg16"
    if requested is None:
        return "imagenet" if vgg else None
    if requested.lower() == "none":
        if vgg:
            print(f"train: warning: --weights none starts {config.name} from a random VGG16 "
                  f"base; the reference recipe (0.77 mAP on VOC2007 test) starts from the "
                  f"ImageNet base (the default, --weights imagenet)", file=sys.stderr, flush=True)
        return None
    return requested


def default_voc_val(voc_root: str, requested: Optional[str]) -> Optional[str]:
    """The ``--val`` of the ``train`` command: ``"2007/test"`` when ``voc_root`` holds it.

    ``None`` (not given): VOC2007 test if its image list exists (notebook 01's
    validation loss and intermediate mAP), else no validation; ``"none"``: none.
    """
    if requested is None:
        test_list = os.path.join(voc_root, "VOC2007", "ImageSets", "Main", "test.txt")
        return "2007/test" if os.path.exists(test_list) else None
    return None if requested.lower() == "none" else requested


def run_train(args: argparse.Namespace) -> int:
    """The ``train`` command."""
    from ssd_keras import presets
    from ssd_keras.config import DetectorConfig

    # --data with no --preset/--config/--train-config: the own-data recipe, sized to the data.
    use_recipe = bool(getattr(args, "data", None)) and not (
        args.preset or args.config or args.train_config)
    config = (DetectorConfig.from_json(args.config) if args.config
              else presets.get(args.preset or "ssd300_voc"))
    tc = (TrainConfig.from_json(args.train_config) if args.train_config
          else reference_train_config(config))
    overrides = {"total_steps": args.steps, "batch_size": args.batch_size,
                 "learning_rate": args.lr, "optimizer": args.optimizer,
                 "schedule": args.schedule, "warmup_steps": args.warmup_steps,
                 "steps_per_epoch": args.steps_per_epoch, "log_every": args.log_every,
                 "checkpoint_every": args.checkpoint_every, "backup_every": args.backup_every,
                 "eval_every": args.eval_every, "seed": args.seed,
                 "val_loss_images": args.val_loss_images,
                 "bias_lr_multiplier": args.bias_lr_multiplier}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    for flag, field in (("mixed_precision", "mixed_precision"), ("jit_compile", "jit_compile"),
                        ("skip_bad_records", "skip_bad_records")):
        if getattr(args, flag):
            overrides[field] = True
    if args.no_augment:
        overrides["augment"] = False
    if args.scale_lr_with_replicas:
        overrides["scale_lr_with_replicas"] = True
    if args.optimizer == "adam" and args.bias_lr_multiplier is None:
        overrides["bias_lr_multiplier"] = 1.0      # the 2x bias rate is an SGD (Caffe) detail
    try:
        tc = tc.replace(**overrides)
    except ValueError as error:
        raise UsageError(str(error)) from None

    coco_gt = None
    if args.voc_root:
        train_records = _voc_records(args.voc_root, _split_sets(args.image_sets))
        val_sets = default_voc_val(args.voc_root, args.val)
        val_records = _voc_records(args.voc_root, _split_sets(val_sets)) if val_sets else None
        metric = tc.eval_metric
    elif args.data:
        config, train_records, val_records = _own_data(args, config, tc)
        if use_recipe:
            config, tc = _own_data_recipe(args, config, len(train_records), overrides)
        metric = "coco"
    elif args.coco_json:
        from ssd_keras.data.coco import coco_label_map, read_coco
        from ssd_keras.data.sources import config_for_classes
        if not args.images:
            raise UsageError("--coco-json needs --images DIR")
        train_records = read_coco(args.coco_json, args.images)
        config = config_for_classes(config, coco_label_map(args.coco_json).class_names)
        val_records = None
        if args.val_coco_json:
            val_records = read_coco(args.val_coco_json, args.val_images or args.images)
            coco_gt = args.val_coco_json
        metric = "coco"
    else:
        raise UsageError("give --data PATH, --voc-root DIR or --coco-json FILE --images DIR")
    tc = tc.replace(eval_metric=metric)
    print(f"train: {config.name} on {len(train_records)} images -> {args.run_dir} "
          f"({tc.total_steps} steps, batch {tc.batch_size})", flush=True)
    strategy = _strategy(args.strategy)
    replicas = strategy.num_replicas_in_sync if strategy is not None else 1
    if tc.batch_size % replicas:
        raise UsageError(f"--batch-size {tc.batch_size} (the global batch) does not split "
                         f"evenly over {replicas} replicas; use a multiple of {replicas}")
    try:
        _, history = train(config, train_records, run_dir=args.run_dir, train_config=tc,
                           val_records=val_records, eval_records=val_records,
                           strategy=strategy, coco_gt=coco_gt,
                           verbose=args.verbose, weights=default_weights(config, args.weights))
    except TrainingDiverged as error:
        print(f"train: {error}", file=sys.stderr)
        return 3
    except WorkerLost as error:
        print(f"train: {error}", file=sys.stderr, flush=True)
        return 4
    if len(history):
        print(history.tail(1).to_string(index=False), flush=True)
    return 0


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``train`` command."""
    p = subparsers.add_parser(
        "train", help="train (or resume) an SSD detector into a run folder",
        description="Train an SSD detector. Re-running the same command resumes from the "
                    "run folder's last backup.")
    p.add_argument("--preset", type=_preset_name,
                   help="detector preset (default: ssd300_voc; with --data and no --config / "
                        "--train-config, the own-data recipe of ssd_keras.recipes, sized to "
                        "the data)")
    p.add_argument("--config", type=_existing_file,
                   help="DetectorConfig JSON instead of a preset")
    p.add_argument("--train-config", type=_existing_file,
                   help="TrainConfig JSON (flags below override it)")
    p.add_argument("--data", metavar="PATH",
                   help="training data in any format: a folder (or .txt list) of Pascal VOC XML "
                        "files (labelImg, CVAT, Roboflow), a VOCdevkit year folder or a COCO "
                        "JSON; detected and said in one line; its class names go into the config")
    p.add_argument("--val-data", metavar="PATH",
                   help="validation data (same formats; loss curve and COCO mAP)")
    p.add_argument("--class-names", metavar="A,B,C",
                   help="fix the class names and their order (default: discovered from --data, "
                        "sorted); objects of other classes are problems")
    p.add_argument("--image-set", help="ImageSets/Main name when --data is a VOCdevkit year "
                                       "folder (default trainval)")
    p.add_argument("--val-image-set", help="the same for --val-data")
    p.add_argument("--voc-root", help="VOCdevkit folder holding VOC2007/, VOC2012/")
    p.add_argument("--image-sets", default="2007/trainval,2012/trainval",
                   help="training image sets YEAR/SET, comma-separated")
    p.add_argument("--val", help="validation image sets of --voc-root (loss curve and "
                                 "intermediate mAP); default 2007/test when --voc-root has it, "
                                 "'none' for no validation")
    p.add_argument("--coco-json", help="COCO-format training annotations")
    p.add_argument("--images", help="image folder of --coco-json or --data (--data: default "
                                     "beside the XML files / the JSON)")
    p.add_argument("--val-coco-json", help="COCO-format validation annotations")
    p.add_argument("--val-images", help="image folder of --val-coco-json or --val-data")
    p.add_argument("--run-dir", required=True, help="run folder (runs/NAME)")
    p.add_argument("--weights", help="initial weights of a new run: 'imagenet' (the reduced "
                                     "VGG16 base; the default for the VGG presets, as notebook "
                                     "01), a .weights.h5 / .keras / legacy .h5 file, or 'none' "
                                     "(random; warns for VGG)")
    p.add_argument("--steps", type=int, help="total optimizer steps")
    p.add_argument("--batch-size", type=int,
                   help="images per step over all replicas (the global batch; default 32)")
    p.add_argument("--lr", type=float, help="base learning rate")
    p.add_argument("--optimizer", choices=("sgd", "adam"))
    p.add_argument("--schedule", choices=("piecewise", "cosine", "constant"))
    p.add_argument("--warmup-steps", type=int)
    p.add_argument("--steps-per-epoch", type=int)
    p.add_argument("--log-every", type=int)
    p.add_argument("--backup-every", type=int)
    p.add_argument("--checkpoint-every", type=int)
    p.add_argument("--eval-every", type=int)
    p.add_argument("--val-loss-images", type=int,
                   help="validation loss on this fixed subset of the --val images (default 500; "
                        "the mAP uses all of them)")
    p.add_argument("--bias-lr-multiplier", type=float,
                   help="biases train at this times the rate (default 2 for the VGG presets, "
                        "as Caffe SSD; 1 otherwise)")
    p.add_argument("--seed", type=int)
    p.add_argument("--mixed-precision", action="store_true")
    p.add_argument("--jit-compile", action="store_true")
    p.add_argument("--skip-bad-records", action="store_true")
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--scale-lr-with-replicas", action="store_true",
                   help="multiply the learning rate by the number of replicas (linear scaling "
                        "rule; off by default: the batch is global, the rate as given)")
    p.add_argument("--strategy", choices=("none", "mirrored", "multiworker"), default="none")
    p.add_argument("--verbose", type=int, default=1, help="Keras verbosity (0, 1, 2)")
    p.set_defaults(func=run_train)
    return p


def main(argv=None) -> int:
    """Run ``train`` without the package-wide CLI: ``main(["--voc-root", ...])``."""
    from ssd_keras.__main__ import run_alone
    return run_alone(register, "train", argv)


if __name__ == "__main__":
    sys.exit(main())
