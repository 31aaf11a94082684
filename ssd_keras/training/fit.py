"""``train()``: a detector, records and a :class:`TrainConfig` -> a trained run folder.

:func:`train` is what notebooks and ``python -m ssd_keras train`` call; it
writes the run folder of :mod:`ssd_keras.training.run_folder`.

Steps are optimizer updates (``optimizer.iterations``); the learning rate is a
function of that step (:class:`~ssd_keras.training.schedule.WarmupSchedule`),
so a resumed run continues the schedule exactly.  Killing the process at any
moment and starting it again with the same arguments resumes from the last
backup (see :mod:`ssd_keras.callbacks`).  Data order after a resume is not the
order the uninterrupted run would have seen: the pipeline seed becomes
``seed + step`` so the first batches are not repeated.

Distribution: pass any ``tf.distribute`` strategy.  ``TrainConfig.batch_size``
is the *global* batch: each step's ``batch_size`` images are split evenly
across the ``R`` replicas (``batch_size / R`` each; a batch that does not
divide is an error) and the learning rate stays as configured, so the same
config is the same recipe on 1, 4 or 8 devices -- the reference (batch 32 at
1e-3, which Caffe ran as 4 GPUs x 8) included.  Each replica's loss is
normalised by the positive anchors of the whole global batch and the
replicas' gradients are summed (see :meth:`ssd_keras.models.base.DetectorModel.compute_loss`),
so a step on ``R`` replicas is the single-device step on the same batch.
The linear scaling rule (Goyal et al. 2017: a ``k`` times larger batch at a
``k`` times larger rate) stays available as ``scale_lr_with_replicas=True``
(rate times ``R``) for users who raise ``batch_size`` with the device count.
Multi-worker runs: :mod:`ssd_keras.training.distribute`.
"""
from __future__ import annotations

import math
import os
from typing import Optional, Sequence

import keras
import numpy as np

from ssd_keras.callbacks import (
    NaNGuard, RunClock, StepBackup, StepLimit, TrainLogger, WeightsCheckpoint, atomic_save_model)
from ssd_keras.training.config import TrainConfig
from ssd_keras.training.distribute import WorkerLost, cluster_peers, unreachable_peers, worker_task
from ssd_keras.training.run_folder import run_paths
from ssd_keras.training.schedule import WarmupSchedule, make_optimizer

__all__ = ["train", "make_loss_evaluator", "evenly_spaced"]


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
    """``fn() -> {<name>_loss..., regularization_loss, total_loss}``: the model's loss metrics.

    The names are the family's (SSD: ``classification_loss``,
    ``localization_loss``; CenterNet: ``object_center_loss``, ...; see
    :func:`~ssd_keras.models.base.loss_metric_names`).  Means over ``steps``
    batches (``None``: one pass) of ``dataset`` (``(images, targets)``),
    computed without touching the model's training loss trackers
    (``model.evaluate`` would reset them).
    """
    import tensorflow as tf

    strategy = strategy or tf.distribute.get_strategy()

    replicas = strategy.num_replicas_in_sync
    parts_names = model.family.loss_names
    names = tuple(f"{n}_loss" for n in parts_names) + ("regularization_loss",)

    def step_fn(images, targets):
        # Each replica's parts are its share of the global batch's loss
        # (DetectorModel.loss_components) and each holds the whole weight decay:
        # the SUM over replicas of (parts, reg / R) is the global batch's value.
        pred = model(images, training=False)
        parts = model.loss_components(targets, pred)
        reg = tf.zeros((), tf.float32)
        for loss in model.losses:
            reg = reg + tf.cast(tf.reduce_sum(loss), tf.float32)
        return tf.stack([tf.cast(parts[n], tf.float32) for n in parts_names] + [reg / replicas])

    @tf.function
    def distributed_step(images, targets):
        values = strategy.run(step_fn, args=(images, targets))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, values, axis=None)

    data = dataset.take(steps) if steps else dataset
    if strategy.num_replicas_in_sync > 1:
        data = strategy.experimental_distribute_dataset(data)

    def evaluate():
        sums, n = np.zeros(len(names)), 0
        for images, targets in data:
            sums += distributed_step(images, targets).numpy()
            n += 1
        means = sums / max(n, 1)
        out = dict(zip(names, means.tolist()))
        out["total_loss"] = float(means.sum())
        return out
    return evaluate



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
        ``(model, history)``: the trained :class:`~ssd_keras.models.base.DetectorModel`
        and ``logs/train_log.csv`` as a DataFrame (the whole run, resumed parts included).

    Raises:
        TrainingDiverged: a loss became NaN/inf; the backup and checkpoints
            from before are kept.
    """
    import pandas as pd
    import tensorflow as tf

    from ssd_keras.config import DetectorConfig
    from ssd_keras.models.base import DetectorModel
    from ssd_keras.weights.loading import load_initial_weights

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

    is_chief, task = worker_task()
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
            model = DetectorModel(config)   # any family; starting weights below, only for a new run
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
                if not cluster_peers():
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
              initial_epoch=backup.initial_epoch, callbacks=cbs, verbose=verbose,
              shuffle=False)
