"""Training: schedule, run folder, CSV log, NaN guard, kill-and-resume, MirroredStrategy, CLI.

A tiny test architecture (three strided convs, two source layers at strides
8 and 16 of a 32x32 input) keeps every run to a few seconds on CPU.  Runs that
must be killed or need their own device setup happen in subprocesses that
import this module for the architecture.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


from tests.tiny_models import tiny_config  # noqa: E402  (registers the tiny_test architecture)


def synthetic_dataset(config, batch_size=2, nan_from=None, seed=0):
    """Random images with one box each; box targets are NaN from element ``nan_from`` on."""
    import tensorflow as tf

    from ssd_keras.families.ssd.matching import encode_targets_for_config

    anchors = config.anchors()
    h, w = config.image_size

    # Encoded eagerly once (the same target for every image).
    targets = encode_targets_for_config(tf.constant([[0.2, 0.2, 0.7, 0.8]]), tf.constant([1]),
                                        config, anchors)

    def make(i):
        g = tf.random.stateless_uniform([h, w, 3], seed=[seed, tf.cast(i, tf.int32)]) * 255.0
        if nan_from is None:
            return g, targets
        # NaN box targets make the localization loss NaN (NaN images would not:
        # ReLU maps NaN to 0 on CPU).
        boxes = tf.where(i >= nan_from, targets["boxes"] * np.nan, targets["boxes"])
        return g, {"labels": targets["labels"], "boxes": boxes}

    return tf.data.Dataset.range(10 ** 6).map(make).batch(batch_size)


def read_log(run_dir):
    import pandas as pd
    return pd.read_csv(os.path.join(run_dir, "logs", "train_log.csv"))


# ----------------------------------------------------------------------------- config, schedule

def test_train_config_json_round_trip(tmp_path):
    from ssd_keras.training import TrainConfig

    tc = TrainConfig(optimizer="adam", schedule="cosine", lr_boundaries=(10, 20), clipnorm=5.0)
    path = tmp_path / "tc.json"
    tc.to_json(path)
    assert TrainConfig.from_json(path) == tc
    assert TrainConfig.from_json(tc.to_json()) == tc
    default = TrainConfig()
    assert (default.optimizer, default.momentum, default.learning_rate) == ("sgd", 0.9, 1e-3)
    assert default.lr_boundaries == (80000, 100000) and default.total_steps == 120000
    assert default.batch_size == 32 and default.log_interval == 1000
    with pytest.raises(ValueError, match="unknown TrainConfig fields"):
        TrainConfig.from_dict({"learning_rte": 1})
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="rmsprop")


def test_schedule_warmup_and_drops():
    from ssd_keras.training import TrainConfig, WarmupSchedule

    s = WarmupSchedule.from_train_config(TrainConfig())
    assert s.value(0) == pytest.approx(1e-4)
    assert s.value(500) == pytest.approx(1e-4 + 0.9e-3 * 0.5)
    assert s.value(1000) == pytest.approx(1e-3)
    assert s.value(79999) == pytest.approx(1e-3)
    assert s.value(80000) == pytest.approx(1e-4)
    assert s.value(99999) == pytest.approx(1e-4)
    assert s.value(100000) == pytest.approx(1e-5)
    cos = WarmupSchedule(0.08, 1000, 0.325, "cosine", total_steps=51000)
    assert cos.value(0) == pytest.approx(0.026)
    assert cos.value(1000) == pytest.approx(0.08)
    assert cos.value(26000) == pytest.approx(0.04, rel=1e-4)
    assert cos.value(51000) == pytest.approx(0.0, abs=1e-7)
    # The batch is global: the rate is the same on any number of replicas, unless the
    # linear scaling rule is asked for.
    assert WarmupSchedule.from_train_config(TrainConfig(), replicas=4).value(5000) == \
        pytest.approx(1e-3)
    scaled = TrainConfig(scale_lr_with_replicas=True)
    assert WarmupSchedule.from_train_config(scaled, replicas=4).value(5000) == pytest.approx(4e-3)
    # Serialisable with the optimizer.
    import keras
    again = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(cos))
    assert again.value(26000) == pytest.approx(cos.value(26000))


# ----------------------------------------------------------------------------- run folder + log

def test_train_run_folder_and_csv(tmp_path):
    from ssd_keras.config import DetectorConfig
    from ssd_keras.training import TrainConfig, train

    config = tiny_config(num_classes=3)
    tc = TrainConfig(total_steps=7, batch_size=2, steps_per_epoch=3, log_every=2,
                     checkpoint_every=3, warmup_steps=4, lr_boundaries=(5,),
                     learning_rate=1e-2, val_every=4, val_steps=2)
    run = str(tmp_path / "run")
    model, history = train(config, run_dir=run, train_config=tc,
                           train_dataset=synthetic_dataset(config),
                           val_dataset=synthetic_dataset(config, seed=1), verbose=0)
    assert list(history.columns) == [
        "step", "epoch", "learning_rate", "classification_loss", "localization_loss",
        "regularization_loss", "total_loss", "val_classification_loss",
        "val_localization_loss", "val_regularization_loss", "val_total_loss",
        "elapsed_seconds"]
    assert history["step"].tolist() == [2, 4, 6, 7]           # the last, partial interval too
    assert history["epoch"].tolist() == pytest.approx([2 / 3, 4 / 3, 2, 7 / 3], abs=1e-3)
    # The rate of the last update of each interval (update at step s-1): warm-up from
    # 1e-3 to 1e-2 over 4 steps, x0.1 from step 5.
    assert history["learning_rate"].tolist() == pytest.approx([3.25e-3, 7.75e-3, 1e-3, 1e-3])
    parts = history[["classification_loss", "localization_loss", "regularization_loss"]]
    assert np.all(np.isfinite(parts.to_numpy()))
    np.testing.assert_allclose(parts.sum(axis=1), history["total_loss"], rtol=1e-6)
    assert history["val_total_loss"].notna().tolist() == [False, True, False, False]
    assert history["elapsed_seconds"].is_monotonic_increasing
    assert int(model.optimizer.iterations.numpy()) == 7

    assert DetectorConfig.from_json(os.path.join(run, "config.json")) == config
    assert TrainConfig.from_json(os.path.join(run, "train_config.json")) == tc
    assert sorted(os.listdir(os.path.join(run, "checkpoints"))) == [
        "ckpt-0000003.weights.h5", "ckpt-0000006.weights.h5"]
    assert os.path.exists(os.path.join(run, "backup", "latest.weights.h5"))
    assert os.listdir(os.path.join(run, "logs", "tensorboard", "train"))
    assert os.path.exists(os.path.join(run, "model.keras"))
    assert not [f for f in os.listdir(run) if f.startswith(".tmp")]

    # Running again with the same arguments: already done, nothing is trained or logged twice.
    model2, history2 = train(config, run_dir=run, train_config=tc,
                             train_dataset=synthetic_dataset(config), verbose=0)
    assert int(model2.optimizer.iterations.numpy()) == 7
    assert history2["step"].tolist() == [2, 4, 6, 7]


def test_interval_means_are_exact(tmp_path):
    """Rows average exactly their interval, across Keras epoch resets."""
    import keras

    from ssd_keras.training import TrainConfig, train

    seen = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            t = self.model.loss_trackers["classification_loss"]
            seen.append((float(t.total.numpy()), float(t.count.numpy())))

    config = tiny_config(num_classes=3)
    tc = TrainConfig(total_steps=6, batch_size=2, steps_per_epoch=2, log_every=3,
                     checkpoint_every=100, warmup_steps=0, learning_rate=1e-2)
    _, history = train(config, run_dir=str(tmp_path / "run"), train_config=tc,
                       train_dataset=synthetic_dataset(config), callbacks=[Record()], verbose=0)
    # per-step values from the cumulative (total, count) pairs, epochs of 2 steps
    per_step = []
    for i, (total, count) in enumerate(seen):
        prev = seen[i - 1] if i % 2 else (0.0, 0.0)
        per_step.append((total - prev[0]) / (count - prev[1]))
    assert history["classification_loss"].tolist() == pytest.approx(
        [np.mean(per_step[:3]), np.mean(per_step[3:])], rel=1e-5)


# ----------------------------------------------------------------------------- NaN guard

def test_nan_guard_raises_and_keeps_backup(tmp_path):
    from ssd_keras.training import (TrainConfig, TrainingDiverged, WarmupSchedule,
                                    make_optimizer, train)

    config = tiny_config(num_classes=3)
    tc = TrainConfig(total_steps=20, batch_size=2, steps_per_epoch=5, log_every=2,
                     checkpoint_every=3, backup_every=2, warmup_steps=0, learning_rate=1e-2)
    run = str(tmp_path / "run")
    # Elements 12.. are NaN: batch 7 (step 7) is the first NaN batch.
    with pytest.raises(TrainingDiverged, match="at step 7") as info:
        train(config, run_dir=run, train_config=tc,
              train_dataset=synthetic_dataset(config, nan_from=12), verbose=0)
    assert info.value.step == 7
    assert "ckpt-0000006.weights.h5" in str(info.value)
    assert sorted(os.listdir(os.path.join(run, "checkpoints"))) == [
        "ckpt-0000003.weights.h5", "ckpt-0000006.weights.h5"]
    # The backup is the step-6 state, finite.
    model = __import__("ssd_keras").build_model(config)
    model.compile(optimizer=make_optimizer(tc, WarmupSchedule.from_train_config(tc)))
    model.optimizer.build(model.trainable_variables)
    model.load_weights(os.path.join(run, "backup", "latest.weights.h5"))
    assert int(model.optimizer.iterations.numpy()) == 6
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())
    assert read_log(run)["step"].tolist() == [2, 4, 6]


# ----------------------------------------------------------------------------- kill and resume

RESUME_SCRIPT = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, {tests!r})
    import keras
    import tests.test_training as t
    from ssd_keras.data.voc import read_voc
    from ssd_keras.training import TrainConfig, train

    class Slow(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            time.sleep(0.06)

    records = read_voc({voc!r}, "trainval")
    tc = TrainConfig(total_steps=36, batch_size=2, steps_per_epoch=5, log_every=3,
                     backup_every=2, checkpoint_every=6, warmup_steps=10, learning_rate=1e-3,
                     lr_boundaries=(20,), seed=1)
    model, history = train(t.tiny_config(), records, run_dir={run!r}, train_config=tc,
                           callbacks=[Slow()], verbose=2)
    print("FINAL_STEP", int(model.optimizer.iterations.numpy()), flush=True)
""")


@pytest.mark.slow
def test_kill_and_resume(tmp_path):
    from tests.voc_fixtures import make_voc_tree
    from ssd_keras.training import TrainConfig, WarmupSchedule

    voc = make_voc_tree(tmp_path / "data", num_images=6, size=(64, 48), quirks=False)
    run = str(tmp_path / "run")
    script = tmp_path / "run_train.py"
    script.write_text(RESUME_SCRIPT.format(tests=ROOT, voc=voc, run=run))
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "3"}
    log = os.path.join(run, "logs", "train_log.csv")

    first = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 150
    killed_after = None
    while time.time() < deadline and first.poll() is None:
        if os.path.exists(log):
            with open(log) as handle:
                rows = handle.read().splitlines()[1:]
            if len(rows) >= 4:                       # step >= 12 logged
                first.send_signal(signal.SIGKILL)
                killed_after = len(rows)
                break
        time.sleep(0.02)
    out_first = first.communicate()[0]
    assert killed_after is not None, out_first[-3000:]
    assert "FINAL_STEP" not in out_first

    second = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                            text=True, timeout=240)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "FINAL_STEP 36" in second.stdout
    resumed = [line for line in second.stdout.splitlines() if "resuming" in line]
    assert resumed, second.stdout
    resumed_step = int(resumed[0].split("from step ")[1].split()[0])
    assert 12 <= resumed_step < 36 and resumed_step % 2 == 0

    history = read_log(run)
    assert history["step"].tolist() == list(range(3, 37, 3))       # no duplicate, no gap
    schedule = WarmupSchedule.from_train_config(TrainConfig(
        warmup_steps=10, learning_rate=1e-3, lr_boundaries=(20,), total_steps=36))
    assert history["learning_rate"].tolist() == pytest.approx(
        [schedule.value(s - 1) for s in history["step"]])
    assert np.all(np.isfinite(history["total_loss"]))
    assert history["elapsed_seconds"].is_monotonic_increasing
    with open(os.path.join(run, "backup", "training_metadata.json")) as handle:
        assert json.load(handle)["step"] == 36


# ----------------------------------------------------------------------------- distribution

MIRRORED_SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import tests.test_training as t
    from ssd_keras.training import TrainConfig, train

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    config = t.tiny_config(num_classes=3)
    tc = TrainConfig(total_steps=3, batch_size=4, steps_per_epoch=3, log_every=1,
                     warmup_steps=0, learning_rate=1e-3, checkpoint_every=100)
    model, history = train(config, run_dir={run!r}, train_config=tc, strategy=strategy,
                           train_dataset=t.synthetic_dataset(config, batch_size=4),
                           val_dataset=t.synthetic_dataset(config, batch_size=4).take(2),
                           verbose=0)
    print("REPLICAS", strategy.num_replicas_in_sync)
    print("STEPS", int(model.optimizer.iterations.numpy()))
    print(history.to_csv(index=False))
""")


@pytest.mark.slow
def test_mirrored_strategy_two_cpus(tmp_path):
    run = str(tmp_path / "run")
    script = tmp_path / "mirrored.py"
    script.write_text(MIRRORED_SCRIPT.format(tests=ROOT, run=run))
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "REPLICAS 2" in done.stdout and "STEPS 3" in done.stdout
    history = read_log(run)
    assert history["step"].tolist() == [1, 2, 3]
    assert np.all(np.isfinite(history[["total_loss", "val_total_loss"]].to_numpy()))
    assert history["learning_rate"].tolist() == pytest.approx([1e-3] * 3)   # global batch: unscaled


# ----------------------------------------------------------------------------- CLI

def test_cli_train_on_voc_tree(tmp_path, capsys):
    from tests.voc_fixtures import make_voc_tree
    from ssd_keras.training import main

    root = tmp_path / "VOCdevkit"
    make_voc_tree(root, num_images=4, size=(64, 48), quirks=False)
    make_voc_tree(root, num_images=2, size=(64, 48), quirks=False, image_set="test",
                  start_index=10, seed=3)
    config_path = tmp_path / "tiny.json"
    tiny_config().to_json(config_path)
    run = str(tmp_path / "run")
    # No --val: VOC2007 test is there, so it is the default (loss curve and mAP, as notebook 01).
    code = main(["--config", str(config_path), "--voc-root", str(root),
                 "--image-sets", "2007/trainval", "--run-dir", run,
                 "--steps", "4", "--batch-size", "2", "--steps-per-epoch", "2",
                 "--eval-every", "2", "--checkpoint-every", "2", "--verbose", "0"])
    assert code == 0
    out = capsys.readouterr().out
    assert "train: tiny on 4 images" in out
    history = read_log(run)
    assert history["step"].tolist() == [2, 4]
    assert history["val_total_loss"].notna().all()
    import pandas as pd
    maps = pd.read_csv(os.path.join(run, "metrics", "intermediate_map.csv"))
    assert maps["step"].tolist() == [2, 4]
    assert list(maps.columns[:3]) == ["step", "map", "aeroplane"]


@pytest.mark.parametrize("switch", ["jit_compile", "mixed_precision"])
def test_xla_and_mixed_precision_switches(tmp_path, switch):
    """Both switches run on CPU too (XLA on CPU; float16 compute, float32 outputs and loss)."""
    import keras

    from ssd_keras.training import TrainConfig, train

    config = tiny_config(num_classes=3)
    tc = TrainConfig(total_steps=3, batch_size=2, steps_per_epoch=3, log_every=3, warmup_steps=0,
                     learning_rate=1e-3, **{switch: True})
    model, history = train(config, run_dir=str(tmp_path / switch), train_config=tc,
                           train_dataset=synthetic_dataset(config), verbose=0)
    assert np.all(np.isfinite(history["total_loss"].to_numpy()))
    assert int(model.optimizer.iterations.numpy()) == 3
    if switch == "mixed_precision":
        assert model.get_layer("tiny_conv0").compute_dtype == "float16"
        assert model.output["classification"].dtype == "float32"
    else:
        assert model.jit_compile
    assert keras.mixed_precision.global_policy().name == "float32"   # restored afterwards


def test_cli_defaults_reproduce_notebook_01(tmp_path, capsys, monkeypatch):
    """VGG presets start from the ImageNet base (random weights warn); --val defaults to
    2007/test when the devkit has it; the validation loss uses a fixed subset, mAP all images."""
    from ssd_keras import presets
    from ssd_keras.training import TrainConfig, reference_train_config, train
    from ssd_keras.training.cli import default_voc_val, default_weights
    from ssd_keras.training.fit import evenly_spaced
    from tests.voc_fixtures import make_voc_tree

    vgg = presets.get("ssd300_voc")
    assert default_weights(vgg, None) == "imagenet"
    assert default_weights(vgg, "imagenet") == "imagenet"
    assert default_weights(vgg, "model.weights.h5") == "model.weights.h5"
    assert capsys.readouterr().err == ""
    assert default_weights(vgg, "none") is None
    assert "random VGG16 base" in capsys.readouterr().err
    assert default_weights(tiny_config(), None) is None          # no ImageNet base to load
    assert default_weights(tiny_config(), "none") is None
    assert capsys.readouterr().err == ""
    assert reference_train_config(vgg).bias_lr_multiplier == 2.0

    root = tmp_path / "VOCdevkit"
    make_voc_tree(root, num_images=2, size=(64, 48), quirks=False)
    assert default_voc_val(str(root), None) is None              # no VOC2007 test yet
    make_voc_tree(root, num_images=5, size=(64, 48), quirks=False, image_set="test",
                  start_index=10, seed=3)
    assert default_voc_val(str(root), None) == "2007/test"
    assert default_voc_val(str(root), "none") is None
    assert default_voc_val(str(root), "2012/val") == "2012/val"

    records = list(range(4952))
    subset = evenly_spaced(records, 500)
    assert len(subset) == len(set(subset)) == 500 and subset[0] == 0 and subset[-1] == 4951
    assert evenly_spaced(records, 500) == subset                 # fixed
    assert evenly_spaced(records[:3], 500) == [0, 1, 2] and evenly_spaced(records, None) == records
    assert TrainConfig().val_loss_images == 500

    # train(): the loss curve on val_loss_images of val_records, the mAP on all eval_records.
    from ssd_keras.data import pipeline
    from ssd_keras.data.voc import read_voc
    seen = []
    real = pipeline.make_dataset

    def recording(records, *args, **kwargs):
        seen.append((len(records), kwargs.get("training")))
        return real(records, *args, **kwargs)

    monkeypatch.setattr(pipeline, "make_dataset", recording)
    test = read_voc(str(root / "VOC2007"), "test")
    tc = TrainConfig(total_steps=2, batch_size=2, steps_per_epoch=2, log_every=2, warmup_steps=0,
                     eval_every=2, checkpoint_every=100, val_loss_images=3)
    run = str(tmp_path / "run")
    train(tiny_config(), read_voc(str(root / "VOC2007"), "trainval"), run_dir=run,
          train_config=tc, val_records=test, eval_records=test, verbose=0, report=False)
    assert (3, False) in seen and (2, True) in seen
    import pandas as pd
    maps = pd.read_csv(os.path.join(run, "metrics", "intermediate_map.csv"))
    assert maps["step"].tolist() == [2]


def test_cli_global_batch_and_lr_flags():
    import argparse

    from ssd_keras.training import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train", "--run-dir", "r", "--scale-lr-with-replicas",
                              "--val-loss-images", "100", "--bias-lr-multiplier", "1"])
    assert args.scale_lr_with_replicas and args.val_loss_images == 100
    assert args.bias_lr_multiplier == 1.0 and args.weights is None and args.val is None
    help_text = parser._subparsers._group_actions[0].choices["train"].format_help()
    assert "global batch" in help_text and "--no-lr-scaling" not in help_text
