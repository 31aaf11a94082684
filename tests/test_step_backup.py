"""StepBackup (ssd_keras.callbacks): kill at any step, restore, continue -- bit-exact, public API only.

A small dense model on fixed batches (no SSD, no subprocess: fast); the
end-to-end kill-and-resume of ``train()`` is tests/test_training.py.
"""
import json
import os

import keras
import numpy as np
import pytest

STEPS, STEPS_PER_EPOCH = 10, 2


class Crash(Exception):
    pass


class CrashAt(keras.callbacks.Callback):
    """Raise at global step ``step`` (after the callbacks before it ran), like a kill."""

    def __init__(self, step):
        super().__init__()
        self.step = step

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) == self.step:
            raise Crash(self.step)


def batches(skip=0):
    """Step ``i``'s batch is always the same: ``(x (4, 3), y (4, 1))``."""
    import tensorflow as tf
    rng = np.random.default_rng(0)
    x = rng.normal(size=(STEPS * 4, 3)).astype("float32")
    y = (x @ np.array([[1.0], [-2.0], [0.5]], "float32")).astype("float32")
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(4).skip(skip).repeat()


def make_model(seed):
    from ssd_keras.training import WarmupSchedule
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(1)])
    schedule = WarmupSchedule(0.05, warmup_steps=5, boundaries=(7,), total_steps=STEPS)
    model.compile(optimizer=keras.optimizers.SGD(schedule, momentum=0.9), loss="mse")
    return model


def state(model):
    return ([v.numpy() for v in model.weights],
            [keras.ops.convert_to_numpy(v) for v in model.optimizer.variables])


def fit(model, backup=None, initial_epoch=0, skip=0, extra=()):
    callbacks = ([backup] if backup else []) + list(extra)
    model.fit(batches(skip), epochs=STEPS // STEPS_PER_EPOCH, steps_per_epoch=STEPS_PER_EPOCH,
              initial_epoch=initial_epoch, callbacks=callbacks, verbose=0, shuffle=False)


@pytest.mark.parametrize("crash_at", [5, 6])       # mid-epoch and on an epoch boundary
def test_kill_restore_continue_is_bit_exact(tmp_path, crash_at):
    from ssd_keras.callbacks import StepBackup

    reference = make_model(0)
    fit(reference)
    want_weights, want_optimizer = state(reference)

    backup_dir = str(tmp_path / "backup")
    first = make_model(0)
    with pytest.raises(Crash):
        fit(first, StepBackup(backup_dir, save_freq=4, steps_per_epoch=STEPS_PER_EPOCH),
            extra=[CrashAt(crash_at)])
    with open(os.path.join(backup_dir, "training_metadata.json")) as handle:
        assert json.load(handle)["step"] == 4          # the kill came before on_train_end

    resumed = make_model(7)                            # other initial weights: all restored
    backup = StepBackup(backup_dir, save_freq=4, steps_per_epoch=STEPS_PER_EPOCH)
    assert resumed.optimizer.built is False
    assert backup.restore(resumed) == 4 and backup.initial_epoch == 2
    assert int(resumed.optimizer.iterations.numpy()) == 4
    fit(resumed, backup, initial_epoch=backup.initial_epoch, skip=4)

    got_weights, got_optimizer = state(resumed)
    assert int(resumed.optimizer.iterations.numpy()) == STEPS
    for got, want in zip(got_weights + got_optimizer, want_weights + want_optimizer):
        np.testing.assert_array_equal(got, want)      # momentum slots included
    with open(os.path.join(backup_dir, "training_metadata.json")) as handle:
        meta = json.load(handle)
    assert meta["step"] == STEPS and meta["epoch"] == STEPS // STEPS_PER_EPOCH
    assert sorted(meta["elapsed_by_step"], key=int) == ["8", "10"]


def test_fit_without_restore_restores_on_train_begin(tmp_path):
    from ssd_keras.callbacks import StepBackup

    backup_dir = str(tmp_path / "backup")
    first = make_model(0)
    with pytest.raises(Crash):
        fit(first, StepBackup(backup_dir, 4, STEPS_PER_EPOCH), extra=[CrashAt(5)])
    second = make_model(7)
    steps = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            steps.append(int(self.model.optimizer.iterations.numpy()))

    second.fit(batches(4), epochs=1, steps_per_epoch=2, verbose=0, shuffle=False,
               callbacks=[StepBackup(backup_dir, 4, STEPS_PER_EPOCH), Record()])
    assert steps == [4, 5]                             # continued from the backup's step


def test_non_finite_weights_keep_the_previous_backup(tmp_path):
    from ssd_keras.callbacks import StepBackup, TrainingDiverged

    backup_dir = str(tmp_path / "backup")
    model = make_model(0)
    backup = StepBackup(backup_dir, 4, STEPS_PER_EPOCH)
    fit(model, backup)
    weights_file = os.path.join(backup_dir, "latest.weights.h5")
    before = open(weights_file, "rb").read()
    kernel = model.layers[0].kernel
    kernel.assign(np.full(kernel.shape, np.nan, "float32"))
    with pytest.raises(TrainingDiverged, match="not finite at step 10"):
        backup.save()
    assert open(weights_file, "rb").read() == before
    with pytest.raises(ValueError, match="save_freq"):
        StepBackup(backup_dir, 0, STEPS_PER_EPOCH)
