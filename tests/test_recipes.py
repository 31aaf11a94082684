"""The own-data recipe: sizing to the data, batch-norm choice, head-first backbone freezing."""
from __future__ import annotations

import numpy as np
import pytest

from tests.tiny_models import tiny_config  # noqa: F401  (registers the tiny_test architecture)


def test_recipe_scales_with_the_dataset():
    from ssd_keras.recipes import own_data_recipe

    small = own_data_recipe(160, ("raccoon",))
    large = own_data_recipe(5000, ("a", "b"))
    for config, tc, plan in (small, large):
        assert plan.total_steps == tc.total_steps
        assert tc.optimizer == "adam" and tc.schedule == "cosine"
        assert 0 < tc.warmup_steps < tc.total_steps // 10 + 1
        assert tc.freeze_backbone_steps == tc.total_steps // 3
        # Intervals scale with the run and nest (validation on a log row).
        assert tc.log_every == max(1, round(tc.total_steps / 50))
        assert tc.val_every % tc.log_every == 0
        assert tc.backup_every % tc.log_every == 0
        assert tc.checkpoint_every % tc.log_every == 0
        assert tc.total_steps / 12 <= tc.backup_every <= tc.total_steps / 8
        assert tc.eval_every == tc.checkpoint_every
        assert plan.expected_seconds > 0 and "estimate" in plan.estimate
        assert str(tc.total_steps) in plan.describe()
    config, tc, plan = small
    assert config.class_names == ("raccoon",) and config.num_classes == 1
    assert plan.epochs == pytest.approx(100)                     # 16,000 images / 160
    assert tc.total_steps == 1000 and tc.batch_size == 16 and tc.steps_per_epoch == 10
    assert tc.unfreeze_lr_factor == pytest.approx(0.1)
    assert config.weight_decay == 0.0                            # Adam: no L2 in the loss
    config, tc, plan = large
    assert plan.epochs == pytest.approx(12, rel=0.01)           # the epoch floor
    assert tc.total_steps == 3750
    assert tc.log_every > small[1].log_every and tc.backup_every > small[1].backup_every
    # A tiny set is capped at 100 epochs; explicit epochs win.
    assert own_data_recipe(20)[2].epochs == pytest.approx(100)
    assert own_data_recipe(400)[2].total_steps == 1000          # 40 epochs
    assert own_data_recipe(160, epochs=10)[1].total_steps == 100


def test_voc_presets_keep_the_reference_schedule():
    from ssd_keras.training import TrainConfig, reference_train_config

    for preset in ("ssd300_voc", "ssd_mobilenet_v2_320"):
        tc = reference_train_config(preset)
        assert (tc.total_steps, tc.batch_size, tc.optimizer, tc.schedule) == (
            120000, 32, "sgd", "piecewise")
        assert tc.freeze_backbone_steps == 0
    assert TrainConfig().freeze_backbone_steps == 0


def test_head_batch_norm_momentum_forgets_its_start_by_mid_run():
    from ssd_keras.recipes import head_batch_norm_momentum

    for steps in (200, 800, 3000):
        m = head_batch_norm_momentum(steps)
        assert m ** (steps / 2) == pytest.approx(1e-3, rel=1e-6)
    assert head_batch_norm_momentum(10) == 0.9          # clipped
    assert head_batch_norm_momentum(10 ** 6) == 0.997   # the TF OD decay for long runs


def test_backbone_batch_norm_runs_in_inference_mode():
    """Backbone BN layers are non-trainable (ImageNet statistics kept, even in training=True
    calls); the extra layers' BN trains, with the momentum sized to the run."""
    import keras

    from ssd_keras import build_model
    from ssd_keras.models.mobilenet import backbone_layers
    from ssd_keras.recipes import head_batch_norm_momentum, own_data_detector

    config = own_data_detector(("raccoon",), total_steps=300, image_size=128)
    assert config.backbone["freeze_batch_norm"] and config.backbone["imagenet_weights"]
    config = config.replace(backbone={**config.backbone, "imagenet_weights": False})
    model = build_model(config)
    backbone = backbone_layers(model)
    names = {layer.name for layer in backbone}
    assert {"Conv1", "bn_Conv1", "block_13_expand_relu", "out_relu"} <= names
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    frozen = [b for b in bns if b.name in names]
    head = [b for b in bns if b.name not in names]
    assert frozen and head
    assert not any(b.trainable for b in frozen)
    assert all(b.trainable for b in head)
    assert [b.momentum for b in head] == pytest.approx([head_batch_norm_momentum(300)] * len(head))
    # Inference mode in a training call: the backbone's output does not depend on `training`.
    probe = keras.Model(model.input, model.get_layer("block_13_expand_relu").output)
    images = np.random.default_rng(0).uniform(0, 255, (2, 128, 128, 3)).astype("float32")
    np.testing.assert_allclose(probe(images, training=True).numpy(),
                               probe(images, training=False).numpy(), rtol=1e-5, atol=1e-5)
    bn = model.get_layer("bn_Conv1")
    before = [w.numpy().copy() for w in bn.weights]
    model(images, training=True)
    for a, w in zip(before, bn.weights):
        np.testing.assert_array_equal(a, w.numpy())          # moving statistics untouched


def test_freeze_layers_trains_the_head_first(tmp_path):
    import keras

    from ssd_keras.callbacks import FreezeLayers
    from ssd_keras.training import TrainConfig, train
    from tests.test_training import synthetic_dataset

    config = tiny_config(num_classes=3)
    kernels = {}

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            step = int(self.model.optimizer.iterations.numpy())
            kernels[step] = (self.model.get_layer("tiny_conv0").kernel.numpy().copy(),
                             self.model.get_layer("f8_mbox_conf").kernel.numpy().copy(),
                             self.model.get_layer("tiny_conv0").trainable)

    def freeze_then_record():
        # FreezeLayers needs the model to exist: wrap it in a callback that finds the layers.
        class Freeze(FreezeLayers):
            def set_model(self, model):
                super().set_model(model)
                self.layers = [model.get_layer(f"tiny_conv{i}") for i in range(4)]
        return [Freeze([], until_step=3), Record()]

    tc = TrainConfig(total_steps=5, batch_size=2, steps_per_epoch=5, log_every=5,
                     warmup_steps=0, optimizer="adam", learning_rate=1e-2)
    model, _ = train(config, run_dir=str(tmp_path / "run"), train_config=tc,
                     train_dataset=synthetic_dataset(config), callbacks=freeze_then_record(),
                     verbose=0)
    np.testing.assert_array_equal(kernels[1][0], kernels[2][0])      # frozen backbone
    assert not np.array_equal(kernels[1][1], kernels[2][1])          # the head learns
    assert not np.array_equal(kernels[4][0], kernels[5][0])          # unfrozen from step 3
    assert model.get_layer("tiny_conv0").trainable                   # left trainable at the end


def test_fine_tune_phase_lowers_the_rate():
    import keras

    from ssd_keras.training import TrainConfig, WarmupSchedule

    tc = TrainConfig(optimizer="adam", schedule="cosine", learning_rate=1e-3, warmup_steps=0,
                     total_steps=300, freeze_backbone_steps=100, unfreeze_lr_factor=0.1)
    s = WarmupSchedule.from_train_config(tc)
    plain = WarmupSchedule.from_train_config(tc.replace(unfreeze_lr_factor=1.0))
    assert s.value(99) == pytest.approx(plain.value(99))
    assert s.value(100) == pytest.approx(0.1 * plain.value(100))
    assert s.value(250) == pytest.approx(0.1 * plain.value(250))
    again = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(s))
    assert again.value(150) == pytest.approx(s.value(150))


def test_cli_train_data_uses_the_recipe(tmp_path, raccoon_dir, capsys):
    """``train --data --val-data`` alone: the own-data recipe (plan printed), run artefacts."""
    import json
    import os

    from ssd_keras.training import main

    xml = sorted(os.listdir(os.path.join(raccoon_dir, "annotations")))
    lists = {}
    for name, part in (("train", xml[:4]), ("test", xml[-2:])):
        lists[name] = tmp_path / f"{name}.txt"
        lists[name].write_text("".join(os.path.join(raccoon_dir, "annotations", f) + "\n"
                                       for f in part))
    run = tmp_path / "run"
    code = main(["--data", str(lists["train"]), "--val-data", str(lists["test"]),
                 "--run-dir", str(run), "--steps", "3", "--batch-size", "2", "--verbose", "0"])
    assert code == 0
    out = capsys.readouterr().out
    assert "plan: 3 steps x batch 2" in out and "expected training time" in out
    with open(run / "train_config.json") as handle:
        tc = json.load(handle)
    assert (tc["total_steps"], tc["optimizer"], tc["schedule"]) == (3, "adam", "cosine")
    assert tc["freeze_backbone_steps"] == 1 and tc["unfreeze_lr_factor"] == pytest.approx(0.1)
    with open(run / "config.json") as handle:
        config = json.load(handle)
    assert config["class_names"] == ["raccoon"] and config["architecture"] == "ssd_mobilenet_v2"
    assert config["backbone"]["freeze_batch_norm"] and config["backbone"]["imagenet_weights"]
    with open(run / "metrics.json") as handle:
        metrics = json.load(handle)
    assert metrics["images"] == 2 and "AP50" in metrics
    assert (run / "plots" / "detections.png").exists()
