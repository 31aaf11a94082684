"""The optimiser details of Caffe SSD and the global batch across replicas.

* ``bias_lr_multiplier``: one SGD step moves every bias exactly ``m`` times as
  far as plain SGD and every kernel exactly as far (plain, XLA, mixed precision),
  and the optimizer survives the backup and ``model.keras``;
* weight decay where Caffe puts it: kernels and the L2Normalization scale, no bias;
* the global batch: under ``MirroredStrategy`` over two logical CPUs a batch of
  32 is 16 per replica, and loss, gradients and the updated weights equal the
  single-device step on the same batch (subprocess: logical devices must be
  configured before TensorFlow starts).
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.tiny_models import tiny_config

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def varied_batch(config, batch_size, seed=0):
    """``(images (B, H, W, 3), targets)``: image ``i`` holds ``1 + i % 3`` boxes, so halves of
    the batch have different positive counts (a per-replica normalisation would show)."""
    import tensorflow as tf

    from ssd_keras.families.ssd.matching import encode_targets_for_config

    rng = np.random.default_rng(seed)
    h, w = config.image_size
    images = rng.uniform(0, 255, (batch_size, h, w, 3)).astype("float32")
    labels, boxes = [], []
    for i in range(batch_size):
        n = 1 + i % 2 if i < batch_size // 2 else 3 + i % 2
        corners = []
        for _ in range(n):
            x0, y0 = rng.uniform(0, 0.5, 2)
            size = rng.uniform(0.2, 0.5, 2)
            corners.append([y0, x0, min(y0 + size[1], 1.0), min(x0 + size[0], 1.0)])
        t = encode_targets_for_config(tf.constant(corners, tf.float32),
                                      tf.constant(rng.integers(1, config.num_classes + 1, n),
                                                  tf.int32), config, config.anchors())
        labels.append(t["labels"].numpy())
        boxes.append(t["boxes"].numpy())
    return images, {"labels": np.stack(labels), "boxes": np.stack(boxes)}


# ----------------------------------------------------------------------------- bias learning rate

def _one_step_deltas(multiplier, images, targets, config, jit=False, mixed=False):
    import keras

    from ssd_keras import build_model
    from ssd_keras.training import TrainConfig, WarmupSchedule, make_optimizer

    previous = keras.mixed_precision.global_policy()
    if mixed:
        keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        keras.utils.set_random_seed(3)
        model = build_model(config)
        tc = TrainConfig(learning_rate=0.05, warmup_steps=0, schedule="constant",
                         bias_lr_multiplier=multiplier)
        optimizer = make_optimizer(tc, WarmupSchedule.from_train_config(tc))
        if mixed:   # (Keras' default first scale, 2**15, overflows float16: a skipped step)
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer, initial_scale=64.0)
        model.compile(optimizer=optimizer, jit_compile=jit)
        before = {v.path: np.array(v.numpy()) for v in model.trainable_variables}
        model.train_on_batch(images, targets)
        deltas = {v.path: v.numpy() - before[v.path] for v in model.trainable_variables}
        return model, deltas
    finally:
        keras.mixed_precision.set_global_policy(previous)


@pytest.mark.parametrize("mode", ["plain", "jit_compile", "mixed_precision"])
def test_bias_lr_multiplier_doubles_bias_steps_only(mode):
    from ssd_keras.training import BiasLRSGD, is_bias

    config = tiny_config(num_classes=3)
    images, targets = varied_batch(config, 4)
    kwargs = {"jit": mode == "jit_compile", "mixed": mode == "mixed_precision"}
    _, plain = _one_step_deltas(1.0, images, targets, config, **kwargs)
    model, doubled = _one_step_deltas(2.0, images, targets, config, **kwargs)
    optimizer = getattr(model.optimizer, "inner_optimizer", model.optimizer)
    assert isinstance(optimizer, BiasLRSGD)
    if mode == "mixed_precision":
        assert type(model.optimizer).__name__ == "LossScaleOptimizer"
    biases = [v.path for v in model.trainable_variables if is_bias(v)]
    assert len(biases) == 8 and len(plain) == 16          # 4 convs + 4 heads, kernel + bias each
    assert all(path.endswith("/bias") for path in biases)
    # Most biases move (the tiny net's last conv is all-ReLU-off for these images, and no
    # anchor of its head is a positive or a mined negative, so those get no gradient).
    assert sum(np.abs(plain[path]).max() > 1e-3 for path in biases) >= 5
    for path in plain:
        if path in biases:
            np.testing.assert_allclose(doubled[path], 2.0 * plain[path], rtol=1e-5, atol=1e-9,
                                       err_msg=path)
        else:                                              # kernels: the very same step
            np.testing.assert_allclose(doubled[path], plain[path], rtol=1e-5, atol=1e-9,
                                       err_msg=path)


def test_bias_lr_multiplier_config_and_save_resume(tmp_path):
    import keras

    from ssd_keras import build_model
    from ssd_keras.training import (BiasLRSGD, TrainConfig, WarmupSchedule, make_optimizer,
                                    reference_train_config, train)
    from tests.test_training import synthetic_dataset

    assert TrainConfig().bias_lr_multiplier == 1.0
    assert reference_train_config("ssd300_voc").bias_lr_multiplier == 2.0
    assert reference_train_config("ssd512_voc") == TrainConfig(
        bias_lr_multiplier=2.0, frozen_layers=("conv1_1", "conv1_2", "conv2_1", "conv2_2"))
    assert reference_train_config("ssd_mobilenet_v2_320") == TrainConfig()
    with pytest.raises(ValueError, match="needs optimizer='sgd'"):
        TrainConfig(optimizer="adam", bias_lr_multiplier=2.0)

    config = tiny_config(num_classes=3)
    tc = TrainConfig(total_steps=2, batch_size=2, steps_per_epoch=2, log_every=1,
                     warmup_steps=0, learning_rate=1e-2, bias_lr_multiplier=2.0)
    run = str(tmp_path / "run")
    model, _ = train(config, run_dir=run, train_config=tc,
                     train_dataset=synthetic_dataset(config), verbose=0)
    assert isinstance(model.optimizer, BiasLRSGD) and model.optimizer.bias_lr_multiplier == 2.0
    momenta = [v.numpy() for v in model.optimizer.variables]
    # The backup holds the optimizer state: a fresh BiasLRSGD restores it exactly.
    restored = build_model(config)
    restored.compile(optimizer=make_optimizer(tc, WarmupSchedule.from_train_config(tc)))
    restored.optimizer.build(restored.trainable_variables)
    restored.load_weights(os.path.join(run, "backup", "latest.weights.h5"))
    assert int(restored.optimizer.iterations.numpy()) == 2
    again = [v.numpy() for v in restored.optimizer.variables]
    assert len(again) == len(momenta) > 2
    assert all(np.array_equal(a, b) for a, b in zip(again, momenta))
    assert any(np.abs(m).max() > 0 for m in momenta[2:])
    # Resume from the backup: same optimizer class and state, the run continues.
    model2, history = train(config, run_dir=run, train_config=tc.replace(total_steps=3),
                            train_dataset=synthetic_dataset(config), verbose=0)
    assert isinstance(model2.optimizer, BiasLRSGD)
    assert int(model2.optimizer.iterations.numpy()) == 3
    assert history["step"].tolist() == [1, 2, 3]
    # The final model reloads with its optimizer (registered, safe mode).
    loaded = keras.saving.load_model(os.path.join(run, "model.keras"))
    assert isinstance(loaded.optimizer, BiasLRSGD)
    assert loaded.optimizer.bias_lr_multiplier == 2.0


def test_weight_decay_on_kernels_and_l2norm_scale_not_biases():
    """Caffe SSD: kernels ``decay_mult 1``, biases ``decay_mult 0``, the Normalize scale 1."""
    import keras

    from ssd_keras import build_model
    from ssd_keras.layers import L2Normalization

    layer = L2Normalization(gamma_regularizer=keras.regularizers.L2(2.5e-4))
    layer(np.ones((1, 2, 2, 4), "float32"))
    # L2(wd / 2) on gamma = 20: 2.5e-4 * 4 channels * 400
    assert float(keras.ops.convert_to_numpy(layer.losses[0])) == pytest.approx(0.4)
    again = L2Normalization.from_config(layer.get_config())
    assert again.gamma_regularizer.get_config() == layer.gamma_regularizer.get_config()

    model = build_model("ssd300_voc")
    norm = model.get_layer("conv4_3_norm")
    assert norm.gamma_regularizer is not None
    assert norm.gamma_regularizer.get_config()["l2"] == pytest.approx(2.5e-4)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convs and all(c.kernel_regularizer is not None for c in convs)
    assert all(c.bias_regularizer is None for c in convs)
    # one loss term per kernel and one for the scale, none for a bias
    assert len(model.losses) == len(convs) + 1


# ----------------------------------------------------------------------------- global batch

MIRRORED_EQUIVALENCE = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import json
    import keras
    import numpy as np
    from ssd_keras import build_model
    from ssd_keras.training import TrainConfig, WarmupSchedule, make_optimizer, train
    from tests.test_distribution import varied_batch
    from tests.tiny_models import tiny_config

    config = tiny_config(num_classes=3)
    images, targets = varied_batch(config, 32)
    keras.utils.set_random_seed(1)
    init = build_model(config)
    init.save_weights({weights!r})

    def data():
        return tf.data.Dataset.from_tensors((images, targets)).repeat()

    tc = TrainConfig(total_steps=1, batch_size=32, steps_per_epoch=1, log_every=1,
                     warmup_steps=0, learning_rate=0.05, bias_lr_multiplier=2.0,
                     checkpoint_every=100)
    out = {{}}
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    local = mirrored.experimental_local_results(
        next(iter(mirrored.experimental_distribute_dataset(data())))[0])
    out["per_replica"] = [int(x.shape[0]) for x in local]
    for name, strategy in (("one", None), ("two", mirrored)):
        model, history = train(config, run_dir={run!r} + name, train_config=tc,
                               strategy=strategy, train_dataset=data(), val_dataset=data().take(1),
                               weights={weights!r}, verbose=0)
        row = history.iloc[-1]
        out[name] = {{"replicas": (strategy or tf.distribute.get_strategy()).num_replicas_in_sync,
                     "lr": float(model.optimizer.learning_rate.numpy()),
                     "losses": [float(row[c]) for c in ("classification_loss",
                                "localization_loss", "regularization_loss", "total_loss",
                                "val_total_loss")]}}
        np.save({run!r} + name + ".npy", np.concatenate(
            [w.ravel() for w in model.get_weights()]))
    # The single-device loss of each half, to show the halves' normalisers differ.
    half = build_model(config)
    half.load_weights({weights!r})
    parts = []
    for sl in (slice(0, 16), slice(16, 32)):
        pred = half(images[sl], training=False)
        t = {{k: v[sl] for k, v in targets.items()}}
        parts.append(float(half.loss_components(t, pred)["classification"]))
    full = half.loss_components(targets, half(images, training=False))
    out["halves"] = parts
    out["full_cls"] = float(full["classification"])
    with tf.GradientTape() as tape:
        pred = init(images, training=True)
        loss = init.compute_loss(y=targets, y_pred=pred)
    out["one_device_loss"] = float(loss)
    print("RESULT", json.dumps(out))
""")


@pytest.mark.slow
def test_global_batch_mirrored_equals_one_device(tmp_path):
    script = tmp_path / "mirrored_equivalence.py"
    run = str(tmp_path / "run_")
    script.write_text(MIRRORED_EQUIVALENCE.format(root=ROOT, run=run,
                                                  weights=str(tmp_path / "init.weights.h5")))
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    import json
    out = json.loads(done.stdout.split("RESULT ", 1)[1])
    assert out["per_replica"] == [16, 16]                        # global batch 32 split in two
    assert (out["one"]["replicas"], out["two"]["replicas"]) == (1, 2)
    assert out["one"]["lr"] == out["two"]["lr"] == pytest.approx(0.05)   # the rate is not scaled
    # The same training and validation losses (every part) as one device on the same batch ...
    np.testing.assert_allclose(out["two"]["losses"], out["one"]["losses"], rtol=2e-5)
    # ... and the same step: the updated weights (so the summed gradients) agree.
    one, two = np.load(run + "one.npy"), np.load(run + "two.npy")
    init_total = out["one_device_loss"]
    assert init_total == pytest.approx(out["one"]["losses"][3], rel=1e-5)
    np.testing.assert_allclose(two, one, rtol=1e-5, atol=1e-7)
    # The test discriminates: normalising each half by its own positives would not match.
    assert abs(np.mean(out["halves"]) - out["full_cls"]) > 1e-3 * out["full_cls"]


def test_batch_must_split_over_replicas(tmp_path):
    from ssd_keras.training import TrainConfig, train

    class TwoReplicas:              # train() reads num_replicas_in_sync before anything else
        num_replicas_in_sync = 2

    config = tiny_config(num_classes=3)
    with pytest.raises(ValueError, match="batch_size 33 .* 2 replicas"):
        train(config, run_dir=str(tmp_path / "run"), strategy=TwoReplicas(),
              train_config=TrainConfig(batch_size=33), train_dataset=object(), verbose=0)
    assert not os.path.exists(tmp_path / "run")


def test_frozen_layers_keep_their_weights(tmp_path):
    """Caffe SSD freezes conv1_1 .. conv2_2 (``lr_mult 0``): they end the run as they began."""
    from ssd_keras import build_model
    from ssd_keras.training import TrainConfig, train
    from tests.test_training import synthetic_dataset

    config = tiny_config(num_classes=3)
    weights = str(tmp_path / "init.weights.h5")
    build_model(config).save_weights(weights)
    start = build_model(config)
    start.load_weights(weights)
    tc = TrainConfig(total_steps=3, batch_size=2, steps_per_epoch=3, warmup_steps=0,
                     learning_rate=1e-2, frozen_layers=("tiny_conv0",))
    assert TrainConfig.from_json(tc.to_json()) == tc
    model, _ = train(config, run_dir=str(tmp_path / "run"), train_config=tc, weights=weights,
                     train_dataset=synthetic_dataset(config), verbose=0)
    for name in ("tiny_conv0", "tiny_conv1", "f8_mbox_conf"):
        same = all(np.array_equal(a, b) for a, b in zip(model.get_layer(name).get_weights(),
                                                        start.get_layer(name).get_weights()))
        assert same == (name == "tiny_conv0"), name
    with pytest.raises(ValueError, match="no layer 'conv1_1'"):
        train(config, run_dir=str(tmp_path / "run2"), train_config=tc.replace(
            frozen_layers=("conv1_1",)), train_dataset=synthetic_dataset(config), verbose=0)
